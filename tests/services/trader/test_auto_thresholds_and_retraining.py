"""The trader with a real signal service: an "auto" threshold resolved from the active
version's out-of-sample sweep, a version past its expiry degrading decisions, and the
scheduler firing a retraining rule at the service's /train.

The other model services are not started (their layers are not asked).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from kryptobot.settings import ConfigError
from kryptobot.trading.settings import LayerSchedule, RetrainingSettings, TraderConfig
from services.table import spec
from services.trader.scheduler import build_scheduler, retrain_body
from tests.live import free_port, wait_for_job

TRADER = "services.trader.app:create_app"
CONFIG_DIR = Path(__file__).resolve().parents[3] / "config"
TRAINING = {"activate": True, "data": {"source": "synthetic", "symbols": ["SYNA", "SYNB"], "start": "2016-01-01", "end": "2021-12-31"},
            "model": {"n_estimators": 40, "max_depth": 5}, "evaluation": {"n_splits": 3}}
EXPIRED_HOURS = 24 * 60
FRESH_DAYS = ["2022-01-05", "2022-01-12", "2022-01-19", "2022-01-26", "2022-02-02", "2022-02-09"]  # < 60 days after the data
STALE_DAYS = ["2023-03-01", "2023-03-08", "2023-03-15", "2023-03-22"]


@pytest.fixture(scope="module")
def signal(start_server):
    server = start_server("services.signal.app:create_app")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        job = wait_for_job(client, client.post("/train", json=TRAINING).json()["id"])
        assert job["state"] == "succeeded", job
        yield client


@pytest.fixture(scope="module")
def trader(start_server, signal, redis_url, tmp_path_factory):
    state = tmp_path_factory.mktemp("trader-auto")
    env = {
        "KRYPTOBOT_SIGNAL_URL": str(signal.base_url),
        **{f"KRYPTOBOT_{n.upper()}_URL": f"http://127.0.0.1:{free_port()}" for n in ("ensemble", "anomaly", "forecast")},
        "KRYPTOBOT_REDIS_URL": redis_url,
        "KRYPTOBOT_LEDGER_PATH": str(state / "ledger.sqlite"),
        "KRYPTOBOT_REPORTS_DIR": str(state / "reports"),
        "KRYPTOBOT_CACHE_PREFIX": "test-trader-auto:forecast",
        # these tests walk one paper ledger back and forth through history on purpose
        "KRYPTOBOT_TRADER_SETTINGS__REPLAY_PAST": "true",
        "KRYPTOBOT_ML_SETTINGS__MIN_CONFIDENCE_THRESHOLD": "auto",
        "KRYPTOBOT_TRADER_SETTINGS__RETRAINING": json.dumps({"signal": {"expired_hours": EXPIRED_HOURS}}),
    }
    with httpx.Client(base_url=start_server(TRADER, env=env).url, timeout=120) as client:
        yield client


def _cycles(trader: httpx.Client, days: list[str]) -> list[dict]:
    out = []
    for day in days:
        resp = trader.post("/cycle", json={"as_of": day, "layers": ["signal"]})
        assert resp.status_code == 200, resp.text
        out.append(resp.json())
    return out


def test_auto_threshold_is_the_active_versions_sweep_and_every_decision_uses_it(trader, signal):
    active = signal.get("/model").json()["models"][0]
    auto = active["metrics"]["threshold_sweep"]["sides"]["buy"]["auto"]
    entries = []
    for body in _cycles(trader, FRESH_DAYS):
        used = body["thresholds"]
        assert used["signal"] == {"setting": "auto", "threshold": auto["threshold"], "reason": auto["reason"], "version": active["version"]}
        assert used["ensemble"]["setting"] == 0.6 and used["ensemble"]["reason"] == "fixed in the settings"
        for d in body["decisions"]:
            assert d["thresholds"]["signal"] == auto["threshold"] and "model_expired:signal" not in d["rules"]
            if d["outputs"]["signal_probability"] is not None:
                entries.append(d)
    assert entries, "no technical entry on the sampled days"
    for d in entries:
        vetoed = d["outputs"]["signal_probability"] < auto["threshold"]
        assert ("signal_below_min_confidence" in d["rules"]) == vetoed and (d["action"] == "skip") == vetoed, d


def test_an_expired_model_is_not_asked_and_the_decision_is_degraded_with_the_reason(trader, signal):
    decisions = [d for body in _cycles(trader, STALE_DAYS) for d in body["decisions"]]
    expired = [d for d in decisions if "model_expired:signal" in d["rules"]]
    assert expired, "no technical entry on the sampled days"
    for d in decisions:
        assert ("model_expired:signal" in d["rules"]) == d["degraded"] == ("signal" in d["unavailable"])
    for d in expired:
        assert d["technical"] == "buy" and d["outputs"]["signal_probability"] is None  # not asked
        assert f"expired_hours {EXPIRED_HOURS}" in d["expired"]["signal"] and "trained on data up to 2021-" in d["expired"]["signal"]
        # the unavailable-service policy applies: "technical" trades the signal without the model
        assert "service_unavailable_technical_fallback:signal" in d["rules"] and d["action"] == "buy"


def _config(**retraining) -> TraderConfig:
    config = TraderConfig.load(CONFIG_DIR)
    rules = RetrainingSettings.model_validate({"timezone": "UTC", **retraining})
    return dataclasses.replace(config, trader=config.trader.model_copy(update={"retraining": rules}))


def test_a_layer_retrains_with_the_first_start_body_unless_one_is_configured():
    assert retrain_body("signal", LayerSchedule()) == {**spec("signal").first_training, "activate": "if_better"}
    assert retrain_body("signal", LayerSchedule(train_body={"evaluation": {"n_splits": 2}})) == {"evaluation": {"n_splits": 2}}
    with pytest.raises(ConfigError, match=r"key 'retraining.signal.retrain'"):
        build_scheduler(_config(signal={"retrain": "61 * * * *"}), {}, None, asyncio.Lock(), None)
    assert build_scheduler(_config(), {}, None, asyncio.Lock(), None) is None  # nothing to schedule


async def test_the_scheduler_fires_a_retrain_at_the_services_train(signal):
    before = {j["id"] for j in signal.get("/jobs").json()}
    at = datetime.now(timezone.utc) + timedelta(seconds=2)
    body = {k: v for k, v in TRAINING.items() if k != "activate"}  # the gate decides
    config = _config(signal={"retrain": f"{at.second} {at.minute} {at.hour} * * *", "train_body": body})
    async with httpx.AsyncClient() as http:
        scheduler = build_scheduler(config, {"signal": str(signal.base_url)}, None, asyncio.Lock(), http)
        scheduler.start()
        try:
            deadline = time.monotonic() + 15
            new = []
            while not new and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                new = [j for j in (await http.get(f"{signal.base_url}/jobs")).json() if j["id"] not in before]
        finally:
            scheduler.shutdown(wait=False)
    assert len(new) == 1, "the rule did not fire exactly once"
    job = await asyncio.to_thread(wait_for_job, signal, new[0]["id"])
    assert job["state"] == "succeeded" and job["kind"] == "train"
    (version,) = job["versions"]
    assert job["details"]["promotion"][version]["activate"] == "if_better"
