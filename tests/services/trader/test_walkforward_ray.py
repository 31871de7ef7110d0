"""Walk-forward folds on a Ray cluster: the same report as on this machine's processes.

The head is the one `make ray` starts (`make test` depends on it): 127.0.0.1, 2 CPUs. Its
address comes from ``KRYPTOBOT_TEST_RAY_ADDRESS`` (the Makefile exports it); no head there
is a failure, not a skip.
"""
from __future__ import annotations

import os
import socket

import pandas as pd
import pytest

from kryptobot import parallel
from kryptobot.data import DataSpec
from kryptobot.data.base import check_symbol
from kryptobot.errors import InvalidInput, ServiceUnavailable
from kryptobot.settings import Settings
from kryptobot.trading.backtest import BacktestRequest
from services.trader.backtest import walk_forward
from tests.live import free_port
from tests.services.trader.test_walkforward import SETTINGS, TINY_MODELS, config

RAY_ADDRESS = os.environ.get("KRYPTOBOT_TEST_RAY_ADDRESS", "127.0.0.1:6389")
SYMBOLS = ["SYNA", "SYNB"]
#: two folds of a tiny signal model, both at once: seconds each once the workers have imported the model code
REQUEST = BacktestRequest(symbols=SYMBOLS, start="2019-01-01", end="2020-06-30", modes=["technical", "signal"],
                          walk_forward={"train_bars": 700, "retrain_every": 260, "n_jobs": 2,
                                        "training": {"signal": TINY_MODELS["signal"]}})


@pytest.fixture(scope="module")
def ray_address() -> str:
    host, _, port = RAY_ADDRESS.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"no Ray head answers at {RAY_ADDRESS} (KRYPTOBOT_TEST_RAY_ADDRESS): start one with `make ray` ({exc})", pytrace=False)
    return RAY_ADDRESS


def run(ray_address: str | None) -> dict:
    settings = SETTINGS.model_copy(update={"ray_address": ray_address})
    return walk_forward(REQUEST, config(), settings, DataSpec(symbols=SYMBOLS))


@pytest.fixture(scope="module")
def local():
    return run(None)


@pytest.fixture(scope="module")
def on_ray(ray_address):
    return run(ray_address)


def outcome(report: dict) -> dict:
    """What a walk-forward decided and measured, without its timings, its version names
    (they carry the time they were stored) and its artifacts' digests (any two ONNX exports
    of the same forest differ); floats to 10 significant digits, as the forests sum their
    trees' probabilities in whatever order their threads finish."""
    folds = []
    for fold in report["folds"]:
        layers = {name: {"out_of_sample": layer["out_of_sample"],
                         "versions": {line: {k: v for k, v in version.items() if k not in ("version", "artifacts_sha256")}
                                      for line, version in layer["versions"].items()}}
                  for name, layer in fold["layers"].items()}
        folds.append({"train": fold["train"], "test": fold["test"], "layers": layers, "results": fold["results"],
                      "trades": fold["trades"], "thresholds": fold["thresholds"]})
    return rounded({"folds": folds, "results": report["results"], "summary": report["summary"],
                    "model_outputs": report["model_outputs"]})


def rounded(value):
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    return value


def test_folds_on_ray_give_the_same_report_as_local_processes(local, on_ray):
    assert len(local["folds"]) == 2 and local["results"]["signal"]["trades"] > 0
    assert outcome(on_ray) == outcome(local)
    for mode, curve in local["curves"].items():
        pd.testing.assert_series_equal(on_ray["curves"][mode], curve)


def test_the_report_says_where_the_folds_ran(local, on_ray, ray_address):
    import ray

    assert local["walk_forward"]["ran_on"] == {"backend": "local", "address": None}
    assert all(f["worker"]["ray_node_id"] is None for f in local["folds"])
    assert on_ray["walk_forward"]["ran_on"] == {"backend": "ray", "address": ray_address}
    assert on_ray["walk_forward"]["n_jobs"] == 2
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    for fold in on_ray["folds"]:
        worker = fold["worker"]
        assert worker["ray_node_id"] in nodes, worker  # run as a Ray task on the cluster's node
        assert worker["pid"] != os.getpid()


def test_ray_tasks_keep_the_order_and_raise_a_tasks_error_as_its_own_type(ray_address):
    pool = parallel.workers(ray_address)
    assert pool.map(check_symbol, ["spy", "btc/usdt", "qqq"], n_jobs=2) == ["SPY", "BTC/USDT", "QQQ"]
    with pytest.raises(InvalidInput, match="malformed symbol 'not a symbol'"):  # the app's 422, not a 500
        pool.map(check_symbol, ["spy", "not a symbol"])


def test_the_address_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("KRYPTOBOT_RAY_ADDRESS", "10.0.0.5:6379")
    assert Settings().ray_address == "10.0.0.5:6379"
    monkeypatch.delenv("KRYPTOBOT_RAY_ADDRESS")
    assert Settings().ray_address is None


def test_no_head_at_the_address_is_a_clear_503_within_seconds():
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailable, match=f"no Ray head answers at {address}"):
        parallel.workers(address)
    assert parallel.workers(None).map(abs, [-1, 2, -3], n_jobs=1) == [1, 2, 3]
