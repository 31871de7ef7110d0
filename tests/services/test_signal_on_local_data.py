"""The signal service trained and served on real-format crypto candles: the store filled by
ccxt from the local Binance, then ``source=local`` 1h bars over real HTTP."""
from __future__ import annotations

import httpx
import pytest

from kryptobot.data.local_store import LocalStoreProvider
from kryptobot.schemas import Bars
from tests.fakes.stores import PAIRS, hourly_pairs_store
from tests.live import wait_for_job

TRAIN = {
    "data": {"source": "local", "symbols": PAIRS, "timeframe": "1h"},
    "model": {"n_estimators": 30, "max_depth": 4},
    "evaluation": {"n_splits": 3},
    "activate": True,  # a random walk has no skill to pass the promotion gate with; serving it is the point here
}


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return hourly_pairs_store(tmp_path_factory.mktemp("market-data"))


@pytest.fixture(scope="module")
def client(start_server, store_dir):
    server = start_server("services.signal.app:create_app", env={"KRYPTOBOT_MARKET_DATA_DIR": str(store_dir)})
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def test_train_on_local_hourly_pairs_then_predict(client, store_dir):
    resp = client.post("/train", json=TRAIN)
    assert resp.status_code == 202, resp.text
    job = wait_for_job(client, resp.json()["id"])
    assert job["state"] == "succeeded", job
    model = client.get("/model").json()["models"][0]
    assert set(model["data_range"]["symbols"]) == set(PAIRS)
    bars = LocalStoreProvider(store_dir).get_bars("BTC/USDT", timeframe="1h").tail(200)
    instance = {"symbol": "btc/usdt", "side": "buy", "bars": Bars.from_frame(bars).model_dump(mode="json")}
    resp = client.post("/predict", json={"instances": [instance]})
    assert resp.status_code == 200, resp.text
    (prediction,) = resp.json()["predictions"]
    assert prediction["symbol"] == "BTC/USDT" and 0.0 <= prediction["probability"] <= 1.0


@pytest.mark.parametrize(("data", "field"), [
    ({"symbols": ["BTC/USDT\n"]}, "data.symbols"),
    ({"symbols": ["../../etc/passwd"]}, "data.symbols"),
    ({"symbols": ["BTC/USDT", "ETH/USDT\x00"]}, "data.symbols"),
    ({"timeframe": "7m"}, "data.timeframe"),
    ({"source": "exchange"}, "data.source"),
])
def test_bad_symbols_and_timeframes_are_422_naming_the_field(client, data, field):
    resp = client.post("/train", json={**TRAIN, "data": {**TRAIN["data"], **data}})
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"].startswith(field), resp.json()


def test_a_pair_missing_from_the_store_fails_the_job_saying_how_to_get_it(client):
    resp = client.post("/train", json={**TRAIN, "data": {**TRAIN["data"], "symbols": ["BTC/USDT", "SOL/USDT"]}})
    assert resp.status_code == 202, resp.text
    job = wait_for_job(client, resp.json()["id"])
    assert job["state"] == "failed" and "SOL/USDT" in job["error"] and "download-data" in job["error"]
