"""A local Binance spot REST API for tests: ``/api/v3/ping``, ``time``, ``exchangeInfo``, ``klines``.

It speaks Binance's documented wire format (exchangeInfo from
``fixtures/binance_exchange_info.json``; klines as arrays of 12 fields, prices as strings;
errors as ``{"code": -1121, "msg": "Invalid symbol."}`` with HTTP 400, rate limits as 429
with code -1003 and ``Retry-After``), so ccxt reaches it through its own ``urls['api']``
override (:meth:`FakeBinance.ccxt_config`) and parses it as it parses Binance.

Candles: BTCUSDT and ETHUSDT 1h, deterministic (BTCUSDT opens with the hand-written rows of
``fixtures/binance_klines_btcusdt_1h.json``, then a seeded random walk), kept in
``fake.klines[(symbol, interval)]`` as the rows the API returns, in the order it returns
them: a test may delete (a gap), swap (out of order) or repeat rows, or :meth:`extend` them.

For order endpoints (``/api/v3/order``, ``openOrders``, ``account``, ``myTrades``), extend
the class: override :meth:`add_routes` (call ``super().add_routes()``) and keep the order
book on the instance next to ``klines``, under ``self.lock``.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tests.fakes.server import FakeServer

FIXTURES = Path(__file__).parent / "fixtures"
START_MS = 1704067200000  # 2024-01-01T00:00:00Z
INTERVAL_MS = {"1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
               "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
               "12h": 43_200_000, "1d": 86_400_000, "3d": 259_200_000, "1w": 604_800_000, "1M": 2_592_000_000}
FIRST_PRICE = {"BTCUSDT": 42000.0, "ETHUSDT": 2300.0, "ETHBTC": 0.055}
RATE_LIMIT_BODY = {"code": -1003, "msg": "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
                   "Please use WebSocket Streams for live updates to avoid polling the API."}
SERVER_ERROR_BODY = {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}


def binance_error(status: int, code: int, msg: str) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg}, status_code=status)


def _fmt(x: float) -> str:
    return f"{x:.8f}"


def make_klines(symbol: str, interval: str, count: int, *, after: list | None = None) -> list[list]:
    """``count`` deterministic klines in Binance's format, continuing ``after`` (the last row) if given."""
    step = INTERVAL_MS[interval]
    open_ms = START_MS if after is None else after[0] + step
    price = FIRST_PRICE.get(symbol, 100.0) if after is None else float(after[4])
    rng = np.random.default_rng(zlib.crc32(f"{symbol}:{interval}:{open_ms}".encode()))
    rows = []
    for _ in range(count):
        close = price * float(np.exp(rng.normal(0.0, 0.006)))
        high = max(price, close) * (1 + abs(float(rng.normal(0.0, 0.002))))
        low = min(price, close) * (1 - abs(float(rng.normal(0.0, 0.002))))
        volume = float(rng.uniform(300, 1500)) * (FIRST_PRICE["BTCUSDT"] / FIRST_PRICE.get(symbol, 100.0)) ** 0.5
        taker = volume * float(rng.uniform(0.3, 0.7))
        rows.append([open_ms, _fmt(price), _fmt(high), _fmt(low), _fmt(close), _fmt(volume), open_ms + step - 1,
                     _fmt(volume * close), int(rng.integers(1_000, 60_000)), _fmt(taker), _fmt(taker * close), "0"])
        price, open_ms = close, open_ms + step
    return rows


class FakeBinance(FakeServer):
    """Binance spot's public market-data API on ``url`` (see the module docstring)."""

    def __init__(self, candles: int = 1200, symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")):
        self.exchange_info = json.loads((FIXTURES / "binance_exchange_info.json").read_text())
        self.klines: dict[tuple[str, str], list[list]] = {}
        for symbol in symbols:
            rows = json.loads((FIXTURES / "binance_klines_btcusdt_1h.json").read_text()) if symbol == "BTCUSDT" else []
            rows += make_klines(symbol, "1h", candles - len(rows), after=rows[-1] if rows else None)
            self.klines[(symbol, "1h")] = rows
        super().__init__()

    def extend(self, symbol: str, interval: str, count: int) -> None:
        """``count`` newer candles (time passes on the exchange)."""
        with self.lock:
            rows = self.klines[(symbol, interval)]
            rows += make_klines(symbol, interval, count, after=max(rows, key=lambda r: r[0]))

    def server_time(self) -> int:
        """The exchange clock: the close of its newest candle."""
        with self.lock:
            return max((rows[-1][6] + 1 for rows in self.klines.values() if rows), default=START_MS)

    def ccxt_config(self) -> dict:
        """The ccxt config that points ``ccxt.binance`` here: every API of its ``urls['api']`` is
        redirected (the ones not served answer 404), so nothing leaves the machine; markets are
        loaded from spot's exchangeInfo only. A trading fake adds ``apiKey``/``secret``."""
        import ccxt

        api = {name: f"{self.url}/not-served/{name}" for name in ccxt.binance().urls["api"]}
        api["public"] = api["private"] = f"{self.url}/api/v3"  # spot's signed endpoints share /api/v3
        return {"urls": {"api": api}, "options": {"fetchMarkets": {"types": ["spot"]}}}

    def fault_response(self, kind: str) -> tuple[int, dict[str, str], bytes]:
        if kind == "rate_limit":
            return 429, {"Retry-After": "1"}, json.dumps(RATE_LIMIT_BODY).encode()
        return 503, {}, json.dumps(SERVER_ERROR_BODY).encode()

    def add_routes(self) -> None:
        router = APIRouter()

        @router.get("/ping")
        async def ping():
            return {}

        @router.get("/time")
        async def time():
            return {"serverTime": self.server_time()}

        @router.get("/exchangeInfo")
        async def exchange_info(symbol: str | None = None):
            info = {**self.exchange_info, "serverTime": self.server_time()}
            if symbol is not None:
                info["symbols"] = [s for s in info["symbols"] if s["symbol"] == symbol]
                if not info["symbols"]:
                    return binance_error(400, -1121, "Invalid symbol.")
            return info

        @router.get("/klines")
        async def klines(request: Request):
            q = request.query_params
            for name in ("symbol", "interval"):
                if not q.get(name):
                    return binance_error(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
            if q["interval"] not in INTERVAL_MS:
                return binance_error(400, -1120, "Invalid interval.")
            if q["symbol"] not in {s["symbol"] for s in self.exchange_info["symbols"]}:
                return binance_error(400, -1121, "Invalid symbol.")
            try:
                limit = int(q.get("limit", 500))
                start = int(q["startTime"]) if "startTime" in q else None
                end = int(q["endTime"]) if "endTime" in q else None
            except ValueError:
                return binance_error(400, -1100, "Illegal characters found in a parameter.")
            if not 1 <= limit <= 1000:
                return binance_error(400, -1130, "Data sent for parameter 'limit' is not valid.")
            with self.lock:
                rows = list(self.klines.get((q["symbol"], q["interval"]), []))
            rows = [r for r in rows if (start is None or r[0] >= start) and (end is None or r[0] <= end)]
            # from startTime: the oldest `limit`; without it: the most recent `limit`
            return rows[:limit] if start is not None else rows[-limit:]

        self.app.include_router(router, prefix="/api/v3")
