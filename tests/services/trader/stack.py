"""Four trained model services, started once per test module, for the trader's tests."""
from __future__ import annotations

import httpx

from tests.live import wait_for_job

TRAINING_DATA = {"source": "synthetic", "symbols": ["SYNA", "SYNB"], "start": "2017-01-01", "end": "2021-12-31"}
#: tiny models need not beat the naive baselines: the trader's tests need them serving
_ACTIVE = {"activate": True}
TINY = {
    "signal": {**_ACTIVE, "data": TRAINING_DATA, "model": {"n_estimators": 30, "max_depth": 4}, "evaluation": {"n_splits": 2}},
    "ensemble": {
        **_ACTIVE, "data": TRAINING_DATA, "random_forest": {"n_estimators": 20}, "gradient_boosting": {"n_estimators": 20},
        "ada_boost": {"n_estimators": 20}, "evaluation": {"n_splits": 2},
    },
    "anomaly": {**_ACTIVE, "data": TRAINING_DATA, "epochs": 2, "batch_size": 64, "window": 20},
    "forecast": {**_ACTIVE, "data": TRAINING_DATA, "model_types": ["gru"], "sequence_length": 30, "forecast_horizon": 5,
                 "epochs": 2, "units": 16},
}


def start_model_services(start_server, bodies: dict[str, dict] = TINY) -> dict:
    """Start and train the four model services (training jobs run in parallel)."""
    servers = {name: start_server(f"services.{name}.app:create_app") for name in bodies}
    jobs = {}
    for name, server in servers.items():
        resp = httpx.post(f"{server.url}/train", json=bodies[name], timeout=30)
        assert resp.status_code == 202, resp.text
        jobs[name] = resp.json()["id"]
    for name, server in servers.items():
        with httpx.Client(base_url=server.url, timeout=30) as client:
            job = wait_for_job(client, jobs[name], timeout=3600)
            assert job["state"] == "succeeded", (name, job)
    return servers


def trader_env(servers: dict, redis_url: str, tmp_path, prefix: str) -> dict:
    return {
        "KRYPTOBOT_SIGNAL_URL": servers["signal"].url,
        "KRYPTOBOT_ENSEMBLE_URL": servers["ensemble"].url,
        "KRYPTOBOT_ANOMALY_URL": servers["anomaly"].url,
        "KRYPTOBOT_FORECAST_URL": servers["forecast"].url,
        "KRYPTOBOT_REDIS_URL": redis_url,
        "KRYPTOBOT_LEDGER_PATH": str(tmp_path / "ledger.sqlite"),
        "KRYPTOBOT_REPORTS_DIR": str(tmp_path / "reports"),
        "KRYPTOBOT_CACHE_PREFIX": prefix,
        # these tests walk one paper ledger back and forth through history on purpose
        "KRYPTOBOT_TRADER_SETTINGS__REPLAY_PAST": "true",
    }
