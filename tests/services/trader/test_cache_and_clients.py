"""The forecast cache against the real Redis, and the clients' circuit breaker."""
from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from kryptobot.errors import ServiceUnavailable
from services.trader.cache import ForecastCache
from services.trader.clients import CircuitBreaker, ModelClient
from tests.live import free_port


@pytest.fixture
async def cache(redis_url):
    cache = ForecastCache(redis_url, ttl_hours=2, prefix=f"test-cache-{uuid.uuid4().hex[:8]}")
    yield cache
    async for key in cache.redis.scan_iter(f"{cache.prefix}:*"):
        await cache.redis.delete(key)
    await cache.close()


async def test_ttl_and_single_flight(cache):
    calls = 0

    async def fetch():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return {"trend": 0.01}

    key = cache.key("SPY", "gru-v1", 5, "2024-01-02T00:00:00")
    results = await asyncio.gather(*(cache.get_or_fetch(key, fetch) for _ in range(10)))
    assert calls == 1  # ten concurrent requests for one key: one forecast request
    assert all(value == {"trend": 0.01} for value, _ in results)
    assert 2 * 3600 - 5 < await cache.redis.ttl(key) <= 2 * 3600
    value, outcome = await cache.get_or_fetch(key, fetch)
    assert outcome == "hit" and calls == 1


async def test_single_flight_across_replicas(cache, redis_url):
    """Two traders (two caches, one Redis): the SET NX lock lets only one of them fetch."""
    other = ForecastCache(redis_url, ttl_hours=2, prefix=cache.prefix)
    calls = 0

    async def fetch():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return {"trend": -0.01}

    key = cache.key("QQQ", "gru-v1", 5, "2024-01-02T00:00:00")
    (a, first), (b, second) = await asyncio.gather(cache.get_or_fetch(key, fetch), other.get_or_fetch(key, fetch))
    await other.close()
    assert calls == 1 and a == b == {"trend": -0.01}
    assert sorted([first, second]) == ["hit", "miss"]
    assert await cache.redis.get(key + ":lock") is None  # released once the value is stored


async def test_a_failed_fetch_is_not_cached_and_releases_the_lock(cache):
    async def broken():
        raise ServiceUnavailable("forecast down", field="forecast")

    key = cache.key("SPY", "gru-v1", 5, "2024-01-03T00:00:00")
    with pytest.raises(ServiceUnavailable):
        await cache.get_or_fetch(key, broken)
    assert await cache.redis.get(key) is None and await cache.redis.get(key + ":lock") is None

    async def fetch():
        return {"trend": 0.0}

    assert await cache.get_or_fetch(key, fetch) == ({"trend": 0.0}, "miss")


async def test_another_replicas_failed_fetch_does_not_stall_this_one(cache, redis_url):
    """Replica B waits on A's lock; when A's fetch fails B fetches at once, not after the full wait."""
    from services.trader.cache import WAIT_SECONDS

    other = ForecastCache(redis_url, ttl_hours=2, prefix=cache.prefix)
    key = cache.key("IBM", "gru-v1", 5, "2024-01-04T00:00:00")

    async def broken():
        await asyncio.sleep(0.2)
        raise ServiceUnavailable("forecast down", field="forecast")

    async def fetch():
        return {"trend": 0.02}

    async def later():
        await asyncio.sleep(0.05)  # A holds the lock by now
        started = asyncio.get_running_loop().time()
        result = await other.get_or_fetch(key, fetch)
        return result, asyncio.get_running_loop().time() - started

    first, (second, waited) = await asyncio.gather(cache.get_or_fetch(key, broken), later(), return_exceptions=True)
    await other.close()
    assert isinstance(first, ServiceUnavailable)
    assert second == ({"trend": 0.02}, "miss") and waited < WAIT_SECONDS / 2


async def test_waiters_of_a_cancelled_fetch_get_an_error_not_the_cancellation(cache):
    key = cache.key("MSFT", "gru-v1", 5, "2024-01-05T00:00:00")

    async def slow():
        await asyncio.sleep(10)
        return {"trend": 0.0}

    owner = asyncio.create_task(cache.get_or_fetch(key, slow))
    await asyncio.sleep(0.05)
    waiter = asyncio.create_task(cache.get_or_fetch(key, slow))
    await asyncio.sleep(0.05)
    owner.cancel()
    with pytest.raises(ServiceUnavailable):
        await waiter
    assert owner.cancelled()


async def test_unreachable_redis_falls_back_to_the_service():
    cache = ForecastCache(f"redis://127.0.0.1:{free_port()}/0", ttl_hours=1)

    async def fetch():
        return {"trend": 0.02}

    value, outcome = await cache.get_or_fetch("k", fetch)
    assert value == {"trend": 0.02} and outcome == "bypass"
    await cache.close()


def test_circuit_breaker_opens_and_half_opens():
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, reset_after=10, clock=lambda: now[0])
    breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 11
    assert breaker.state == "half-open" and breaker.allow()
    breaker.failure()  # the trial failed: open again
    assert breaker.state == "open"
    now[0] = 22
    breaker.success()
    assert breaker.state == "closed"


def test_half_open_lets_one_trial_through():
    now = [0.0]
    breaker = CircuitBreaker(threshold=1, reset_after=5, clock=lambda: now[0])
    breaker.failure()
    now[0] = 6
    assert breaker.allow()  # the trial
    assert not breaker.allow() and not breaker.allow()  # the others fail fast while it runs
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


async def test_client_retries_then_opens_its_circuit():
    async with httpx.AsyncClient() as http:
        client = ModelClient("signal", f"http://127.0.0.1:{free_port()}", http, timeout=0.5, retries=1, breaker=CircuitBreaker(threshold=2))
        for _ in range(2):
            with pytest.raises(ServiceUnavailable):
                await client.predict({"instances": []})
        with pytest.raises(ServiceUnavailable, match="circuit open"):
            await client.predict({"instances": []})


@pytest.mark.parametrize("kind", ["wrong_type", "missing_field", "not_json", "nan"])
async def test_a_malformed_answer_is_the_service_being_unavailable(start_server, kind):
    server = start_server("tests.services.trader.misbehaving:create_app", env={"MISBEHAVE": kind})
    async with httpx.AsyncClient() as http:
        client = ModelClient("signal", server.url, http, timeout=5, retries=0, breaker=CircuitBreaker(threshold=1))
        with pytest.raises(ServiceUnavailable, match="malformed /predict body"):
            await client.predict({"instances": [{"features": {}}]})
        assert client.breaker.state == "open"  # counted as a failure, like a 5xx
