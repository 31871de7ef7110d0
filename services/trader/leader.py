"""One scheduler leader among trader replicas: a lease in Redis.

Every replica serves requests (``POST /cycle`` included: the ledger makes concurrent
cycles safe); only the leader runs the scheduled cycles and the retraining rules, so a
rule fires once, not once per replica. The lease is one Redis key holding the leader's
token, with a time to live:

* taken with ``SET key token NX PX lease``: only when nobody holds it;
* renewed every third of the lease by a Lua compare-and-set (extend the TTL only if the key
  still holds this replica's token), so a replica that lost the key never extends
  another's lease;
* released (compare-and-delete) on shutdown, so another replica takes over at its next
  attempt; a leader that dies without releasing is replaced when its lease expires.

A replica believes it leads until ``lease`` after it *sent* its last successful take or
renewal, never longer than Redis keeps the key; when Redis cannot be reached it stops
leading at that point, and nobody leads until Redis is back. ``lease_seconds`` 0 turns the
election off: the one replica there is always leads (no Redis needed for it).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Gauge

log = logging.getLogger("kryptobot.trader.leader")
REDIS_SECONDS = 1.0  # per command: an unreachable Redis costs an attempt, not the event loop's time

# the key holds our token: extend its TTL (1) or leave it alone (0)
RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
# the key holds our token: delete it (1) or leave it alone (0)
RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class Leadership:
    """This replica's part in the election on ``key`` (see the module's docstring).

    :meth:`start` runs the attempts in a task on the running loop; :attr:`is_leader` is what
    the scheduler asks before each job; :meth:`stop` releases the lease.
    """

    def __init__(self, redis_url: str, key: str, lease_seconds: float, registry: CollectorRegistry | None = None):
        self.key = key
        self.lease_seconds = lease_seconds
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.holder: str | None = None  # who held the lease at the last attempt
        self._valid_until = 0.0  # time.monotonic() until which this replica leads
        self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=REDIS_SECONDS, socket_connect_timeout=REDIS_SECONDS)
        self._renew = self._redis.register_script(RENEW)
        self._release = self._redis.register_script(RELEASE)
        self._task: asyncio.Task | None = None
        self._gauge = Gauge("kryptobot_trader_leader", "1 while this trader replica leads the schedule, else 0",
                            registry=registry)

    @property
    def elected(self) -> bool:
        """Whether there is an election at all (a lease longer than 0)."""
        return self.lease_seconds > 0

    @property
    def is_leader(self) -> bool:
        return not self.elected or time.monotonic() < self._valid_until

    async def attempt(self) -> bool:
        """Renew the lease if this replica holds it, else take it if it is free; whether this replica leads."""
        if not self.elected:
            return True
        sent = time.monotonic()
        ms = int(self.lease_seconds * 1000)
        try:
            held = bool(await self._renew(keys=[self.key], args=[self.token, ms]))
            if not held:
                held = bool(await self._redis.set(self.key, self.token, nx=True, px=ms))
            if held:
                self.holder, self._valid_until = self.token, sent + self.lease_seconds
            else:
                holder = await self._redis.get(self.key)
                self.holder, self._valid_until = holder.decode() if holder else None, 0.0
        except (aioredis.RedisError, OSError) as exc:  # the lease runs out on its own
            log.warning("leader election: Redis unreachable (%s); %s", exc,
                        "leading until the lease runs out" if self.is_leader else "not leading")
        self._gauge.set(1 if self.is_leader else 0)
        return self.is_leader

    async def _run(self) -> None:
        interval = self.lease_seconds / 3
        was = False
        while True:
            now = await self.attempt()
            if now != was:
                log.info("replica %s %s the scheduler leader", self.token, "is now" if now else "is no longer")
                was = now
            await asyncio.sleep(interval)

    def start(self) -> None:
        """Take part in the election (a task on the running loop); without one, lead now."""
        self._gauge.set(1 if self.is_leader else 0)
        if self.elected:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="leader-election")

    async def stop(self) -> None:
        """Stop taking part and release the lease if this replica holds it."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self.elected:
            try:
                await self._release(keys=[self.key], args=[self.token])
            except (aioredis.RedisError, OSError) as exc:
                log.warning("leader election: could not release the lease (%s); it expires by itself", exc)
            self._valid_until = 0.0
            self._gauge.set(0)
        await self._redis.aclose()

    def status(self) -> dict:
        """For ``/health/ready``: whether this replica leads, who held the lease at the last attempt."""
        return {"leader": self.is_leader, "election": self.elected, "replica": self.token,
                "holder": self.holder if self.elected else self.token, "lease_seconds": self.lease_seconds}
