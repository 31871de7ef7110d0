"""The trader's settings: ``config/trader_settings.json`` plus the seed's three ML files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from kryptobot.data.base import Symbol
from kryptobot.data.timeframes import Timeframe
from kryptobot.features import FeatureParams
from kryptobot.labels import PRIMARY_RULES, LabelParams
from kryptobot.settings import (
    EnsembleSettings,
    ForecastingSettings,
    MLSettings,
    FileSettings,
    load_json_settings,
    load_settings_file,
)


_F, _L = FeatureParams, LabelParams  # the dataclasses' fields hold the defaults


class StrategySettings(FileSettings):
    """The primary technical strategy (:func:`kryptobot.labels.primary_signals`).

    The defaults are the ones the signal and ensemble models are trained on, read from the
    one definition of each parameter (:class:`~kryptobot.features.FeatureParams` for the
    indicators, :class:`~kryptobot.labels.LabelParams` for the rules and the barriers): a
    model scores the signals of the strategy it learned, so change these together with theirs.
    """

    rules: list[Literal[PRIMARY_RULES]] = Field(default_factory=lambda: list(PRIMARY_RULES), min_length=1)  # type: ignore[valid-type]
    rsi_period: int = Field(_F.rsi_period, ge=2, le=200)
    rsi_oversold: float = Field(_L.rsi_oversold, gt=0, lt=100)
    rsi_overbought: float = Field(_L.rsi_overbought, gt=0, lt=100)
    macd_fast: int = Field(_F.macd_fast, ge=2, le=200)
    macd_slow: int = Field(_F.macd_slow, ge=3, le=400)
    macd_signal: int = Field(_F.macd_signal, ge=2, le=200)
    bb_period: int = Field(_F.bb_period, ge=2, le=200)
    bb_std: float = Field(_F.bb_std, gt=0, le=10)
    # exits: the defaults are the signal models' triple-barrier labels
    atr_period: int = Field(_F.atr_period, ge=2, le=200)
    take_profit_atr: float = Field(_L.tp_mult, ge=0, le=20, description="target this many ATRs above the entry (0 = none)")
    stop_loss_atr: float = Field(_L.sl_mult, ge=0, le=20, description="stop this many ATRs below the entry (0 = none)")
    max_holding_bars: int = Field(_L.max_holding, ge=0, le=1000, description="exit after this many bars (0 = no limit)")
    exit_on_sell_signal: bool = Field(True, description="a technical sell closes a long position")

    @model_validator(mode="after")
    def _ordered(self) -> "StrategySettings":
        if self.rsi_oversold >= self.rsi_overbought:
            raise ValueError("rsi_oversold must be below rsi_overbought")
        if self.macd_fast >= self.macd_slow:
            raise ValueError("macd_fast must be shorter than macd_slow")
        return self

    def feature_params(self) -> FeatureParams:
        return FeatureParams(rsi_period=self.rsi_period, macd_fast=self.macd_fast, macd_slow=self.macd_slow,
                             macd_signal=self.macd_signal, bb_period=self.bb_period, bb_std=self.bb_std)

    def label_params(self) -> LabelParams:
        return LabelParams(rsi_oversold=self.rsi_oversold, rsi_overbought=self.rsi_overbought, rules=tuple(self.rules))


class LayerSchedule(FileSettings):
    """Retraining and expiry of one ML layer (FreqAI's ``live_retrain_hours`` / ``expired_hours``)."""

    retrain: str | None = Field(
        None,
        description='when to retrain: crontab fields "minute hour day month day-of-week" (a sixth, leading, field is '
        'seconds) in `timezone`, e.g. "30 17 * * mon-fri" (weekdays after the close); null: never',
    )
    train_body: dict | None = Field(
        None, description="the POST /train body; null: the service's first-start body (services/table.py) with activate 'if_better'"
    )
    expired_hours: float = Field(
        0, ge=0,
        description="a version whose training data end more than this many hours before the bar decided on is not used: "
        "the decision is degraded, rule model_expired:<layer>, and unavailable_policy applies; 0: never expires",
    )

    @field_validator("retrain")
    @classmethod
    def _crontab(cls, value: str | None) -> str | None:
        # the scheduler (APScheduler's CronTrigger) checks each field; the shape is checked here
        if value is not None and len(value.split()) not in (5, 6):
            raise ValueError(f"expected 5 crontab fields (or 6 with seconds first), got {len(value.split())}: {value!r}")
        return value


class RetrainingSettings(FileSettings):
    """Per-layer retraining rules and expiry; the trader's scheduler POSTs the services' ``/train``."""

    timezone: str = Field("America/New_York", description="of the retrain rules (an IANA name)")
    signal: LayerSchedule = Field(default_factory=LayerSchedule)
    ensemble: LayerSchedule = Field(default_factory=LayerSchedule)
    anomaly: LayerSchedule = Field(default_factory=LayerSchedule)
    forecast: LayerSchedule = Field(default_factory=LayerSchedule)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def layers(self) -> dict[str, LayerSchedule]:
        return {name: getattr(self, name) for name in ("signal", "ensemble", "anomaly", "forecast")}


class TraderSettings(FileSettings):
    """``config/trader_settings.json``: watchlist, strategy, risk and fault policies."""

    watchlist: list[Symbol] = Field(default_factory=lambda: ["SPY", "QQQ", "AAPL", "MSFT", "AMZN", "GOOGL", "META", "TSLA"], min_length=1, max_length=100)
    data_source: Literal["synthetic", "csv", "sample", "local"] = "synthetic"
    replay_past: bool = Field(
        False, description="allow cycles with as_of before the ledger's last traded bar (a paper ledger walked through "
        "history on purpose, e.g. a demo or a test); off, such a cycle is refused: the past is a backtest's")
    timeframe: Timeframe = Field("1d", description="bar length the trader decides on (its models must be trained on it)")
    strategy: StrategySettings = Field(default_factory=StrategySettings)
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
    retraining: RetrainingSettings = Field(default_factory=RetrainingSettings)
    request_timeout_seconds: float = Field(5.0, gt=0, le=120)
    retries: int = Field(2, ge=0, le=10)
    cycle_deadline_seconds: float = Field(
        30.0, gt=0, le=3600,
        description="a cycle's model calls (active versions, predictions, the forecast cache) share this many seconds: each "
        "request gets min(request_timeout_seconds, time left), no retry starts without time left, and the layers not "
        "answered by then are unavailable (rule deadline:<layer>, unavailable_policy applies); the cycle then decides, "
        "records and releases its lock")
    broker: Literal["paper", "ccxt"] = Field(
        "paper", description="paper: the offline ledger; ccxt: spot orders on `exchange` (needs KRYPTOBOT_EXCHANGE_API_KEY "
        "and KRYPTOBOT_EXCHANGE_SECRET)")
    exchange: str = Field("binance", pattern=r"^[a-z0-9_]+$", description="the ccxt exchange id the ccxt broker trades on")
    sandbox: bool = Field(True, description="ccxt broker: the exchange's testnet; false trades real money")


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


