"""One JSON error shape for every 4xx/5xx: ``{"error", "detail", "field"?, "errors"?, "request_id"}``."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def _body(request: Request, status: int, payload: dict) -> JSONResponse:
    payload["request_id"] = getattr(request.state, "request_id", None)
    return JSONResponse(payload, status_code=status)


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
        return _body(request, exc.status_code, {"error": "HTTPError", "detail": str(exc.detail)})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _body(request, 500, {"error": "InternalError", "detail": f"{type(exc).__name__}: {exc}"})
