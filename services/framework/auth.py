"""The API key of mutating endpoints (``X-API-Key`` when ``KRYPTOBOT_API_KEY`` is set).

Declared as an OpenAPI API-key security scheme, so Swagger UI has an Authorize button and
generated clients know which routes need it. Compared in constant time: the answer's
timing must not tell an attacker how much of a guess was right.
"""
from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from kryptobot.errors import Unauthorized

API_KEY_HEADER = "X-API-Key"
_scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="the value of KRYPTOBOT_API_KEY")


def key_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


def require_api_key(request: Request, x_api_key: Annotated[str | None, Security(_scheme)] = None) -> None:
    expected = request.app.state.settings.api_key
    if expected and not key_matches(x_api_key, expected):
        raise Unauthorized("missing or wrong API key", field=API_KEY_HEADER)


ApiKey = Depends(require_api_key)
