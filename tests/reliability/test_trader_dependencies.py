"""The trader against slow, trickling and broken model services, and Redis down, slow,
stalled, cut off or flushed (through :mod:`tests.reliability.proxy`, in front of the real
Redis): every cycle ends within its deadline (plus the local work), releases the cycle
lock, and says in each decision why a layer is missing; a flushed cache is a miss.

The forecast layer is the one under test (a cycle asks it for every symbol); the other
services are unreachable ports and not asked (``layers: ["forecast"]``). The model
services are :mod:`tests.services.trader.misbehaving` stand-ins that count their calls.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import httpx
import pytest
import redis

from tests.live import free_port
from tests.reliability.figures import record, scale
from tests.reliability.proxy import TcpProxy

TRADER = "services.trader.app:create_app"
STAND_IN = "tests.services.trader.misbehaving:create_app"
SYMBOLS = ["SPY", "QQQ", "AAPL", "MSFT", "AMZN", "GOOGL", "META", "TSLA"]
DAYS = ["2023-03-01", "2023-03-02", "2023-03-03", "2023-03-06", "2023-03-07", "2023-03-08", "2023-03-09", "2023-03-10"]
#: the cycle's local work on top of the deadline: 8 symbols' market data, the rules, the ledger
MARGIN = 1.5


def _trader_env(tmp_path, redis_url: str, forecast_url: str, prefix: str, **settings) -> dict:
    dead = {f"KRYPTOBOT_{n.upper()}_URL": f"http://127.0.0.1:{free_port()}" for n in ("signal", "ensemble", "anomaly")}
    return {
        **dead,
        "KRYPTOBOT_FORECAST_URL": forecast_url,
        "KRYPTOBOT_REDIS_URL": redis_url,
        "KRYPTOBOT_LEDGER_PATH": str(tmp_path / f"{prefix}.sqlite"),
        "KRYPTOBOT_REPORTS_DIR": str(tmp_path / "reports"),
        "KRYPTOBOT_CACHE_PREFIX": f"test-reliability-{prefix}:forecast",
        "KRYPTOBOT_TRADER_SETTINGS__REPLAY_PAST": "true",
        **{f"KRYPTOBOT_TRADER_SETTINGS__{k.upper()}": json.dumps(v) for k, v in settings.items()},
    }


def _cycle(client: httpx.Client, day: str) -> tuple[dict, float]:
    started = time.monotonic()
    resp = client.post("/cycle", json={"as_of": day, "symbols": SYMBOLS, "layers": ["forecast"]})
    took = time.monotonic() - started
    assert resp.status_code == 200, resp.text
    return resp.json(), took


def _calls(server) -> int:
    return httpx.get(f"{server.url}/calls", timeout=5).json()["predict"]


def _quiet(server, within: float = 3.0) -> bool:
    """True once the stand-in streams nothing (each trickle ends when its client closes)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        if httpx.get(f"{server.url}/calls", timeout=5).json()["trickling"] == 0:
            return True
        time.sleep(0.1)
    return False


def _reasons(decisions: list[dict]) -> Counter:
    """How often each reason was given (its first 60 characters: the kind, not the details)."""
    return Counter(why[:60] for d in decisions for why in (d.get("unavailable_reasons") or {}).values())


def _clear(redis_url: str, prefix: str) -> int:
    """Delete the trader's cache keys: the cache flushed (only ours: db 15 is shared by the tests)."""
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"test-reliability-{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
    return len(keys)


@pytest.mark.parametrize("kind", ["trickle", "slow"])
def test_a_service_that_never_finishes_answering_costs_a_cycle_its_deadline_not_more(start_server, redis_url, tmp_path, kind):
    """httpx's timeouts are per read: a byte every 0.2 s never trips a 5 s timeout. The
    cycle's 2 s deadline ends it; the decisions say so; the lock is free for the next one."""
    deadline = 2.0
    service = start_server(STAND_IN, env={"MISBEHAVE": kind, "MISBEHAVE_SECONDS": "0.2" if kind == "trickle" else "8"})
    trader = start_server(TRADER, env=_trader_env(tmp_path, redis_url, service.url, kind, cycle_deadline_seconds=deadline,
                                                  request_timeout_seconds=5.0, retries=2))
    _clear(redis_url, kind)
    times, decisions = [], []
    with httpx.Client(base_url=trader.url, timeout=60) as client:
        for day in (DAYS * 4)[: scale(3, 30)]:
            body, took = _cycle(client, day)
            times.append(took)
            decisions += body["decisions"]
            assert body["degraded"]
        # two at once: the second waits for the lock the first releases at its deadline
        with ThreadPoolExecutor(2) as pool:
            both = list(pool.map(lambda day: _cycle(client, day), DAYS[:2]))
        assert client.get("/health/live").status_code == 200
    for body, _ in both:
        decisions += body["decisions"]
    assert max(times) < deadline + MARGIN, times
    assert max(took for _, took in both) < 2 * (deadline + MARGIN)
    # every request the deadline cut was closed, not left open in the trader's pool
    assert _quiet(service), "the trader left connections open on answers it gave up on"
    for d in decisions:
        assert d["degraded"] and d["unavailable"] == ["forecast"], d
        assert "deadline:forecast" in d["rules"] and d["unavailable_reasons"]["forecast"].startswith("deadline"), d
    record(f"trader_dependencies_{kind}", {
        "scenario": f"forecast service {kind} (5 s request timeout, 2 retries)", "deadline_s": deadline,
        "cycles": len(times) + 2, "max_cycle_s": round(max(times), 3), "degraded": len(decisions),
        "decisions": len(decisions), "reasons": dict(_reasons(decisions)),
    })


def test_within_the_deadline_each_request_has_its_own_timeout_and_retries_stop(start_server, redis_url, tmp_path):
    """A 0.4 s request timeout inside a 3 s deadline: each try is cut at 0.4 s (not at the
    deadline), at most 1 + retries tries per symbol, and the circuit then opens."""
    deadline, retries = 3.0, 2
    service = start_server(STAND_IN, env={"MISBEHAVE": "trickle", "MISBEHAVE_SECONDS": "0.2"})
    trader = start_server(TRADER, env=_trader_env(tmp_path, redis_url, service.url, "timeouts", cycle_deadline_seconds=deadline,
                                                  request_timeout_seconds=0.4, retries=retries))
    _clear(redis_url, "timeouts")
    times, decisions = [], []
    with httpx.Client(base_url=trader.url, timeout=60) as client:
        for day in DAYS[:3]:
            body, took = _cycle(client, day)
            times.append(took)
            decisions += body["decisions"]
        breakers = client.get("/health/ready").json()["services"]
    first = decisions[: len(SYMBOLS)]
    assert all(d["unavailable_reasons"]["forecast"].startswith("forecast unavailable: no whole answer in 0.4 s") for d in first), first
    assert _calls(service) <= len(SYMBOLS) * (retries + 1)  # no retry storm: the breaker stops the rest
    assert breakers["forecast"] == "open"  # later cycles fail fast (GET /model first: no version, no forecast)
    assert decisions[-1]["unavailable_reasons"]["forecast"].endswith("(circuit open)")
    assert max(times) < deadline + MARGIN and times[-1] < 1.0, times
    record("trader_dependencies_request_timeout", {
        "scenario": "forecast trickling, 0.4 s request timeout inside a 3 s deadline", "deadline_s": deadline,
        "cycles": len(times), "max_cycle_s": round(max(times), 3), "predict_requests": _calls(service),
        "degraded": sum(d["degraded"] for d in decisions), "decisions": len(decisions), "reasons": dict(_reasons(decisions)),
    })


def test_a_garbage_answer_is_a_fast_degraded_decision_that_says_why(start_server, redis_url, tmp_path):
    deadline = 5.0
    service = start_server(STAND_IN, env={"MISBEHAVE": "not_json"})
    trader = start_server(TRADER, env=_trader_env(tmp_path, redis_url, service.url, "garbage", cycle_deadline_seconds=deadline))
    _clear(redis_url, "garbage")
    times, decisions = [], []
    with httpx.Client(base_url=trader.url, timeout=60) as client:
        for day in DAYS[: max(2, min(scale(2, 8), len(DAYS)))]:
            body, took = _cycle(client, day)
            times.append(took)
            decisions += body["decisions"]
    assert all(d["degraded"] and d["unavailable"] == ["forecast"] for d in decisions)
    assert "malformed /predict body" in decisions[0]["unavailable_reasons"]["forecast"]
    assert not any("deadline" in r for d in decisions for r in d["rules"])
    assert max(times) < deadline / 2, times  # garbage is a fast failure, not a wait
    record("trader_dependencies_garbage", {
        "scenario": "forecast answering 200 with a non-JSON body", "deadline_s": deadline, "cycles": len(times),
        "max_cycle_s": round(max(times), 3), "degraded": sum(d["degraded"] for d in decisions), "decisions": len(decisions),
        "reasons": dict(_reasons(decisions)),
    })


def test_redis_down_slow_stalled_cut_or_flushed_is_a_miss_or_a_bypass_never_a_stall(start_server, redis_url, tmp_path):
    """Each Redis fault, then a cycle: it ends within the deadline and decides with the
    forecast (fetched directly when Redis cannot answer); a flushed cache is one forecast
    request per symbol again; once Redis is back, cached forecasts are hits again."""
    deadline = 4.0
    service = start_server(STAND_IN, env={"MISBEHAVE": "forecast"})
    target = urlparse(redis_url)
    proxy = TcpProxy(target.port or 6379).start()
    proxied = f"redis://127.0.0.1:{proxy.port}{target.path}"
    trader = start_server(TRADER, env=_trader_env(tmp_path, proxied, service.url, "redis", cycle_deadline_seconds=deadline))
    _clear(redis_url, "redis")
    runs: list[dict] = []

    def run(fault: str, day: str) -> dict:
        before, errors = _calls(service), _counter(client.get("/metrics").text, "error")
        body, took = _cycle(client, day)
        run = {"fault": fault, "seconds": round(took, 3), "requests": _calls(service) - before,
               "degraded": sum(d["degraded"] for d in body["decisions"]),
               "cache_errors": _counter(client.get("/metrics").text, "error") - errors}
        runs.append(run)
        return run

    try:
        with httpx.Client(base_url=trader.url, timeout=60) as client:
            for round_ in range(scale(1, 10)):
                day, other = DAYS[round_ % len(DAYS)], DAYS[(round_ + 1) % len(DAYS)]
                _clear(redis_url, "redis")
                assert run("none (cold)", day)["requests"] == len(SYMBOLS)
                assert run("none (warm)", day)["requests"] == 0  # all hits
                _clear(redis_url, "redis")
                assert run("flushed", day)["requests"] == len(SYMBOLS)  # a miss, nothing worse
                proxy.delay = 0.8  # beyond the cache's 0.5 s per command
                slow = run("slow (0.8 s per chunk)", other)
                proxy.delay = 0.0
                proxy.stalled = True
                stalled = run("stalled", other)
                proxy.stalled = False
                proxy.cut()
                run("connections cut", day)
                proxy.stop()
                down = run("down", other)
                assert client.get("/health/ready").json()["redis"] is False
                proxy.start()
                back = run("back", day)
                assert back["requests"] == 0, "Redis is back: the forecasts cached before are hits again"
                for r in (slow, stalled, down):
                    assert r["requests"] == len(SYMBOLS) and r["cache_errors"] > 0, r
    finally:
        proxy.stop()
        _clear(redis_url, "redis")
    assert all(r["degraded"] == 0 for r in runs), runs  # Redis is a cache: its faults never cost a decision its forecast
    assert max(r["seconds"] for r in runs) < deadline + MARGIN, runs
    record("trader_dependencies_redis", {
        "scenario": "Redis through a proxy: healthy, flushed, slow, stalled, cut, down, back", "deadline_s": deadline,
        "cycles": len(runs), "max_cycle_s": max(r["seconds"] for r in runs), "degraded": sum(r["degraded"] for r in runs),
        "max_cycle_s_by_fault": {f: max(r["seconds"] for r in runs if r["fault"] == f) for f in dict.fromkeys(r["fault"] for r in runs)},
        "forecast_requests_by_fault": {f: sum(r["requests"] for r in runs if r["fault"] == f) for f in dict.fromkeys(r["fault"] for r in runs)},
    })


def _counter(metrics: str, outcome: str) -> float:
    """``kryptobot_forecast_cache_total{outcome=...}`` from the trader's /metrics."""
    for line in metrics.splitlines():
        if line.startswith("kryptobot_forecast_cache_total{") and f'outcome="{outcome}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_no_retry_starts_without_time_left():
    """Ten retries against a refused port would back off for about 6 s; a 0.3 s deadline
    stops them once the next backoff would not fit, and a spent deadline asks nothing."""
    from kryptobot.errors import ServiceUnavailable
    from services.trader.clients import CircuitBreaker, Deadline, DeadlineReached, ModelClient

    async with httpx.AsyncClient() as http:
        client = ModelClient("signal", f"http://127.0.0.1:{free_port()}", http, timeout=5, retries=10,
                             breaker=CircuitBreaker(threshold=100))
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="ConnectError"):
            await client.predict({"instances": []}, deadline=Deadline(0.3))
        assert time.monotonic() - started < 0.3
        with pytest.raises(DeadlineReached, match="^deadline"):
            await client.predict({"instances": []}, deadline=Deadline(0))
        assert client.breaker.failures == 1  # the call not made is no verdict on the service
