"""The trader with all five services as real processes and the real Redis.

Covers a cycle, the forecast cache (expiry and hits), a backtest report, and the faults:
a model service stopped and restarted, Redis stopped and restarted, the trader killed.
"""
from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import httpx
import pytest
import redis

from tests.live import free_port
from tests.services.trader.stack import start_model_services, trader_env

PREFIX = f"test-trader-{uuid.uuid4().hex[:8]}:forecast"  # own keys: parallel runs share the test Redis
TRADER = "services.trader.app:create_app"


@pytest.fixture(scope="module")
def models(start_server):
    return start_model_services(start_server)


@pytest.fixture(scope="module")
def trader(start_server, models, redis_url, tmp_path_factory):
    env = trader_env(models, redis_url, tmp_path_factory.mktemp("trader"), PREFIX)
    yield start_server(TRADER, env=env)
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{PREFIX}:*"):
        client.delete(key)


@pytest.fixture(scope="module")
def client(trader):
    with httpx.Client(base_url=trader.url, timeout=120) as c:
        yield c


def _counter(client: httpx.Client, outcome: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'kryptobot_forecast_cache_total{{outcome="{outcome}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_cycle_fills_the_cache_with_its_expiry_and_hits_it_next_time(client, redis_url):
    first = client.post("/cycle", json={"as_of": "2024-06-28"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert len(body["decisions"]) == 8 and not body["degraded"]
    for d in body["decisions"]:
        assert d["action"] in ("buy", "sell", "hold", "skip") and d["rules"]
        assert d["outputs"]["forecast_trend"] is not None
    keys = list(redis.Redis.from_url(redis_url).scan_iter(f"{PREFIX}:*"))
    assert len([k for k in keys if not k.endswith(b":lock")]) == 8
    ttl = redis.Redis.from_url(redis_url).ttl(keys[0])
    assert 24 * 3600 - 60 < ttl <= 24 * 3600  # update_frequency = 24 hours
    misses, hits = _counter(client, "miss"), _counter(client, "hit")
    second = client.post("/cycle", json={"as_of": "2024-06-28"}).json()
    assert _counter(client, "hit") == hits + 8 and _counter(client, "miss") == misses
    assert [d["outputs"]["forecast_trend"] for d in second["decisions"]] == [d["outputs"]["forecast_trend"] for d in body["decisions"]]
    assert client.get("/decisions", params={"limit": 16}).json()[0]["cycle_id"] == second["cycle_id"]


def test_request_id_is_propagated_to_the_model_services(client, models):
    body = client.post("/cycle", json={"as_of": "2024-06-27"}, headers={"X-Request-ID": "cycle-trace-42"}).json()
    assert body["cycle_id"] == "cycle-trace-42"
    assert "[cycle-trace-42]" in models["forecast"].log_text()


def test_backtest_report_compares_modes_after_the_training_period(client):
    resp = client.post("/backtest", json={"symbols": ["SPY", "QQQ"], "start": "2019-01-01", "end": "2023-12-31"})
    assert resp.status_code == 200, resp.text
    report = resp.json()
    # the models saw data up to 2021: the replay starts after it, and says it moved the start
    assert report["models_trained_until"] == "2021-12-31" and report["start"] >= "2022-01-01"
    assert "2019-01-01" in report["note"]
    assert report["layers_available"] == ["signal", "ensemble", "anomaly", "forecast"]
    assert set(report["results"]) == {"technical", "signal", "ensemble", "anomaly", "forecast", "all", "buy_and_hold"}
    for metrics in report["results"].values():
        assert {"total_return", "cagr", "sharpe", "max_drawdown", "win_rate", "trades", "exposure"} <= set(metrics)
        assert metrics.get("degraded_decisions", 0) == 0  # every service answered every batch
    assert report["results"]["technical"]["trades"] > 0
    png = client.get("/reports/equity_curve.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert client.get("/reports/backtest_report.json").json()["id"] == report["id"]
    bad = client.post("/backtest", json={"modes": ["technical", "astrology"]})
    assert bad.status_code == 422 and bad.json()["field"] == "modes"
    for body in ({"start": "next tuesday"}, {"start": "2023-06-01", "end": "2023-01-01"}):
        bad = client.post("/backtest", json=body)
        assert bad.status_code == 422 and bad.json()["field"] == "start", bad.text


def test_a_stopped_model_service_degrades_decisions_and_recovers(client, models):
    forecast = models["forecast"]
    forecast.stop()
    try:
        resp = client.post("/cycle", json={"as_of": "2024-05-31"})  # a new bar: nothing cached
        assert resp.status_code == 200
        body = resp.json()
        assert body["degraded"]
        assert all("forecast" in d["unavailable"] for d in body["decisions"])
    finally:
        forecast.start()
    deadline = time.monotonic() + 30  # the circuit breaker lets a trial call through after its reset time
    while time.monotonic() < deadline:
        body = client.post("/cycle", json={"as_of": "2024-05-30"}).json()
        if not body["degraded"]:
            break
        time.sleep(1)
    assert not body["degraded"]


def test_trader_killed_and_restarted_keeps_positions_and_orders(trader, client):
    # technical-only cycles over a month of days: enough entries to have positions
    for day in ("2024-03-01", "2024-03-08", "2024-03-15", "2024-03-22", "2024-04-05", "2024-04-12", "2024-04-19"):
        assert client.post("/cycle", json={"as_of": day, "layers": []}).status_code == 200
    orders, positions, portfolio = client.get("/orders").json(), client.get("/positions").json(), client.get("/portfolio").json()
    assert orders, "no technical entries in a month of cycles"
    trader.kill()
    trader.start()
    with httpx.Client(base_url=trader.url, timeout=120) as fresh:
        assert fresh.get("/orders").json() == orders
        assert fresh.get("/positions").json() == positions
        assert fresh.get("/portfolio").json()["cash"] == pytest.approx(portfolio["cash"])
        # the same bar decided again places no second order
        fresh.post("/cycle", json={"as_of": "2024-04-19", "layers": []})
        assert len(fresh.get("/orders").json()) == len(orders)


def test_redis_stopped_and_restarted(start_server, models, tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is needed (make test installs it)")
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        _wait_redis(url)
        trader = start_server(TRADER, env=trader_env(models, url, tmp_path_factory.mktemp("trader-redis"), PREFIX))
        with httpx.Client(base_url=trader.url, timeout=120) as client:
            assert not client.post("/cycle", json={"as_of": "2024-02-29", "symbols": ["SPY", "QQQ"]}).json()["degraded"]
            assert _counter(client, "miss") == 2
            proc.terminate()
            proc.wait()
            down = client.post("/cycle", json={"as_of": "2024-02-28", "symbols": ["SPY", "QQQ"]})
            assert down.status_code == 200
            assert all(d["outputs"]["forecast_trend"] is not None for d in down.json()["decisions"])
            assert _counter(client, "error") >= 2
            assert client.get("/health/ready").json()["redis"] is False
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
            _wait_redis(url)
            client.post("/cycle", json={"as_of": "2024-02-27", "symbols": ["SPY", "QQQ"]})
            assert _counter(client, "miss") == 4  # the cache is used again, no restart needed
            client.post("/cycle", json={"as_of": "2024-02-27", "symbols": ["SPY", "QQQ"]})
            assert _counter(client, "hit") == 2
    finally:
        proc.terminate()
        proc.wait()


def _wait_redis(url: str) -> None:
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            return
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"redis at {url} did not start")


def test_bad_cycle_input(client):
    resp = client.post("/cycle", json={"symbols": ["not a symbol"]})
    assert resp.status_code == 422 and resp.json()["field"].startswith("symbols")
    resp = client.post("/cycle", json={"layers": ["tea-leaves"]})
    assert resp.status_code == 422 and resp.json()["field"] == "layers"
