"""The services' JSON encoding."""
from __future__ import annotations

import json
from datetime import date, datetime

import numpy as np
from fastapi.responses import JSONResponse


def _json_default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class ServiceJSONResponse(JSONResponse):
    """JSON with datetimes and numpy scalars, without FastAPI's slower generic encoder."""

    def render(self, content) -> bytes:
        return json.dumps(content, default=_json_default, allow_nan=False, separators=(",", ":")).encode()
