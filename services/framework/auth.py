"""The API key of mutating endpoints (``X-API-Key`` when ``KRYPTOBOT_API_KEY`` is set)."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from kryptobot.errors import Unauthorized


def require_api_key(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> None:
    expected = request.app.state.settings.api_key
    if expected and x_api_key != expected:
        raise Unauthorized("missing or wrong API key", field="X-API-Key")


ApiKey = Depends(require_api_key)
