"""Market-data providers behind one interface, and the request-level ``DataSpec``.

Sources: ``synthetic`` (embedded, no network, the default), ``csv`` (a directory of the
user's own files, one per symbol) and ``sample`` (real daily history shipped by the
``bokeh-sampledata`` package, offline).
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
from kryptobot.errors import InvalidInput

__all__ = [
    "BAR_COLUMNS",
    "DataSpec",
    "MarketDataProvider",
    "check_symbol",
    "get_provider",
    "load_bars",
    "slice_range",
    "validate_bars",
]

DataSource = Literal["synthetic", "csv", "sample"]


class DataSpec(BaseModel):
    """Which market data a training run (or backtest) uses."""

    model_config = ConfigDict(extra="forbid")

    source: DataSource = Field("synthetic", description="synthetic (embedded), csv (KRYPTOBOT_CSV_DIR) or sample (offline real history)")
    symbols: list[Symbol] = Field(default_factory=lambda: ["SYNA", "SYNB"], min_length=1, max_length=50)
    start: date | None = Field(None, description="first bar (inclusive); default: provider's first bar")
    end: date | None = Field(None, description="last bar (inclusive); default: provider's last bar")
    seed: int | None = Field(None, description="synthetic only: market seed")
    predictability: float | None = Field(None, ge=0.0, le=1.0, description="synthetic only: 0 = pure random walk")


def get_provider(
    source: str = "synthetic",
    *,
    csv_dir: Path | str | None = None,
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
    raise InvalidInput(f"unknown data source {source!r}", field="source")


def load_bars(spec: DataSpec, *, csv_dir: Path | str | None = None) -> dict[str, pd.DataFrame]:
    """Bars for every symbol of ``spec``, validated, keyed by symbol."""
    provider = get_provider(spec.source, csv_dir=csv_dir, seed=spec.seed, predictability=spec.predictability)
    return {s: provider.get_bars(s, spec.start, spec.end) for s in spec.symbols}
