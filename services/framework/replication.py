"""Replicas that agree: every replica of a model service serving one store serves the
versions the store's active pointer (``active.json``) names.

The replica that activates a version (``POST /models/{v}/activate``, or a training job's
promotion) writes the pointer, as it always did, then announces it on the Redis channel
``kryptobot:<service>:active:<store>`` (``<store>``: a hash of the store's absolute path,
so deployments or test runs sharing one Redis, whose pub/sub ignores the database number,
do not wake each other). Every other replica takes a message as a hint only: it
re-reads the pointer and activates what it names, through :meth:`ModelRegistry.activate`
(load, verify, warm, then one swap) without writing the pointer back. Because the pointer,
not the message, is the truth, a lost, late, duplicated or foreign message is harmless,
and the last pointer write wins when two replicas activate at once.

The same check runs every ``KRYPTOBOT_REPLICATION_POLL_SECONDS`` (and right after each
(re)subscription), so replicas converge without Redis, when a message was lost or when
the publisher died before sending it. When Redis does not answer, the replica starts and
serves anyway, logs it once, shows it in ``/health/ready`` (``replication.pubsub``) and
keeps retrying in the background. ``KRYPTOBOT_REPLICATION=false`` turns both off: the
replica keeps its own view, as a lone process does.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from kryptobot.files import utc_now
from kryptobot.settings import Settings
from kryptobot.store import CorruptPointer
from services.framework.registry import ModelRegistry

log = logging.getLogger("kryptobot.replication")

CHANNEL = "kryptobot:{service}:active:{store}"
REDIS_SECONDS = 2.0  # connect and command timeout: a dead Redis must not stall an activation
RETRY_SECONDS = (1.0, 30.0)  # reconnect back-off, first and longest
#: re-reads of the pointer in one check when it moves while a version loads
MAX_ROUNDS = 3


def replica_id() -> str:
    """``<hostname>-<pid>``: the pod name on Kubernetes, unique among local processes."""
    return f"{socket.gethostname()}-{os.getpid()}"


def channel_name(service: str, store_dir: Path) -> str:
    """The pub/sub channel of one service's store (replicas mount it at the same path)."""
    return CHANNEL.format(service=service, store=hashlib.sha256(str(Path(store_dir).resolve()).encode()).hexdigest()[:12])


def redis_location(url: str) -> str:
    """``host:port/db`` of a Redis URL, for logs: never its password."""
    parts = urlsplit(url)
    return f"{parts.hostname or '?'}:{parts.port or 6379}{parts.path or '/0'}"


class Replicator:
    """Keeps ``registry`` on the versions its store's pointer names; lives on ``app.state.replicator``."""

    def __init__(self, registry: ModelRegistry, settings: Settings, replica: str):
        self.registry = registry
        self.enabled = settings.replication
        self.poll_seconds = settings.replication_poll_seconds
        self.redis_url = settings.redis_url
        self.replica = replica
        self.channel = channel_name(registry.runtime.name, registry.store.dir)
        self.pubsub = "connecting" if self.enabled else "off"
        self.last_check: str | None = None
        self.followed = 0  # activations made to follow another replica
        self._failed: dict[str, str] = {}  # line -> pointer version that did not load here
        self._pointer_error: str | None = None
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._redis = None

    def status(self) -> dict:
        """What ``/health/ready`` shows under ``replication``."""
        return {
            "replica": self.replica,
            "enabled": self.enabled,
            "pubsub": self.pubsub,
            "channel": self.channel,
            "poll_seconds": self.poll_seconds,
            "last_check": self.last_check,
            "followed": self.followed,
        }

    async def start(self) -> None:
        """Start following (call after the registry served the stored versions)."""
        if not self.enabled:
            log.info("replication off (KRYPTOBOT_REPLICATION=false): this replica keeps its own active versions")
            return
        try:  # what start-up could not serve is named already (load_errors, fallbacks): not retried
            served = self.registry.versions()
            self._failed = {ln: v for ln, v in self.registry.store.active().items() if served.get(ln) != v}
        except CorruptPointer:
            pass
        self.registry.on_activate.append(self.announce)
        self._spawn(self._follow())
        self._spawn(self._listen())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()

    def announce(self, line: str, version: str) -> None:
        """The registry's listener: this replica wrote the pointer, tell the others."""
        self._spawn(self._publish(line, version))

    async def converge(self) -> list[str]:
        """Activate whatever the pointer names and this replica does not serve; the versions
        it switched to. A version that does not load here is tried again only once the
        pointer names another one for its line (meanwhile ``/health/ready`` names it)."""
        switched: list[str] = []
        for _ in range(MAX_ROUNDS):
            try:
                pointers = await asyncio.to_thread(self.registry.store.active)
            except CorruptPointer as exc:
                if str(exc) != self._pointer_error:  # once, not every poll, until it changes
                    log.error("replication: %s; keeping the versions served now", exc)
                self._pointer_error = str(exc)
                return switched
            self._pointer_error = None
            self.last_check = utc_now()
            served = self.registry.versions()
            todo = {ln: v for ln, v in pointers.items() if served.get(ln) != v and self._failed.get(ln) != v}
            if not todo:
                return switched
            for line, version in todo.items():
                try:
                    await self.registry.activate(version, write_pointer=False)
                except Exception as exc:  # noqa: BLE001 - keep serving what loads; say why
                    self._failed[line] = version
                    now = served.get(line)
                    why = f"cannot follow the active pointer to {version} ({exc})"
                    if now is None:
                        self.registry.load_errors[line] = why  # the 503 of /health/ready says it
                    else:
                        self.registry.fallbacks[line] = f"{why}; serving {now}"
                    log.error("replication: %s", why)
                    continue
                self._failed.pop(line, None)
                self.registry.fallbacks.pop(line, None)
                self.followed += 1
                switched.append(version)
                log.info("replication: now serving %s, as the store's active pointer says", version)
        return switched

    async def _follow(self) -> None:
        """The pointer check: on every message, and every ``poll_seconds`` whatever happens."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.converge()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("replication: checking the active pointer failed")

    async def _listen(self) -> None:
        """Subscribe and wake the check on other replicas' announcements; reconnect with back-off."""
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        self._redis = aioredis.Redis.from_url(
            self.redis_url, socket_connect_timeout=REDIS_SECONDS, socket_timeout=REDIS_SECONDS, health_check_interval=15
        )
        delay = RETRY_SECONDS[0]
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._set_pubsub("subscribed")
                delay = RETRY_SECONDS[0]
                self._wake.set()  # anything announced while this replica was not listening
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self._on_message(message.get("data"))
            except (RedisError, OSError) as exc:
                self._set_pubsub("unreachable", f"{type(exc).__name__}: {exc}", retry_in=delay)
            except Exception as exc:  # noqa: BLE001 - a bug here must not end replication for good
                log.exception("replication: the subscriber failed")
                self._set_pubsub("failed", f"{type(exc).__name__}: {exc}", retry_in=delay)
            finally:
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_SECONDS[1])

    def _on_message(self, data) -> None:
        try:
            message = json.loads(data)
        except (TypeError, ValueError):
            log.warning("replication: ignored a malformed message on %s", self.channel)
            return
        if isinstance(message, dict) and message.get("replica") != self.replica:
            log.info("replication: %s activated %s", message.get("replica"), message.get("version"))
            self._wake.set()

    async def _publish(self, line: str, version: str) -> None:
        from redis.exceptions import RedisError

        if self._redis is None:
            return
        body = json.dumps({"replica": self.replica, "line": line, "version": version, "at": utc_now()})
        try:
            await self._redis.publish(self.channel, body)
        except (RedisError, OSError) as exc:  # the others' pointer check still carries it
            log.warning("replication: could not announce %s (%s); the others follow at their next pointer check", version, exc)

    def _set_pubsub(self, state: str, why: str = "", retry_in: float = 0.0) -> None:
        changed = (state == "subscribed") != (self.pubsub == "subscribed") or self.pubsub == "connecting"
        self.pubsub = f"{state}: {why}" if why else state
        if not changed:
            return  # one line per change, not one per retry
        if state == "subscribed":
            log.info("replication: subscribed to %s on Redis at %s", self.channel, redis_location(self.redis_url))
        else:
            log.warning(
                "replication: Redis at %s is unreachable (%s); following the store's active pointer every %gs only, "
                "retrying Redis in the background (first in %gs)",
                redis_location(self.redis_url), why, self.poll_seconds, retry_in,
            )

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
