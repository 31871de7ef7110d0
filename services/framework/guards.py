"""Guards in front of every route, answering in the project's error shape:

* a bound on request bodies (413): one request must not make a service read (and then
  validate and score) an arbitrarily large document;
* no cross-site mutations (403/415): a page on another site must not make a user's browser
  start training or place orders on a service reachable from it (127.0.0.1 included). The
  services take JSON only; browsers send JSON cross-site only after a CORS preflight, which
  no service answers, so refusing the three "simple" content types a form can send, and
  any request the browser itself marks ``Sec-Fetch-Site: cross-site``, closes that door.
"""
from __future__ import annotations

import json

MUTATING = ("POST", "PUT", "PATCH", "DELETE")
FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data", b"text/plain")


class BodyLimitMiddleware:
    """Pure ASGI: refuses a declared ``Content-Length`` above the limit before reading, and
    reads any other body up to the limit before the app sees it (a chunked body that grows
    past it is refused without the app ever starting on it)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.max_bytes:
                return await self._too_large(scope, send)
            return await self.app(scope, receive, send)  # the server stops at Content-Length
        messages, seen = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                return await self._too_large(scope, send)
            if not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope, send) -> None:
        await refuse(scope, send, 413, "PayloadTooLarge",
                     f"the request body is larger than {self.max_bytes} bytes (KRYPTOBOT_MAX_BODY_BYTES)", "body")


class CrossSiteGuard:
    """Pure ASGI: refuses mutating requests that a browser could send from another site."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        if headers.get(b"sec-fetch-site") == b"cross-site":
            return await refuse(scope, send, 403, "Forbidden", "cross-site requests may not change state", "Sec-Fetch-Site")
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type in FORM_TYPES:
            return await refuse(scope, send, 415, "UnsupportedMediaType",
                                f"send JSON (Content-Type: application/json), not {content_type.decode('latin-1')}", "Content-Type")
        return await self.app(scope, receive, send)


async def refuse(scope, send, status: int, error: str, detail: str, field: str) -> None:
    body = json.dumps({"error": error, "detail": detail, "field": field,
                       "request_id": (scope.get("state") or {}).get("request_id")}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
