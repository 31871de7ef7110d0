"""The local market-data store, and the ``local`` source that reads it.

One Parquet file per symbol and timeframe: ``<directory>/<symbol>-<timeframe>.parquet``
with the symbol as :func:`~kryptobot.data.base.symbol_filename` writes it
(``BTC_USDT-1h.parquet``, ``BTC_USDT_USDT-4h.parquet``, ``SPY-1d.parquet``). A file holds
``BAR_COLUMNS``, sorted and unique, and in its Parquet metadata the symbol, timeframe,
calendar and where the candles came from (source and venue): one file never mixes two
exchanges. Files are replaced atomically (temp file, fsync, rename), so a failed or killed
download leaves the previous file, and a reader never sees half of one.

:meth:`MarketDataStore.merge` is the one way candles get in: it sorts what arrived out of
order, drops repeats, and reports both, with the gaps it finds; it fills nothing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kryptobot.data.base import BAR_COLUMNS, check_symbol, slice_range, symbol_filename, symbol_from_filename, validate_bars
from kryptobot.data.timeframes import SESSION_HOURS, TIMEFRAMES, check_calendar, check_timeframe, timeframe_delta
from kryptobot.errors import DataError, DataNotFound, InvalidInput
from kryptobot.files import atomic_write_bytes, utc_now

SUFFIX = ".parquet"
META_KEY = b"kryptobot"
#: a stored close that differs more than this from the source's means the source revised its history
REVISION_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Gap:
    """Missing candles between two stored ones (not filled: the report says where)."""

    after: pd.Timestamp  # the last candle before the gap
    before: pd.Timestamp  # the first candle after it
    missing: int  # candles (an exchange calendar's missing sessions count as their candles)


@dataclass
class MergeReport:
    """What one merge found and did to one file."""

    symbol: str
    timeframe: str
    path: Path
    fetched: int  # candles received
    added: int  # new candles written
    duplicates: int  # received twice, or already stored (the first copy is kept)
    out_of_order: int  # received after a later one (sorted before writing)
    gaps: list[Gap]  # gaps next to the new candles
    stored: int  # candles in the file now
    first: pd.Timestamp | None
    last: pd.Timestamp | None

    @property
    def missing(self) -> int:
        return sum(g.missing for g in self.gaps)


@dataclass(frozen=True)
class StoredSeries:
    bars: pd.DataFrame
    meta: dict


def find_gaps(timestamps, timeframe: str, calendar: str) -> list[Gap]:
    """Gaps in sorted bar open times.

    ``24/7``: any step longer than the timeframe. ``exchange``: a business day without bars
    (holidays count: the calendar knows weekends only), and for intraday bars a step longer
    than the timeframe within one day (nights are not gaps).
    """
    ts = pd.DatetimeIndex(timestamps)
    if len(ts) < 2:
        return []
    delta = timeframe_delta(timeframe)
    steps = ts[1:] - ts[:-1]
    if check_calendar(calendar) == "24/7" or delta >= pd.Timedelta(days=7):
        where = np.flatnonzero(steps > delta)
        missing = np.rint(steps[where] / delta).astype(int) - 1
    else:
        days = ts.normalize().to_numpy().astype("datetime64[D]")
        sessions = np.busday_count(days[:-1] + 1, days[1:])
        per_session = max(1, int(np.ceil(pd.Timedelta(hours=SESSION_HOURS["exchange"]) / delta)))
        within_day = (days[1:] == days[:-1]) & (steps > delta)
        where = np.flatnonzero((sessions > 0) | within_day)
        missing = np.where(within_day[where], np.rint(steps[where] / delta).astype(int) - 1, sessions[where] * per_session)
    return [Gap(ts[i], ts[i + 1], int(m)) for i, m in zip(where, missing) if m > 0]


class MarketDataStore:
    """The files of one market-data directory."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)

    def path(self, symbol: str, timeframe: str) -> Path:
        return self.directory / f"{symbol_filename(symbol, 'symbols')}-{check_timeframe(timeframe)}{SUFFIX}"

    def entries(self) -> list[tuple[str, str]]:
        """(symbol, timeframe) of every stored file, sorted; other files are ignored."""
        found = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            stem, _, timeframe = path.name[: -len(SUFFIX)].rpartition("-")  # a timeframe has no '-'
            if timeframe not in TIMEFRAMES:
                continue
            try:
                found.append((symbol_from_filename(stem), timeframe))
            except InvalidInput:
                continue
        return sorted(found)

    def read(self, symbol: str, timeframe: str) -> StoredSeries | None:
        """The stored series, validated; None when there is no file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.path(symbol, timeframe)
        if not path.exists():
            return None
        try:
            table = pq.read_table(path)
            meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataError(f"{path}: unreadable ({exc}); delete it to download it again", field="symbols") from exc
        try:
            bars = validate_bars(table.to_pandas(), field=path.name)
        except DataError as exc:
            raise DataError(f"{path}: {exc.message}", field="symbols") from exc
        return StoredSeries(bars, meta)

    def span(self, symbol: str, timeframe: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """(first, last) stored open time, or None."""
        series = self.read(symbol, timeframe)
        if series is None or series.bars.empty:
            return None
        return series.bars["timestamp"].iat[0], series.bars["timestamp"].iat[-1]

    def merge(self, symbol: str, timeframe: str, candles: pd.DataFrame | None, *, source: str, venue: str,
              calendar: str) -> MergeReport:
        """Add ``candles`` (in arrival order) to the symbol's file and report what was found.

        Raises before writing anything: InvalidInput (field ``exchange``) if the file holds
        another venue's candles, DataError if a candle is malformed or a stored candle's close
        differs from the source's (a split or dividend re-adjusted the history: the file must
        be downloaded anew, not patched).
        """
        path = self.path(symbol, timeframe)
        existing = self.read(symbol, timeframe)
        if existing is not None and (existing.meta.get("source"), existing.meta.get("venue")) != (source, venue):
            raise InvalidInput(
                f"{path} holds {existing.meta.get('source')}/{existing.meta.get('venue')} candles, not {source}/{venue}: "
                "download into another directory (--datadir)", field="exchange")
        new = _received(candles, venue)
        old = existing.bars if existing is not None else new.iloc[:0]
        received = new["timestamp"].to_numpy()
        out_of_order = int((received[1:] < received[:-1]).sum())
        combined = pd.concat([old, new], ignore_index=True)
        repeated = combined.duplicated("timestamp", keep="first").to_numpy()
        _check_revisions(old, new, path)
        try:
            bars = validate_bars(combined.loc[~repeated].sort_values("timestamp", kind="stable"), field="candles")
        except DataError as exc:
            raise DataError(f"{venue} sent bad {timeframe} candles for {symbol}: {exc.message}", field="exchange") from exc
        added = int((~repeated[len(old):]).sum())
        fresh = set(new["timestamp"].iloc[np.flatnonzero(~repeated[len(old):])])
        gaps = [g for g in find_gaps(bars["timestamp"], timeframe, calendar) if g.after in fresh or g.before in fresh]
        if added:
            self._write(path, bars, {"symbol": symbol, "timeframe": timeframe, "calendar": calendar,
                                     "source": source, "venue": venue, "updated_at": utc_now()})
        return MergeReport(symbol, timeframe, path, len(new), added, int(repeated[len(old):].sum()), out_of_order, gaps,
                           len(bars), bars["timestamp"].iat[0] if len(bars) else None,
                           bars["timestamp"].iat[-1] if len(bars) else None)

    @staticmethod
    def _write(path: Path, bars: pd.DataFrame, meta: dict) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(bars, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        atomic_write_bytes(path, sink.getvalue().to_pybytes())


def _received(candles: pd.DataFrame | None, venue: str) -> pd.DataFrame:
    """The received candles as ``BAR_COLUMNS`` with UTC-naive timestamps, in arrival order."""
    if candles is None or candles.empty:
        return pd.DataFrame({"timestamp": pd.Series([], dtype="datetime64[ns]"),
                             **{c: pd.Series([], dtype="float64") for c in BAR_COLUMNS[1:]}})
    missing = [c for c in BAR_COLUMNS if c not in candles.columns]
    if missing:
        raise DataError(f"{venue} candles lack {missing}", field="exchange")
    out = candles[BAR_COLUMNS].reset_index(drop=True)
    out["timestamp"] = pd.to_datetime(out["timestamp"]).astype("datetime64[ns]")
    return out


def _check_revisions(old: pd.DataFrame, new: pd.DataFrame, path: Path) -> None:
    both = old[["timestamp", "close"]].merge(new[["timestamp", "close"]].drop_duplicates("timestamp"), on="timestamp")
    if both.empty:
        return
    moved = ~np.isclose(both["close_x"].astype(float), both["close_y"].astype(float), rtol=REVISION_TOLERANCE, atol=0)
    if moved.any():
        first = both.loc[moved].iloc[0]
        raise DataError(
            f"{path.name}: the source now has close {first['close_y']} for {first['timestamp']}, the file {first['close_x']} "
            f"({int(moved.sum())} candle(s) revised, e.g. re-adjusted for a split or dividend): delete the file to download it anew",
            field="symbols")


class LocalStoreProvider:
    """The ``local`` source: bars from a :class:`MarketDataStore` directory, never the network.

    A file is read again only when it changes (a download running beside the trader shows
    up in its next cycle).
    """

    name = "local"

    def __init__(self, directory: Path | str):
        self.store = MarketDataStore(directory)
        self._cache: dict[Path, tuple[tuple[int, int], StoredSeries]] = {}

    def symbols(self) -> list[str]:
        return sorted({symbol for symbol, _ in self.store.entries()})

    def get_bars(self, symbol: str, start=None, end=None, timeframe: str = "1d") -> pd.DataFrame:
        return slice_range(self._series(check_symbol(symbol), check_timeframe(timeframe)).bars, start, end)

    def calendar_of(self, symbol: str, timeframe: str = "1d") -> str:
        """The calendar the symbol's file was downloaded with (``24/7`` for an exchange's pairs)."""
        return self._series(check_symbol(symbol), check_timeframe(timeframe)).meta.get("calendar", "exchange")

    @property
    def calendar(self) -> str:
        """The store's calendar when all its files share one; DataError when it mixes crypto
        and stocks (ask :meth:`calendar_of` per symbol then)."""
        found = {self.calendar_of(symbol, timeframe) for symbol, timeframe in self.store.entries()}
        if len(found) > 1:
            raise DataError(f"{self.store.directory} mixes calendars {sorted(found)}: use calendar_of(symbol)", field="source")
        return found.pop() if found else "exchange"

    def _series(self, symbol: str, timeframe: str) -> StoredSeries:
        path = self.store.path(symbol, timeframe)
        try:
            stat = path.stat()
        except FileNotFoundError:
            stored = ", ".join(f"{s} {t}" for s, t in self.store.entries()) or "nothing"
            raise DataNotFound(
                f"no {timeframe} bars for {symbol!r} in {self.store.directory} (it holds {stored}): "
                f"run `kryptobot download-data --symbols {symbol} --timeframe {timeframe}`", field="symbols") from None
        key = (stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(path)
        if cached is None or cached[0] != key:
            series = self.store.read(symbol, timeframe)
            if series is None:  # replaced between stat and read: try once more next call
                raise DataNotFound(f"{path} vanished while being read", field="symbols")
            self._cache[path] = cached = (key, series)
        return cached[1]
