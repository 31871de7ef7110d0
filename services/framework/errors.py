"""One JSON error shape for every 4xx/5xx: ``{"error", "detail", "field"?, "errors"?, "request_id"}``."""
from __future__ import annotations

import errno
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from kryptobot.errors import KryptoError

log = logging.getLogger("kryptobot.http")


def _field(loc: tuple) -> str:
    """('body', 'instances', 0, 'features', 'rsi') -> 'instances[0].features.rsi'."""
    out = ""
    for part in loc:
        if part in ("body", "query", "path"):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _body(request: Request, status: int, payload: dict, headers: dict[str, str] | None = None) -> JSONResponse:
    payload["request_id"] = getattr(request.state, "request_id", None)
    return JSONResponse(payload, status_code=status, headers=headers)


#: a write refused for want of room (full disk, quota, file-size limit): the caller can retry later
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method the request's path answers. Starlette's 405 names those of one route
    only, and FastAPI makes a route per method (``GET`` and ``DELETE /train/{id}`` are two);
    asking the router, included routers too, whether each method would match finds all."""
    routes = request.app.router.routes
    allowed = [m for m in METHODS if any(r.matches({**request.scope, "method": m})[0] is Match.FULL for r in routes)]
    return ", ".join(allowed)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(KryptoError)
    async def krypto_error(request: Request, exc: KryptoError):
        return _body(request, exc.status_code, exc.to_dict())

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            # pydantic appends the validator's type tag for unions/model validators; drop it
            loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))
            errors.append({"field": _field(loc), "message": err.get("msg", "invalid")})
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        body = {"error": "ValidationError", "detail": detail, "errors": errors}
        if errors:
            body["field"] = errors[0]["field"]
        return _body(request, 422, body)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # RFC 9110: a 405 lists the methods the path has
            headers["Allow"] = _allowed_methods(request)
        return _body(request, exc.status_code, {"error": "HTTPError", "detail": str(exc.detail)}, headers)

    @app.exception_handler(OSError)
    async def os_error(request: Request, exc: OSError):
        if exc.errno not in NO_ROOM:
            return await unexpected(request, exc)
        log.error("no room to write on %s %s: %s", request.method, request.url.path, exc)
        return _body(request, 507, {"error": "InsufficientStorage",
                                    "detail": "the service's disk is full; nothing was changed, try again once there is room"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        # the log has the exception; the answer must not echo it (paths, data, internals)
        return _body(request, 500, {"error": "InternalError",
                                    "detail": "internal error: the service log has the details under this request id"})
