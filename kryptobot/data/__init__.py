"""Market-data providers behind one interface, and the request-level ``DataSpec``.

Sources: ``synthetic`` (embedded, no network, the default), ``csv`` (a directory of the
user's own files, one per symbol), ``sample`` (real daily history shipped by the
``bokeh-sampledata`` package, offline) and ``local`` (the market-data store that
``kryptobot download-data`` fills from an exchange or a broker; see
:mod:`kryptobot.data.local_store`). Reading never touches the network: the exchange and
broker clients (:mod:`kryptobot.data.ccxt_source`, :mod:`kryptobot.data.alpaca_source`)
only fill the store.
"""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from kryptobot.data.base import (
    BAR_COLUMNS,
    MarketDataProvider,
    Symbol,
    check_symbol,
    slice_range,
    validate_bars,
)
from kryptobot.data.timeframes import Timeframe
from kryptobot.errors import InvalidInput

__all__ = [
    "BAR_COLUMNS",
    "DataSpec",
    "MarketDataProvider",
    "check_symbol",
    "day_bounds",
    "get_provider",
    "load_bars",
    "slice_range",
    "validate_bars",
]

DataSource = Literal["synthetic", "csv", "sample", "local"]


class DataSpec(BaseModel):
    """Which market data a training run (or backtest) uses."""

    model_config = ConfigDict(extra="forbid")

    source: DataSource = Field(
        "synthetic",
        description="synthetic (embedded), csv (KRYPTOBOT_CSV_DIR), sample (offline real history) "
        "or local (the store `kryptobot download-data` fills, KRYPTOBOT_MARKET_DATA_DIR)",
    )
    symbols: list[Symbol] = Field(default_factory=lambda: ["SYNA", "SYNB"], min_length=1, max_length=50,
                                  description="tickers (SPY) or exchange pairs (BTC/USDT, BTC/USDT:USDT)")
    timeframe: Timeframe = Field("1d", description="bar length: 1m ... 1d, 1w (synthetic, local; csv and sample are daily)")
    start: date | None = Field(None, description="first day (inclusive); default: provider's first bar")
    end: date | None = Field(None, description="last day (inclusive, all its bars); default: provider's last bar")
    seed: int | None = Field(None, description="synthetic only: market seed")
    predictability: float | None = Field(None, ge=0.0, le=1.0, description="synthetic only: 0 = pure random walk")


def get_provider(
    source: str = "synthetic",
    *,
    csv_dir: Path | str | None = None,
    market_data_dir: Path | str | None = None,
    seed: int | None = None,
    predictability: float | None = None,
) -> MarketDataProvider:
    """Build the provider for ``source``; imports are lazy so unused sources cost nothing."""
    if source == "synthetic":
        from kryptobot.data.synthetic import SyntheticMarket

        kwargs = {}
        if seed is not None:
            kwargs["seed"] = seed
        if predictability is not None:
            kwargs["predictability"] = predictability
        return SyntheticMarket(**kwargs)
    if source == "csv":
        from kryptobot.data.csv_dir import CSVDirectoryProvider

        if csv_dir is None:
            raise InvalidInput("the csv source needs a directory (set KRYPTOBOT_CSV_DIR)", field="source")
        return CSVDirectoryProvider(csv_dir)
    if source == "sample":
        from kryptobot.data.sample import SampleDataProvider

        return SampleDataProvider()
    if source == "local":
        from kryptobot.data.local_store import LocalStoreProvider

        if market_data_dir is None:
            raise InvalidInput("the local source needs a directory (set KRYPTOBOT_MARKET_DATA_DIR)", field="source")
        return LocalStoreProvider(market_data_dir)
    raise InvalidInput(f"unknown data source {source!r}; allowed: synthetic, csv, sample, local", field="source")


def day_bounds(start: date | None, end: date | None) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """Inclusive days as bar bounds: from ``start``'s midnight to the last instant of ``end``,
    so an intraday series keeps every bar of its last day."""
    return (
        None if start is None else pd.Timestamp(start),
        None if end is None else pd.Timestamp(end) + pd.Timedelta(days=1) - pd.Timedelta(1, "ns"),
    )


def load_bars(
    spec: DataSpec, *, csv_dir: Path | str | None = None, market_data_dir: Path | str | None = None
) -> dict[str, pd.DataFrame]:
    """Bars for every symbol of ``spec``, validated, keyed by symbol."""
    provider = get_provider(spec.source, csv_dir=csv_dir, market_data_dir=market_data_dir,
                            seed=spec.seed, predictability=spec.predictability)
    start, end = day_bounds(spec.start, spec.end)
    return {s: provider.get_bars(s, start, end, timeframe=spec.timeframe) for s in spec.symbols}
