"""The market-data interface every provider implements, and the checks on its output."""
from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Annotated, Mapping, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from pydantic import AfterValidator

from kryptobot.errors import DataError, InvalidInput

BAR_COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]
_PART = r"[A-Z0-9][A-Z0-9.\-^]{0,19}"
#: a ticker (``SPY``, ``BRK-B``) or an exchange pair: ``BASE/QUOTE`` (spot) or
#: ``BASE/QUOTE:SETTLE`` (a swap or future settled in SETTLE, ``BTC/USDT:USDT-240329``), as ccxt writes them
SYMBOL_PATTERN = re.compile(rf"{_PART}(?:/{_PART}(?::{_PART})?)?")
SYMBOL_RULE = (
    "a ticker of 1-20 characters A-Z, 0-9, '.', '-', '^' (starting with a letter or digit), "
    "or a pair of such parts as BASE/QUOTE or BASE/QUOTE:SETTLE"
)


def check_symbol(symbol: str, field: str = "symbol") -> str:
    """Return the symbol upper-cased, or raise InvalidInput naming ``field``.

    ``fullmatch`` on ASCII only: ``re``'s ``$`` would let a trailing newline through, and
    ``str.upper`` maps some non-ASCII letters onto ASCII ones (``"ſ".upper() == "S"``).
    """
    if not isinstance(symbol, str) or not symbol.isascii() or not SYMBOL_PATTERN.fullmatch(symbol.upper()):
        raise InvalidInput(f"malformed symbol {symbol!r}: expected {SYMBOL_RULE}", field=field)
    return symbol.upper()


def symbol_filename(symbol: str, field: str = "symbol") -> str:
    """The symbol as a file name stem: ``BTC/USDT:USDT`` -> ``BTC_USDT_USDT``, ``SPY`` -> ``SPY``.

    Safe (only A-Z, 0-9, '.', '-', '^', '_'; never starting with a dot) and reversible by
    :func:`symbol_from_filename`: '_' is in no symbol, and a pair has at most one '/' and,
    after it, one ':'. A '-' would not do: ``BTC/USDT-USDT`` would map like ``BTC/USDT:USDT``.
    """
    return check_symbol(symbol, field).replace("/", "_").replace(":", "_")


def symbol_from_filename(stem: str) -> str:
    """Inverse of :func:`symbol_filename`; raises InvalidInput for a stem no symbol maps to."""
    parts = stem.upper().split("_")
    if len(parts) > 3:
        raise InvalidInput(f"{stem!r} is not the file name of a symbol", field="symbol")
    symbol = parts[0] + "".join(sep + part for sep, part in zip(("/", ":"), parts[1:]))
    return check_symbol(symbol)


def _symbol_field(value: str) -> str:
    try:
        return check_symbol(value)
    except InvalidInput as exc:  # pydantic turns a ValueError into a 422 naming the field
        raise ValueError(exc.message) from None


#: A symbol in a request schema: validated and upper-cased.
Symbol = Annotated[str, AfterValidator(_symbol_field)]
#: a list of symbols, each once, in the order given (a repeat would be decided or traded twice)
UniqueSymbols = Annotated[list[Symbol], AfterValidator(lambda symbols: list(dict.fromkeys(symbols)))]


@runtime_checkable
class MarketDataProvider(Protocol):
    """OHLCV bars of one timeframe for a symbol.

    ``get_bars`` returns a DataFrame with exactly ``BAR_COLUMNS``: ``timestamp`` (a bar's
    open time) as timezone-naive UTC pandas timestamps, strictly increasing, prices > 0,
    volume >= 0. ``start``/``end`` are inclusive; ``None`` means "from the beginning"/"to
    the end". ``timeframe`` is one of :data:`kryptobot.data.timeframes.TIMEFRAMES`; a
    provider without it raises InvalidInput naming ``timeframe``.
    ``calendar`` is when the market trades, ``"24/7"`` or ``"exchange"``
    (see :func:`kryptobot.data.timeframes.periods_per_year`).
    """

    name: str
    calendar: str

    def get_bars(
        self,
        symbol: str,
        start: str | pd.Timestamp | None = None,
        end: str | pd.Timestamp | None = None,
        timeframe: str = "1d",
    ) -> pd.DataFrame: ...

    def symbols(self) -> list[str]: ...


#: what datetime64[ns] holds (1677-09-21 .. 2262-04-11)
#: in days, so comparing a coarser unit with it never passes through nanoseconds itself
_NS_SPAN = (np.datetime64("1677-09-22"), np.datetime64("2262-04-10"))


def _timestamps(column: pd.Series, field: str) -> np.ndarray:
    """Timezone-naive UTC datetime64[ns] values of a timestamp column."""
    try:
        if not pd.api.types.is_datetime64_any_dtype(column):
            try:  # the fast path for the ISO strings and datetimes clients send
                column = pd.to_datetime(column, utc=True, format="ISO8601")
            except (ValueError, TypeError):
                column = pd.to_datetime(column, utc=True)
        if getattr(column.dt, "tz", None) is not None:
            column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    except (ValueError, TypeError) as exc:
        raise DataError(f"unparseable timestamp: {exc}", field=f"{field}.timestamp") from exc
    values = column.to_numpy()
    # pandas 2 keeps a coarser unit (us, s) for far dates; casting those to ns wraps silently
    if values.dtype != np.dtype("datetime64[ns]") and len(values):
        if values.min() < _NS_SPAN[0] or values.max() > _NS_SPAN[1]:
            raise DataError(f"timestamp out of range: bars must lie between {_NS_SPAN[0]} and {_NS_SPAN[1]}",
                            field=f"{field}.timestamp")
    return values.astype("datetime64[ns]")


def validate_bars(bars: pd.DataFrame, field: str = "bars") -> pd.DataFrame:
    """Check a bar frame and return a clean copy (float columns, index 0..n-1).

    Raises DataError naming ``field`` for: missing columns, non-numeric or non-finite
    values, zero or negative prices, negative volume, a high below its low, unsorted or
    duplicate timestamps.
    Vectorised: it runs on every anomaly and forecast /predict, so it must cost well under
    1 ms (the classifiers check their bars without a frame: ``Bars.arrays``).
    """
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}", field=field)
    out = {"timestamp": _timestamps(bars["timestamp"], field)}
    for col in BAR_COLUMNS[1:]:
        try:
            values = np.asarray(bars[col], dtype=np.float64)
        except (ValueError, TypeError):
            try:
                values = pd.to_numeric(bars[col]).to_numpy(dtype=np.float64)
            except (ValueError, TypeError) as exc:
                raise DataError(f"non-numeric values in {col!r}", field=f"{field}.{col}") from exc
        check_bar_column(col, values, field)
        out[col] = values
    check_high_low(out, field)
    check_timestamp_order(out["timestamp"], field)
    return pd.DataFrame(out)


def check_bar_values(columns: Mapping[str, np.ndarray], field: str = "bars") -> None:
    """The rules on the numbers of bars (float64 arrays ``open`` .. ``volume``): finite,
    prices > 0, volume >= 0, high >= low. Raises DataError naming ``field.<column>``.

    One place for them: :func:`validate_bars` and the serving path's
    :meth:`kryptobot.schemas.Bars.arrays` both use these checks.
    """
    for col in BAR_COLUMNS[1:]:
        check_bar_column(col, columns[col], field)
    check_high_low(columns, field)


def check_bar_matrix(matrix: np.ndarray, field: str = "bars") -> None:
    """:func:`check_bar_values` of the rows ``open, high, low, close, volume`` of one float64
    array: four array operations when the bars pass (the serving path), and the same first
    error, from ``check_bar_values``, when they do not."""
    if not (np.isfinite(matrix).all() and (matrix[:4] > 0).all() and (matrix[4] >= 0).all() and (matrix[1] >= matrix[2]).all()):
        check_bar_values(dict(zip(BAR_COLUMNS[1:], matrix)), field)


def check_bar_column(col: str, values: np.ndarray, field: str = "bars") -> None:
    if not np.isfinite(values).all():
        raise DataError(f"NaN or infinite values in {col!r}", field=f"{field}.{col}")
    if col == "volume":
        if (values < 0).any():
            raise DataError("negative volume", field=f"{field}.volume")
    elif (values <= 0).any():
        raise DataError(f"zero or negative prices in {col!r}", field=f"{field}.{col}")


def check_high_low(columns: Mapping[str, np.ndarray], field: str = "bars") -> None:
    inverted = np.flatnonzero(columns["high"] < columns["low"])
    if len(inverted):
        # every range-based input (ATR, Bollinger width, the anomaly detector's range) needs high >= low
        raise DataError(f"high below low at {len(inverted)} bar(s), the first at index {int(inverted[0])}", field=f"{field}.high")


def check_timestamp_order(timestamps: np.ndarray, field: str = "bars") -> None:
    """Strictly increasing ``datetime64[ns]`` timestamps, or DataError naming ``field.timestamp``."""
    steps = np.diff(timestamps).astype(np.int64)
    if (steps == 0).any() or len(np.unique(timestamps)) != len(timestamps):
        raise DataError("duplicate timestamps", field=f"{field}.timestamp")
    if (steps < 0).any():
        raise DataError("timestamps are not sorted ascending", field=f"{field}.timestamp")


#: where :func:`increasing_datetimes` vouches for timestamps: well inside what datetime64[ns] holds
_SAFE_SPAN = (datetime(1700, 1, 1), datetime(2200, 1, 1))
_SAFE_SPAN_UTC = tuple(t.replace(tzinfo=timezone.utc) for t in _SAFE_SPAN)


def increasing_datetimes(values: Sequence[datetime]) -> bool:
    """True when ``values`` (datetimes, all naive or all aware) are each later than the one
    before and within 1700..2200: then :func:`check_timestamp_order` would pass them, and
    the serving path skips converting them. Costs microseconds; False decides nothing
    (convert with :func:`timestamps_ns` and check)."""
    if not values:
        return True
    low, high = _SAFE_SPAN if values[0].tzinfo is None else _SAFE_SPAN_UTC
    try:
        return low <= values[0] and values[-1] < high and all(map(operator.lt, values, values[1:]))
    except TypeError:  # naive and aware mixed: they do not compare
        return False


def timestamps_ns(values, field: str = "bars") -> np.ndarray:
    """Timezone-naive UTC ``datetime64[ns]`` of a sequence of timestamps (datetimes, ISO
    strings; naive ones are UTC), or DataError naming ``field.timestamp``."""
    return _timestamps(pd.Series(values), field)  # inferred as a frame's column would be


def slice_range(bars: pd.DataFrame, start=None, end=None) -> pd.DataFrame:
    """Rows with ``start <= timestamp <= end`` (either bound may be None)."""
    mask = pd.Series(True, index=bars.index)
    if start is not None:
        mask &= bars["timestamp"] >= pd.Timestamp(start)
    if end is not None:
        mask &= bars["timestamp"] <= pd.Timestamp(end)
    return bars.loc[mask].reset_index(drop=True)
