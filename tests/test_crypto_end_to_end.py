"""Issue 12's path for crypto, end to end over real HTTP and without a network: download
BTC/USDT and ETH/USDT 1h candles from a local server speaking Binance's REST API with ccxt,
train the signal and forecast services on the local store, run a trader cycle and a
backtest on those hourly bars."""
from __future__ import annotations

import json
import shutil

import httpx
import pandas as pd
import pytest

from tests.fakes.stores import PAIRS, hourly_pairs_store
from tests.live import ROOT, free_port, wait_for_job

DATA = {"source": "local", "symbols": PAIRS, "timeframe": "1h", "end": "2024-04-15"}
# tiny models; the hourly random walk of the fake has no skill to pass the gate with
BODIES = {
    "signal": {"data": DATA, "model": {"n_estimators": 30, "max_depth": 4}, "evaluation": {"n_splits": 2}, "activate": True},
    "forecast": {"data": DATA, "model_types": ["gru"], "sequence_length": 30, "forecast_horizon": 5, "epochs": 1, "units": 8,
                 "activate": True},
}


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return hourly_pairs_store(tmp_path_factory.mktemp("market-data"))


@pytest.fixture(scope="module")
def stack(start_server, store_dir, tmp_path_factory, redis_url):
    env = {"KRYPTOBOT_MARKET_DATA_DIR": str(store_dir)}
    models = {name: start_server(f"services.{name}.app:create_app", env=env) for name in BODIES}
    for name, server in models.items():
        with httpx.Client(base_url=server.url, timeout=60) as client:
            job = client.post("/train", json=BODIES[name]).json()
            assert wait_for_job(client, job["id"], timeout=900)["state"] == "succeeded", name
    config = tmp_path_factory.mktemp("config")
    for path in (ROOT / "config").glob("*.json"):
        shutil.copy(path, config / path.name)
    settings = json.loads((config / "trader_settings.json").read_text())
    settings.update(watchlist=PAIRS, data_source="local", timeframe="1h")
    (config / "trader_settings.json").write_text(json.dumps(settings))
    state = tmp_path_factory.mktemp("trader")
    dead = f"http://127.0.0.1:{free_port()}"  # ensemble and anomaly are not part of this path
    trader = start_server("services.trader.app:create_app", env={
        **env, "KRYPTOBOT_CONFIG_DIR": str(config), "KRYPTOBOT_SIGNAL_URL": models["signal"].url,
        "KRYPTOBOT_FORECAST_URL": models["forecast"].url, "KRYPTOBOT_ENSEMBLE_URL": dead, "KRYPTOBOT_ANOMALY_URL": dead,
        "KRYPTOBOT_REDIS_URL": redis_url, "KRYPTOBOT_LEDGER_PATH": str(state / "ledger.sqlite"),
        "KRYPTOBOT_REPORTS_DIR": str(state / "reports"), "KRYPTOBOT_CACHE_PREFIX": "test-crypto-e2e",
    })
    with httpx.Client(base_url=trader.url, timeout=300) as client:
        yield client


def test_a_cycle_decides_each_pair_on_its_latest_hourly_bar(stack):
    resp = stack.post("/cycle", json={"layers": ["signal", "forecast"]})
    assert resp.status_code == 200, resp.text
    decisions = {d["symbol"]: d for d in resp.json()["decisions"]}
    assert set(decisions) == set(PAIRS)
    for d in decisions.values():
        bar = pd.Timestamp(d["last_bar"])
        assert bar.minute == 0 and bar > pd.Timestamp("2024-04-01")  # an hourly bar of the store, not a day
        assert d["action"] in ("buy", "sell", "hold", "skip") and not d["degraded"], (d["rules"], d.get("unavailable"))
        assert "forecast" not in d["unavailable"]


def test_a_backtest_replays_the_hourly_bars_after_the_training_data(stack):
    resp = stack.post("/backtest", json={"modes": ["technical", "signal", "forecast"]})
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert set(report["symbols"]) == set(PAIRS)
    assert report["start"] >= "2024-04-16"  # models trained until 2024-04-15 are used only after it
    assert report["bars"] > 24 * 10  # hours, not days
    assert {"technical", "signal", "forecast", "buy_and_hold"} <= set(report["results"])
