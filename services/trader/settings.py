"""The trader's settings: ``config/trader_settings.json`` plus the seed's three ML files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from kryptobot.data.base import Symbol
from kryptobot.settings import (
    EnsembleSettings,
    ForecastingSettings,
    MLSettings,
    Settings,
    FileSettings,
    load_json_settings,
    load_settings_file,
)


class TraderSettings(FileSettings):
    """``config/trader_settings.json``: watchlist, strategy, risk and fault policies."""

    watchlist: list[Symbol] = Field(default_factory=lambda: ["SPY", "QQQ", "AAPL", "MSFT", "AMZN", "GOOGL", "META", "TSLA"], min_length=1, max_length=100)
    data_source: Literal["synthetic", "csv", "sample"] = "synthetic"
    history_bars: int = Field(400, ge=200, le=5000, description="bars loaded per symbol each cycle")
    initial_cash: float = Field(100_000.0, gt=0)
    base_position_fraction: float = Field(0.08, gt=0, le=1, description="equity fraction of a plain technical entry")
    max_position_fraction: float = Field(0.2, gt=0, le=1, description="risk cap: no position above this fraction of equity")
    commission: float = Field(0.0005, ge=0, le=0.05, description="fraction of notional per fill")
    slippage: float = Field(0.0005, ge=0, le=0.05, description="fraction of price paid against us per fill")
    unavailable_policy: Literal["skip", "technical"] = Field(
        "technical", description="a model service is down: skip the trade, or trade on the technical signal without it"
    )
    anomaly_policy: Literal["veto", "shrink"] = "veto"
    anomaly_shrink_factor: float = Field(0.5, gt=0, le=1)
    schedule_minutes: float = Field(0, ge=0, description="run a cycle every N minutes (0 = only on POST /cycle)")
    request_timeout_seconds: float = Field(5.0, gt=0, le=120)
    retries: int = Field(2, ge=0, le=10)


@dataclass(frozen=True)
class TraderConfig:
    """Everything the decision rules and the engine read, loaded and validated at start-up."""

    trader: TraderSettings
    ml: MLSettings
    ensemble: EnsembleSettings
    forecasting: ForecastingSettings

    @classmethod
    def load(cls, config_dir: Path) -> "TraderConfig":
        return cls(
            trader=load_json_settings(TraderSettings, Path(config_dir) / "trader_settings.json"),
            ml=load_settings_file(MLSettings, config_dir),
            ensemble=load_settings_file(EnsembleSettings, config_dir),
            forecasting=load_settings_file(ForecastingSettings, config_dir),
        )


class TraderEnv(Settings):
    """Process settings of the trader (``KRYPTOBOT_*``), on top of the shared ones."""

    ledger_path: Path = Path("var/trader/ledger.sqlite")
    reports_dir: Path = Path("var/trader/reports")
    cache_prefix: str = "kryptobot:forecast"
