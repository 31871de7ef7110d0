"""US stock and ETF bars from Alpaca's market-data API (alpaca-py), for the local store.

:class:`AlpacaSource` asks ``StockHistoricalDataClient.get_stock_bars`` for one window of
bars at a time (alpaca-py follows ``next_page_token`` inside a window), so a fault costs one
window and the progress bar moves. Keys: ``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY``
(:class:`~kryptobot.settings.Settings`); ``url`` replaces ``https://data.alpaca.markets``.

Prices are split- and dividend-adjusted by default (``adjustment="all"``), like the sample
source, so a split is not a crash; as a later split changes earlier adjusted prices, each
download re-fetches the last stored bar and refuses to append when it moved
(:meth:`~kryptobot.data.local_store.MarketDataStore.merge`). Daily and weekly bars are
keyed by their New York session date, intraday bars by their UTC open time.
"""
from __future__ import annotations

import time
from typing import Callable

import pandas as pd

from kryptobot.data.base import BAR_COLUMNS, check_symbol, validate_bars
from kryptobot.data.download import MalformedPayload, last_complete_open, with_retries
from kryptobot.data.timeframes import TIMEFRAMES, check_timeframe, timeframe_delta
from kryptobot.errors import DataError, InvalidInput

ADJUSTMENTS = ("raw", "split", "dividend", "all")
WINDOW_BARS = 10_000  # bars per request window (Alpaca's page size)
EXCHANGE_TZ = "America/New_York"
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


class _Transient(Exception):
    """A fault worth retrying: an HTTP status in TRANSIENT_STATUS, or the connection failed."""


class AlpacaSource:
    name = "alpaca"
    venue = "alpaca"
    calendar = "exchange"

    def __init__(self, api_key: str | None, secret_key: str | None, *, url: str | None = None, feed: str | None = None,
                 adjustment: str = "all", attempts: int = 5, backoff: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep):
        from alpaca.data.historical import StockHistoricalDataClient

        if not api_key or not secret_key:
            raise InvalidInput("Alpaca needs ALPACA_API_KEY and ALPACA_SECRET_KEY (a free paper account has them)",
                               field="ALPACA_API_KEY")
        if adjustment not in ADJUSTMENTS:
            raise InvalidInput(f"unknown adjustment {adjustment!r}; allowed: {', '.join(ADJUSTMENTS)}", field="adjustment")
        self.client = StockHistoricalDataClient(api_key, secret_key, raw_data=True, url_override=url)
        self.feed, self.adjustment = feed, adjustment
        self.overlap = 0 if adjustment == "raw" else 1
        self.attempts, self.backoff, self.sleep = attempts, backoff, sleep

    # ---- the RemoteSource interface -------------------------------------------------
    def check(self, symbols: list[str], timeframe: str) -> list[str]:
        _alpaca_timeframe(check_timeframe(timeframe))
        checked = []
        for symbol in symbols:
            symbol = check_symbol(symbol, "symbols")
            if "/" in symbol:
                raise InvalidInput(f"{symbol!r} is a crypto pair: Alpaca's stock data takes tickers (SPY, AAPL); "
                                   "use --source ccxt for pairs", field="symbols")
            checked.append(symbol)
        return checked

    def fetch(self, symbol: str, timeframe: str, since: pd.Timestamp, until: pd.Timestamp,
              on_candles: Callable[[int], None] = lambda n: None) -> pd.DataFrame:
        window = WINDOW_BARS * timeframe_delta(timeframe)
        frames, cursor = [], pd.Timestamp(since)
        while cursor <= until:
            stop = min(cursor + window, pd.Timestamp(until))
            frame = self._call(lambda a=cursor, b=stop: self._window(symbol, timeframe, a, b), f"bars {symbol} {timeframe}")
            frames.append(frame)
            on_candles(len(frame))
            cursor = stop + pd.Timedelta(1, "us")  # Alpaca's times have microseconds at most
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: [] for c in BAR_COLUMNS})

    # ---- the MarketDataProvider interface (a direct, uncached read) ------------------
    def symbols(self) -> list[str]:
        return []  # Alpaca has thousands; any ticker may be asked for

    def get_bars(self, symbol: str, start=None, end=None, timeframe: str = "1d") -> pd.DataFrame:
        (symbol,) = self.check([symbol], timeframe)
        until = last_complete_open(timeframe) if end is None else pd.Timestamp(end)
        since = pd.Timestamp(start) if start is not None else until - 1000 * timeframe_delta(timeframe)
        raw = self.fetch(symbol, timeframe, since, until)
        return validate_bars(raw.drop_duplicates("timestamp").sort_values("timestamp"), field=f"alpaca {symbol}")

    # ---- internals ----------------------------------------------------------------------
    def _window(self, symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        from alpaca.data.requests import StockBarsRequest

        daily = timeframe_delta(timeframe) >= pd.Timedelta(days=1)
        # a daily bar's t is midnight New York (04:00 or 05:00 UTC): ask to the end of the last day
        last = end + pd.Timedelta(days=1) - pd.Timedelta(1, "us") if daily else end
        request = StockBarsRequest(symbol_or_symbols=[symbol], timeframe=_alpaca_timeframe(timeframe),
                                   start=_utc(start), end=_utc(last),
                                   adjustment=self.adjustment, feed=self.feed)
        try:
            raw = self.client.get_stock_bars(request)
        except ValueError as exc:  # alpaca-py's own complaint about an unexpected response shape
            raise MalformedPayload(str(exc)) from exc
        if not isinstance(raw, dict) or not isinstance(raw.get(symbol, []), list):
            raise MalformedPayload(f"expected bars keyed by symbol, got {str(raw)[:120]}")
        bars = raw.get(symbol, [])
        try:
            frame = pd.DataFrame({
                "timestamp": pd.to_datetime([b["t"] for b in bars], utc=True, format="ISO8601"),
                **{col: [float(b[key]) for b in bars] for col, key in zip(BAR_COLUMNS[1:], "ohlcv")},
            })
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedPayload(f"bad bar in {str(bars)[:120]} ({type(exc).__name__}: {exc})") from exc
        if daily:  # keyed by the session date
            frame["timestamp"] = frame["timestamp"].dt.tz_convert(EXCHANGE_TZ).dt.tz_localize(None).dt.normalize()
        else:
            frame["timestamp"] = frame["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None)
        return frame[(frame["timestamp"] >= start) & (frame["timestamp"] <= end)].reset_index(drop=True)

    def _call(self, fn, what: str):
        import requests
        from alpaca.common.exceptions import APIError

        def attempt():
            try:
                return fn()
            except APIError as exc:
                if exc.status_code in TRANSIENT_STATUS:
                    raise _Transient(f"HTTP {exc.status_code}: {exc}") from exc
                raise
            except requests.RequestException as exc:  # refused, reset, cut mid-body, timed out
                raise _Transient(f"{type(exc).__name__}: {exc}") from exc

        try:
            return with_retries(attempt, retryable=(_Transient,), attempts=self.attempts, backoff=self.backoff,
                                what=f"alpaca {what}", field="exchange", sleep=self.sleep)
        except APIError as exc:
            if exc.status_code in (401, 403):
                raise InvalidInput(f"Alpaca refused the keys (HTTP {exc.status_code}): {exc}", field="ALPACA_API_KEY") from exc
            field = "symbols" if "symbol" in str(exc).lower() else "timeframe" if "timeframe" in str(exc).lower() else "exchange"
            raise (InvalidInput if exc.status_code in (400, 404, 422) else DataError)(
                f"alpaca {what}: HTTP {exc.status_code}: {exc}", field=field) from exc


def _utc(ts: pd.Timestamp):
    return ts.floor("us").tz_localize("UTC").to_pydatetime()


def _alpaca_timeframe(timeframe: str):
    from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

    minutes = int(timeframe_delta(timeframe).total_seconds() // 60)
    if minutes < 60:
        return TimeFrame(minutes, TimeFrameUnit.Minute)
    if minutes < 24 * 60:
        return TimeFrame(minutes // 60, TimeFrameUnit.Hour)
    if timeframe == "1d":
        return TimeFrame(1, TimeFrameUnit.Day)
    if timeframe == "1w":
        return TimeFrame(1, TimeFrameUnit.Week)
    raise InvalidInput(f"Alpaca has no {timeframe!r} bars; allowed: {', '.join(TIMEFRAMES)}", field="timeframe")
