"""The user's own daily files: one ``<SYMBOL>.csv`` per symbol in a directory.

A pair's file is named by :func:`~kryptobot.data.base.symbol_filename`: ``BTC/USDT`` is
``BTC_USDT.csv``.

Columns (case-insensitive): ``timestamp`` or ``date``, open, high, low, close, volume,
and optionally ``adj_close`` (then all prices are scaled by adj_close / close).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from kryptobot.data.base import check_symbol, slice_range, symbol_filename, symbol_from_filename, validate_bars
from kryptobot.data.timeframes import check_timeframe
from kryptobot.errors import DataError, DataNotFound, InvalidInput


class CSVDirectoryProvider:
    name = "csv"
    calendar = "exchange"

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)

    def symbols(self) -> list[str]:
        self._check_dir()
        return sorted(symbol_from_filename(p.stem) for p in self.directory.glob("*.csv") if _is_symbol_file(p.stem))

    def get_bars(self, symbol: str, start=None, end=None, timeframe: str = "1d") -> pd.DataFrame:
        if check_timeframe(timeframe) != "1d":
            raise InvalidInput(f"CSV files are read as daily bars, not {timeframe!r}", field="timeframe")
        return slice_range(self._read(self._path(check_symbol(symbol))), start, end)

    def _check_dir(self) -> None:
        if not self.directory.is_dir():
            raise DataNotFound(f"CSV directory {self.directory} does not exist", field="source")

    def _path(self, symbol: str) -> Path:
        self._check_dir()
        stem = symbol_filename(symbol)
        for path in self.directory.glob("*.csv"):
            if path.stem.upper() == stem:
                return path
        raise DataNotFound(f"no file for {symbol!r}: expected {self.directory / (stem + '.csv')}", field="symbols")

    @staticmethod
    def _read(path: Path) -> pd.DataFrame:
        try:
            raw = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(f"{path.name}: unreadable CSV ({exc})", field="symbols") from exc
        raw.columns = [str(c).strip().lower() for c in raw.columns]
        if "timestamp" not in raw.columns and "date" in raw.columns:
            raw = raw.rename(columns={"date": "timestamp"})
        if "adj_close" in raw.columns:
            factor = pd.to_numeric(raw["adj_close"], errors="coerce") / pd.to_numeric(raw["close"], errors="coerce")
            for col in ("open", "high", "low", "close"):
                raw[col] = pd.to_numeric(raw[col], errors="coerce") * factor
        try:
            return validate_bars(raw, field=path.name)
        except DataError as exc:
            raise DataError(f"{path.name}: {exc.message}", field=exc.field) from exc


def _is_symbol_file(stem: str) -> bool:
    try:
        symbol_from_filename(stem)
    except InvalidInput:
        return False
    return True
