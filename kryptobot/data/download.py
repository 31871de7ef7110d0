"""Filling the local market-data store from a remote source (an exchange or a broker).

:func:`download` asks a :class:`RemoteSource` only for the candles the store does not have
(before its first or after its last candle), merges them into the symbol's file
(:meth:`~kryptobot.data.local_store.MarketDataStore.merge`) and returns what it found:
candles added, duplicates, out-of-order candles, gaps. A symbol whose download fails keeps
its previous file; the others go on.

The remote clients retry transient faults (rate limits, timeouts, dropped connections, 5xx,
malformed payloads) with :func:`with_retries` and then raise DataError naming the field.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, TypeVar

import pandas as pd

from kryptobot.data.local_store import MarketDataStore, MergeReport
from kryptobot.data.timeframes import timeframe_delta
from kryptobot.errors import DataError, KryptoError

T = TypeVar("T")


class MalformedPayload(Exception):
    """A response that parsed but is not what the API documents (retried like a network fault)."""


class RemoteSource(Protocol):
    """An exchange or broker client that fills the store.

    ``venue`` names where the candles come from (``binance``, ``alpaca``); ``overlap`` is how
    many stored candles a download fetches again to check the source has not revised them
    (a broker's split- and dividend-adjusted prices change when a split happens).
    """

    name: str
    venue: str
    calendar: str
    overlap: int

    def check(self, symbols: list[str], timeframe: str) -> list[str]:
        """The symbols as the source writes them; InvalidInput naming ``symbols``/``timeframe`` otherwise."""

    def fetch(self, symbol: str, timeframe: str, since: pd.Timestamp, until: pd.Timestamp,
              on_candles: Callable[[int], None]) -> pd.DataFrame:
        """Candles opening in [since, until], as received (possibly unsorted, repeated), ``BAR_COLUMNS``."""


def with_retries(call: Callable[[], T], *, retryable: tuple[type[BaseException], ...], attempts: int,
                 backoff: float, what: str, field: str, sleep: Callable[[float], None] = time.sleep) -> T:
    """``call()``, retried on ``retryable`` (and MalformedPayload) with exponential backoff
    (``backoff``, 2x, 4x... seconds, at most 30 s apart); after ``attempts`` failures a
    DataError naming ``field`` says what failed and why."""
    for attempt in range(attempts):
        try:
            return call()
        except (*retryable, MalformedPayload) as exc:
            if attempt == attempts - 1:
                kind = "malformed payload" if isinstance(exc, MalformedPayload) else type(exc).__name__
                raise DataError(f"{what} failed {attempts} times; last: {kind}: {exc}", field=field) from exc
            sleep(min(backoff * 2**attempt, 30.0))
    raise AssertionError("unreachable")  # attempts >= 1


class DownloadProgress:
    """What :func:`download` reports while it runs (the CLI draws a progress bar); no-ops here.
    ``symbol_done`` comes for every symbol, without ``symbol_started`` if its file is unreadable."""

    def symbol_started(self, symbol: str, expected: int) -> None: ...

    def candles(self, symbol: str, count: int) -> None: ...

    def symbol_done(self, symbol: str, report: MergeReport | None, error: str | None) -> None: ...


@dataclass
class DownloadResult:
    source: str
    venue: str
    timeframe: str
    reports: list[MergeReport] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


def last_complete_open(timeframe: str, now: pd.Timestamp | None = None) -> pd.Timestamp:
    """The open time of the newest candle that has closed by ``now`` (UTC): a forming candle
    is never stored, or the store would keep its half-bar values for good."""
    now = pd.Timestamp.now("UTC").tz_localize(None) if now is None else pd.Timestamp(now)
    return now - timeframe_delta(timeframe)


def missing_ranges(span: tuple[pd.Timestamp, pd.Timestamp] | None, start: pd.Timestamp, end: pd.Timestamp,
                   timeframe: str, overlap: int = 0) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The ranges of open times to fetch for [start, end], given the stored (first, last)."""
    if span is None:
        return [(start, end)] if start <= end else []
    delta = timeframe_delta(timeframe)
    first, last = span
    ranges = []
    if start < first:
        ranges.append((start, first - delta + overlap * delta))
    if last + delta <= end:
        ranges.append((last + delta - overlap * delta, end))
    return ranges


def download(source: RemoteSource, store: MarketDataStore, symbols: list[str], timeframe: str,
             start: pd.Timestamp, end: pd.Timestamp | None = None,
             progress: DownloadProgress | None = None) -> DownloadResult:
    """Bring every symbol's file up to date for [start, end] (``end``: the last closed candle).

    Bad input (unknown symbol or timeframe) raises before anything is fetched; a symbol
    whose fetch or merge fails is listed in ``failures`` and its file is left as it was.
    """
    progress = progress or DownloadProgress()
    symbols = source.check(symbols, timeframe)
    newest = last_complete_open(timeframe)
    end = newest if end is None else min(pd.Timestamp(end), newest)
    start = pd.Timestamp(start)
    result = DownloadResult(source.name, source.venue, timeframe)
    for symbol in symbols:
        report, error = None, None
        try:
            report = _update(source, store, symbol, timeframe, start, end, progress)
        except KryptoError as exc:
            error = exc.message
        if report is not None and report.stored == 0:
            report, error = None, f"no {timeframe} candles for {symbol} from {source.venue} between {start} and {end}"
        if error is None:
            result.reports.append(report)
        else:
            result.failures[symbol] = error
        progress.symbol_done(symbol, report, error)
    return result


def _update(source: RemoteSource, store: MarketDataStore, symbol: str, timeframe: str, start: pd.Timestamp,
            end: pd.Timestamp, progress: DownloadProgress) -> MergeReport:
    delta = timeframe_delta(timeframe)
    ranges = missing_ranges(store.span(symbol, timeframe), start, end, timeframe, source.overlap)
    progress.symbol_started(symbol, sum(int((b - a) / delta) + 1 for a, b in ranges))
    parts = [source.fetch(symbol, timeframe, a, b, lambda n: progress.candles(symbol, n)) for a, b in ranges]
    candles = pd.concat(parts, ignore_index=True) if parts else None
    return store.merge(symbol, timeframe, candles, source=source.name, venue=source.venue, calendar=source.calendar)
