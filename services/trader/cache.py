"""The forecast cache in Redis.

Key: ``<prefix>:<symbol>:<model version>:<horizon>:<last bar>``; expiry:
``update_frequency`` hours. One forecast request per key is in flight at a time: an
in-process future per key (one trader) plus a short Redis lock (``SET NX`` with a token,
redis-py's ``Lock``) for several replicas; a failed fetch releases it and caches nothing.
If Redis fails, the forecast is fetched directly and the cache is tried again on the
next call: the redis client reconnects by itself once Redis is back. Each Redis command
waits at most ``REDIS_SECONDS``, so a stalled Redis costs a cycle a few of those, and a
wait for another replica's forecast is cut to half the cycle's time left (the other half
for fetching it ourselves). A flushed cache is a miss.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Awaitable, Callable

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter

from kryptobot.errors import ServiceUnavailable
from services.trader.clients import Deadline

log = logging.getLogger("kryptobot.trader.cache")
LOCK_SECONDS = 30  # a replica that dies holding the lock blocks the key at most this long
WAIT_SECONDS = 5  # how long a replica waits for another's forecast before fetching itself
POLL_SECONDS = 0.05
REDIS_SECONDS = 0.5  # per command (connect, or wait for a reply): Redis down or stalled is a bypass, not a stall


class ForecastCache:
    def __init__(self, url: str, ttl_hours: float, prefix: str = "kryptobot:forecast", registry: CollectorRegistry | None = None):
        self.redis = aioredis.Redis.from_url(url, socket_timeout=REDIS_SECONDS, socket_connect_timeout=REDIS_SECONDS)
        self.ttl_seconds = max(1, int(ttl_hours * 3600))
        self.prefix = prefix
        self._inflight: dict[str, asyncio.Future] = {}
        self.events = Counter("kryptobot_forecast_cache_total", "Forecast cache lookups by outcome", ["outcome"], registry=registry)

    def key(self, symbol: str, version: str, horizon: int, last_bar: str) -> str:
        return f"{self.prefix}:{symbol}:{version}:{horizon}:{last_bar}"

    async def get_or_fetch(self, key: str, fetch: Callable[[], Awaitable[dict]], deadline: Deadline | None = None) -> tuple[dict, str]:
        """The cached forecast, or ``fetch()``'s result stored; returns (value, 'hit'|'miss'|'bypass').

        ``deadline`` (the cycle's) shortens the wait for another replica's fetch; ``fetch``
        itself is expected to keep to it.
        """
        if key in self._inflight:  # same key already being fetched in this process: share it
            value = await asyncio.shield(self._inflight[key])
            self.events.labels("hit").inc()  # a hit is an answer without a forecast request of our own
            return value, "hit"
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value, outcome = await self._lookup(key, fetch, deadline)
            future.set_result(value)
            return value, outcome
        except asyncio.CancelledError:
            # the waiters were not cancelled: they get an error they handle, not our cancellation
            future.set_exception(ServiceUnavailable("the forecast request they waited for was cancelled", field="forecast"))
            future.exception()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[key]

    async def _lookup(self, key: str, fetch, deadline: Deadline | None) -> tuple[dict, str]:
        lock = self.redis.lock(key + ":lock", timeout=LOCK_SECONDS, blocking=False)
        owner = False
        try:
            cached = await self.redis.get(key)
            if cached is not None:
                self.events.labels("hit").inc()
                return json.loads(cached), "hit"
            owner = await lock.acquire()
            if not owner:  # another replica is fetching it: wait for its result
                cached = await self._wait_for(key, lock, WAIT_SECONDS if deadline is None else min(WAIT_SECONDS, deadline.left() / 2))
                if cached is not None:
                    self.events.labels("hit").inc()
                    return json.loads(cached), "hit"
                # it is slow or died holding the lock: fetch too (one extra request, not a stall)
        except (aioredis.RedisError, OSError) as exc:
            self.events.labels("error").inc()
            log.warning("forecast cache unavailable, calling the forecast service directly: %s", exc)
            return await fetch(), "bypass"
        self.events.labels("miss").inc()
        try:
            value = await fetch()
            await self._store(key, value)
        finally:
            if owner:
                await self._release(lock)
        return value, "miss"

    async def _wait_for(self, key: str, lock, seconds: float) -> bytes | None:
        """The other replica's value; None when it gave up (lock released, nothing stored) or is too slow."""
        for _ in range(int(seconds / POLL_SECONDS)):
            await asyncio.sleep(POLL_SECONDS)
            cached = await self.redis.get(key)
            if cached is not None:
                return cached
            if not await lock.locked():  # its fetch failed: no value is coming
                return await self.redis.get(key)  # unless it was stored just before the release
        return None

    async def _store(self, key: str, value: dict) -> None:
        try:
            await self.redis.set(key, json.dumps(value), ex=self.ttl_seconds)
        except (aioredis.RedisError, OSError) as exc:
            self.events.labels("error").inc()
            log.warning("could not store forecast in the cache: %s", exc)

    async def _release(self, lock) -> None:
        try:
            await lock.release()  # only our own token: a lock that expired and was retaken stays
        except (aioredis.RedisError, OSError) as exc:
            log.warning("could not release forecast cache lock: %s", exc)

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (aioredis.RedisError, OSError):
            return False

    async def close(self) -> None:
        await self.redis.aclose()
