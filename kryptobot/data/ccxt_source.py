"""Crypto candles from any exchange ccxt supports, for the local store.

:class:`CCXTSource` pages through ``fetch_ohlcv`` with ``since`` and the exchange's page
limit, with ccxt's own rate limiter on (``enableRateLimit``). Transient faults (ccxt's
``OperationFailed`` family: RateLimitExceeded, DDoSProtection, NetworkError, RequestTimeout,
ExchangeNotAvailable, BadResponse) and malformed pages are retried with exponential backoff,
then raised as DataError. Unknown exchanges, symbols and timeframes are InvalidInput naming
the field and listing what is allowed, raised before any candle is fetched.

``config`` is merged into ccxt's exchange config (ccxt deep-merges it): API keys, options,
or ``{"urls": {"api": {"public": "http://127.0.0.1:8900/api/v3"}}}`` to reach a local server.
"""
from __future__ import annotations

import difflib
import math
import time
from typing import Callable

import pandas as pd

from kryptobot.data.base import BAR_COLUMNS, check_symbol, validate_bars
from kryptobot.data.download import MalformedPayload, last_complete_open, with_retries
from kryptobot.data.timeframes import TIMEFRAMES, check_timeframe, timeframe_delta
from kryptobot.errors import DataError, InvalidInput

DEFAULT_PAGE_LIMIT = 500  # when ccxt does not know the exchange's maximum


def _ms(ts: pd.Timestamp) -> int:
    return int(pd.Timestamp(ts).value // 1_000_000)


class CCXTSource:
    """One ccxt exchange's spot, swap and futures candles (``BTC/USDT``, ``BTC/USDT:USDT``)."""

    name = "ccxt"
    calendar = "24/7"
    overlap = 0  # an exchange never revises a closed candle

    def __init__(self, exchange: str, *, config: dict | None = None, attempts: int = 5, backoff: float = 1.0,
                 page_limit: int | None = None, sleep: Callable[[float], None] = time.sleep):
        import ccxt

        self._ccxt = ccxt
        exchange = (exchange or "").lower()
        if exchange not in ccxt.exchanges:
            raise InvalidInput(f"unknown exchange {exchange!r}; ccxt supports: {', '.join(ccxt.exchanges)}", field="exchange")
        self.venue = exchange
        # the last JSON response tells a non-JSON body (which ccxt parses into no candles) from an empty page
        self.exchange = getattr(ccxt, exchange)({**(config or {}), "enableRateLimit": True, "enableLastJsonResponse": True})
        self.attempts, self.backoff, self.sleep = attempts, backoff, sleep
        self.page_limit = page_limit or self._max_page()

    # ---- the RemoteSource interface -------------------------------------------------
    def check(self, symbols: list[str], timeframe: str) -> list[str]:
        timeframe = check_timeframe(timeframe)
        offered = [t for t in TIMEFRAMES if t in (self.exchange.timeframes or {})]
        if timeframe not in offered:
            raise InvalidInput(f"{self.venue} has no {timeframe!r} candles; it offers: {', '.join(offered)}", field="timeframe")
        markets = self._call(self.exchange.load_markets, "load_markets")
        checked = []
        for symbol in symbols:
            symbol = check_symbol(symbol, "symbols")
            if symbol not in markets:
                near = difflib.get_close_matches(symbol, list(markets), n=8, cutoff=0.5)
                hint = f"close matches: {', '.join(near)}" if near else f"e.g. {', '.join(sorted(markets)[:8])}"
                raise InvalidInput(f"{self.venue} has no market {symbol!r} ({len(markets)} markets; {hint})", field="symbols")
            checked.append(symbol)
        return checked

    def fetch(self, symbol: str, timeframe: str, since: pd.Timestamp, until: pd.Timestamp,
              on_candles: Callable[[int], None] = lambda n: None) -> pd.DataFrame:
        step = int(timeframe_delta(timeframe).total_seconds() * 1000)
        cursor, last = _ms(since), _ms(until)
        rows: list[list] = []
        while cursor <= last:
            page = self._call(lambda c=cursor: self._page(symbol, timeframe, c), f"fetch_ohlcv {symbol} {timeframe}")
            if not page:
                break
            kept = [row for row in page if cursor <= row[0] <= last]  # later candles are not ours (or still forming)
            rows.extend(kept)
            on_candles(len(kept))
            newest = max(row[0] for row in page)
            if newest >= last or newest < cursor:  # the range is done, or the exchange has nothing newer
                break
            cursor = newest + step
        return pd.DataFrame(
            {"timestamp": pd.to_datetime([r[0] for r in rows], unit="ms"),
             **{c: [float(r[i]) for r in rows] for i, c in enumerate(BAR_COLUMNS[1:], start=1)}})

    # ---- the MarketDataProvider interface (a direct, uncached read) ------------------
    def symbols(self) -> list[str]:
        return sorted(self._call(self.exchange.load_markets, "load_markets"))

    def get_bars(self, symbol: str, start=None, end=None, timeframe: str = "1d") -> pd.DataFrame:
        (symbol,) = self.check([symbol], timeframe)
        newest = last_complete_open(timeframe)
        until = newest if end is None else min(pd.Timestamp(end), newest)
        since = pd.Timestamp(start) if start is not None else until - 1000 * timeframe_delta(timeframe)
        raw = self.fetch(symbol, timeframe, since, until)
        return validate_bars(raw.drop_duplicates("timestamp").sort_values("timestamp"), field=f"{self.venue} {symbol}")

    # ---- internals ----------------------------------------------------------------------
    def _max_page(self) -> int:
        features = getattr(self.exchange, "features", None) or {}
        for kind in ("spot", "swap", "future"):
            entry = features.get(kind) or {}
            entry = entry.get("linear") or entry  # swap and future features are per linear/inverse
            limit = (entry.get("fetchOHLCV") or {}).get("limit")
            if limit:
                return int(limit)
        return DEFAULT_PAGE_LIMIT

    def _call(self, fn, what: str):
        """``fn()`` with retries; ccxt's non-transient errors as this project's errors."""
        ccxt = self._ccxt
        try:
            return with_retries(fn, retryable=(ccxt.OperationFailed,), attempts=self.attempts, backoff=self.backoff,
                                what=f"{self.venue} {what}", field="exchange", sleep=self.sleep)
        except ccxt.BadSymbol as exc:
            raise InvalidInput(f"{self.venue}: {exc}", field="symbols") from exc
        except ccxt.AuthenticationError as exc:
            raise InvalidInput(f"{self.venue} refused the credentials: {exc}", field="exchange") from exc
        except ccxt.BaseError as exc:  # ExchangeError and the rest: the exchange said no, retrying will not help
            raise DataError(f"{self.venue} {what}: {type(exc).__name__}: {exc}", field="exchange") from exc

    def _page(self, symbol: str, timeframe: str, since: int) -> list[list]:
        """One validated page: [open ms, open, high, low, close, volume] rows."""
        self.exchange.last_json_response = None
        try:
            page = self.exchange.fetch_ohlcv(symbol, timeframe, since=since, limit=self.page_limit)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:  # ccxt choked on the payload
            raise MalformedPayload(f"unparseable OHLCV response ({type(exc).__name__}: {exc})") from exc
        if self.exchange.last_json_response is None:
            raise MalformedPayload(f"the response is not JSON: {str(self.exchange.last_http_response)[:80]!r}")
        if not isinstance(page, list):
            raise MalformedPayload(f"expected a list of candles, got {type(page).__name__}")
        for row in page:
            if (not isinstance(row, (list, tuple)) or len(row) < 6 or not isinstance(row[0], int)
                    or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in row[1:6])):
                raise MalformedPayload(f"bad candle {str(row)[:120]}")
        return [list(row[:6]) for row in page]
