"""A local Alpaca market-data API for tests: ``GET /v2/stocks/bars`` and ``/v2/stocks/{symbol}/bars``.

Alpaca's documented wire format: bars as ``{"t": RFC-3339, "o", "h", "l", "c", "v", "n", "vw"}``,
keyed by symbol (``{"bars": {"AAPL": [...]}, "next_page_token": ...}``) on the multi-symbol
endpoint, sorted by symbol then time, paged by ``limit`` (default 1000, at most 10000) with
a base64 ``next_page_token``; keys in ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY``; errors
as ``{"code": 40010001, "message": "..."}``. alpaca-py reaches it through ``url_override``.

Bars: AAPL and MSFT, ``1Day`` (business days; AAPL opens with the hand-written rows of
``fixtures/alpaca_bars_aapl_1day.json``, daily ``t`` at midnight New York as Alpaca sends
it) and ``1Hour`` (14:00-20:00 UTC on business days), kept in ``fake.bars[(symbol, timeframe)]``.
"""
from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tests.fakes.server import FakeServer

FIXTURES = Path(__file__).parent / "fixtures"
KEY_ID, SECRET = "test-key-id", "test-secret-key"
FIRST_PRICE = {"AAPL": 187.0, "MSFT": 370.0}
TIMEFRAMES = {"1Hour": pd.Timedelta(hours=1), "1Day": pd.Timedelta(days=1)}


def alpaca_error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _times(timeframe: str, days: int) -> list[pd.Timestamp]:
    sessions = pd.bdate_range("2024-01-02", periods=days)
    if timeframe == "1Day":  # midnight in New York, in UTC
        return [d.tz_localize("America/New_York").tz_convert("UTC") for d in sessions]
    return [(d + pd.Timedelta(hours=h)).tz_localize("UTC") for d in sessions for h in range(14, 21)]


def make_bars(symbol: str, timeframe: str, days: int, *, first: list[dict] | None = None) -> list[dict]:
    """Deterministic bars of ``days`` sessions; ``first`` (hand-written) replaces the first ones."""
    times = _times(timeframe, days)
    first = first or []
    rng = np.random.default_rng(zlib.crc32(f"{symbol}:{timeframe}".encode()))
    price = first[-1]["c"] if first else FIRST_PRICE.get(symbol, 100.0)
    bars = list(first)
    for t in times[len(first):]:
        close = price * float(np.exp(rng.normal(0.0, 0.01)))
        high = max(price, close) * (1 + abs(float(rng.normal(0.0, 0.003))))
        low = min(price, close) * (1 - abs(float(rng.normal(0.0, 0.003))))
        volume = int(rng.integers(1_000_000, 9_000_000))
        bars.append({"t": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "o": round(price, 4), "h": round(high, 4), "l": round(low, 4),
                     "c": round(close, 4), "v": volume, "n": volume // 90, "vw": round((high + low + close) / 3, 6)})
        price = close
    return bars


class FakeAlpaca(FakeServer):
    """Alpaca's historical stock bars on ``url`` (see the module docstring)."""

    def __init__(self, days: int = 60):
        fixture = json.loads((FIXTURES / "alpaca_bars_aapl_1day.json").read_text())["bars"]["AAPL"]
        self.bars = {(s, tf): make_bars(s, tf, days, first=fixture if (s, tf) == ("AAPL", "1Day") else None)
                     for s in FIRST_PRICE for tf in TIMEFRAMES}
        super().__init__()

    def fault_response(self, kind: str) -> tuple[int, dict[str, str], bytes]:
        if kind == "rate_limit":
            return 429, {}, json.dumps({"code": 42910000, "message": "rate limit exceeded"}).encode()
        return 500, {}, json.dumps({"code": 50010000, "message": "internal server error occurred"}).encode()

    def add_routes(self) -> None:
        router = APIRouter()

        @router.get("/stocks/bars")
        async def bars(request: Request):
            return self._bars(request, request.query_params.get("symbols", ""), keyed=True)

        @router.get("/stocks/{symbol}/bars")
        async def symbol_bars(symbol: str, request: Request):
            return self._bars(request, symbol, keyed=False)

        self.app.include_router(router, prefix="/v2")

    def _bars(self, request: Request, symbols: str, keyed: bool):
        h, q = request.headers, request.query_params
        if (h.get("apca-api-key-id"), h.get("apca-api-secret-key")) != (KEY_ID, SECRET):
            return alpaca_error(401, 40110000, "request is not authorized")
        wanted = [s for s in symbols.split(",") if s]
        if not wanted:
            return alpaca_error(400, 40010001, "symbols is required")
        bad = [s for s in wanted if not s.replace(".", "").isalnum() or not s.isupper()]
        if bad:
            return alpaca_error(400, 40010001, f"invalid symbol: {bad[0]}")
        timeframe = q.get("timeframe", "")
        if timeframe not in TIMEFRAMES:
            return alpaca_error(400, 42210000, f"invalid timeframe: {timeframe}")
        try:
            start = pd.Timestamp(q["start"]) if "start" in q else None
            end = pd.Timestamp(q["end"]) if "end" in q else None
            limit = int(q.get("limit", 1000))
        except ValueError:
            return alpaca_error(400, 42210000, "invalid start, end or limit")
        if not 1 <= limit <= 10_000:
            return alpaca_error(400, 42210000, "invalid limit: must be between 1 and 10000")
        rows = [(s, b) for s in sorted(wanted) for b in self.bars.get((s, timeframe), [])
                if (start is None or pd.Timestamp(b["t"]) >= start) and (end is None or pd.Timestamp(b["t"]) <= end)]
        if "page_token" in q and q["page_token"]:
            symbol, t = base64.b64decode(q["page_token"]).decode().split("|")
            rows = rows[next(i for i, (s, b) in enumerate(rows) if (s, b["t"]) == (symbol, t)):]
        page, rest = rows[:limit], rows[limit:]
        token = base64.b64encode(f"{rest[0][0]}|{rest[0][1]['t']}".encode()).decode() if rest else None
        if not keyed:
            return {"bars": [b for _, b in page], "symbol": wanted[0], "next_page_token": token}
        grouped: dict[str, list] = {}
        for s, b in page:
            grouped.setdefault(s, []).append(b)
        return {"bars": grouped, "next_page_token": token, "currency": "USD"}
