"""Real daily history, offline: the public-domain stock series shipped by ``bokeh-sampledata``.

AAPL, IBM, MSFT (2000-2013), GOOG (2004-2013) and FB (2012-2013), unadjusted OHLCV with
an ``adj_close`` column. All prices are scaled by ``adj_close / close`` so splits do not
look like crashes (AAPL's 7:1 split of 2014 is already in the adjusted closes).
"""
from __future__ import annotations

import pandas as pd

from kryptobot.data.base import check_symbol, slice_range, validate_bars
from kryptobot.data.timeframes import check_timeframe
from kryptobot.errors import DataNotFound, InvalidInput

SAMPLE_SYMBOLS = ("AAPL", "FB", "GOOG", "IBM", "MSFT")


class SampleDataProvider:
    name = "sample"
    calendar = "exchange"

    def __init__(self) -> None:
        self._frames: dict[str, pd.DataFrame] = {}

    def symbols(self) -> list[str]:
        return list(SAMPLE_SYMBOLS)

    def get_bars(self, symbol: str, start=None, end=None, timeframe: str = "1d") -> pd.DataFrame:
        if check_timeframe(timeframe) != "1d":
            raise InvalidInput(f"the sample data has daily bars only, not {timeframe!r}", field="timeframe")
        symbol = check_symbol(symbol)
        if symbol not in SAMPLE_SYMBOLS:
            raise DataNotFound(f"no sample data for {symbol!r}; available: {', '.join(SAMPLE_SYMBOLS)}", field="symbols")
        if symbol not in self._frames:
            self._frames[symbol] = self._load(symbol)
        return slice_range(self._frames[symbol], start, end)

    @staticmethod
    def _load(symbol: str) -> pd.DataFrame:
        from bokeh_sampledata import stocks  # imported on first use: it reads gzipped CSVs

        raw = pd.DataFrame(getattr(stocks, symbol))
        factor = raw["adj_close"].astype(float) / raw["close"].astype(float)
        frame = pd.DataFrame(
            {
                "timestamp": pd.to_datetime(raw["date"]),
                **{c: raw[c].astype(float) * factor for c in ("open", "high", "low", "close")},
                "volume": raw["volume"].astype(float) / factor,  # shares, in adjusted units
            }
        )
        return validate_bars(frame.sort_values("timestamp"), field=f"sample data {symbol}")
