"""The base of the local fakes of internet APIs: a FastAPI app on a real uvicorn server in a
thread, a log of the requests it served, and faults to inject.

A fake runs in the test's process so a test can read and change its state (the candles it
serves, the faults it injects, the requests it saw) between calls, while the client under
test talks to it over real HTTP on 127.0.0.1 through the client library's own URL override.

Faults (``fake.faults.arm(kind, times=n, path=prefix, after=k)``) hit the ``n`` requests
whose path starts with ``prefix`` that follow the next ``k`` such requests, one each:

* ``rate_limit``: the API's 429 answer (:meth:`FakeServer.fault_response` says what it is).
* ``server_error``: the API's 5xx answer.
* ``drop``: the real answer's status and headers, half its body, then the connection is
  closed (the client sees an incomplete read).
* ``malformed``: status 200 with the real body cut in half (complete HTTP, broken JSON).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import uvicorn
from fastapi import FastAPI

FAULT_KINDS = ("rate_limit", "server_error", "drop", "malformed")


@dataclass
class SeenRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str] = field(repr=False, default_factory=dict)


class Faults:
    """Faults armed for the next matching requests, consumed in the order they were armed."""

    def __init__(self) -> None:
        self._armed: list[list] = []  # [kind, times left, path prefix, requests still to let through]
        self._lock = threading.Lock()

    def arm(self, kind: str, times: int = 1, path: str = "", after: int = 0) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {FAULT_KINDS}")
        with self._lock:
            self._armed.append([kind, times, path, after])

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def take(self, path: str) -> str | None:
        with self._lock:
            for fault in self._armed:
                if path.startswith(fault[2]):
                    if fault[3] > 0:
                        fault[3] -= 1
                        return None
                    fault[1] -= 1
                    if fault[1] <= 0:
                        self._armed.remove(fault)
                    return fault[0]
        return None

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(f[1] for f in self._armed)


class FakeServer:
    """A FastAPI ``app``, served on ``url`` after :meth:`start`; subclasses add routes in
    :meth:`add_routes` and say what their API's error answers look like.

    Extension point for other fakes of the same API: subclass and extend ``add_routes``
    (call ``super()``), or ``include_router`` on ``app`` before starting; shared state lives
    on the instance, guarded by ``lock``.
    """

    def __init__(self) -> None:
        self.app = FastAPI()
        self.faults = Faults()
        self.requests: list[SeenRequest] = []
        self.lock = threading.RLock()
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.add_routes()

    def add_routes(self) -> None:
        """Register the API's routes on ``self.app``."""

    def fault_response(self, kind: str) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of an injected ``rate_limit`` or ``server_error``."""
        return (429, {}, b"rate limited") if kind == "rate_limit" else (503, {}, b"unavailable")

    # ---- the server ---------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "FakeServer":
        config = uvicorn.Config(_FaultInjector(self), host="127.0.0.1", port=0, log_level="critical", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=type(self).__name__, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- what it saw --------------------------------------------------------------------
    def seen(self, path: str = "") -> list[SeenRequest]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(path)]

    def forget(self) -> None:
        with self.lock:
            self.requests.clear()


class _FaultInjector:
    """ASGI wrapper of the fake's app: logs every request and plays the armed faults."""

    def __init__(self, fake: FakeServer):
        self.fake = fake

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.fake.app(scope, receive, send)
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        with self.fake.lock:
            self.fake.requests.append(SeenRequest(scope["method"], scope["path"], query, headers))
        kind = self.fake.faults.take(scope["path"])
        if kind is None:
            return await self.fake.app(scope, receive, send)
        if kind in ("rate_limit", "server_error"):
            status, extra, body = self.fake.fault_response(kind)
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        status, headers, body = await self._real_answer(scope, receive)
        half = body[: len(body) // 2]
        if kind == "drop":
            # the promised length, half the bytes, then the app returns: uvicorn closes the connection
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": half, "more_body": True})
            return
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"] + [(b"content-length", str(len(half)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": half})

    async def _real_answer(self, scope, receive) -> tuple[int, list, bytes]:
        messages = []

        async def collect(message):
            messages.append(message)

        await self.fake.app(scope, receive, collect)
        start = next(m for m in messages if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        return start["status"], list(start.get("headers", [])), body
