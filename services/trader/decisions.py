"""The decision rules: pure functions of the technical signal, the models' outputs and the
settings. Live cycles and backtests call exactly these, so a backtest measures the rules
that trade.

Long-only: a technical *buy* on a symbol without a position is an entry candidate; a
technical *sell* or a confident contradicting forecast exits a held position.

Entry sizing: ``base_position_fraction`` of equity times one multiplier per ML layer that
approves, ``position_size_multiplier * confidence / threshold`` (>= the multiplier when the
model is at least as confident as its threshold), capped at ``max_position_fraction``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from services.trader.settings import TraderConfig

LAYERS = ("signal", "ensemble", "anomaly", "forecast")
Action = Literal["buy", "sell", "hold", "skip"]


@dataclass(frozen=True)
class Layers:
    """Which ML layers a decision may use (the settings' switches, or a backtest mode)."""

    signal: bool = True
    ensemble: bool = True
    anomaly: bool = True
    forecast: bool = True

    @classmethod
    def from_config(cls, config: TraderConfig) -> "Layers":
        return cls(
            signal=config.ml.ml_enabled,
            ensemble=config.ensemble.ensemble_enabled,
            anomaly=config.ml.anomaly_detection_enabled,
            forecast=config.forecasting.enabled,
        )

    @classmethod
    def only(cls, *names: str) -> "Layers":
        return cls(**{n: n in names for n in LAYERS})

    def enabled(self) -> list[str]:
        return [n for n in LAYERS if getattr(self, n)]


@dataclass(frozen=True)
class ModelOutputs:
    """What the model services said about one symbol at one bar (None = not asked / no answer)."""

    signal_probability: float | None = None
    ensemble_score: float | None = None  # soft probability, or a hard ensemble's vote share
    anomaly: bool | None = None
    anomaly_score: float | None = None
    forecast_trend: float | None = None
    forecast_confidence: float | None = None
    unavailable: tuple[str, ...] = ()


@dataclass
class Decision:
    symbol: str
    action: Action
    technical: Literal["buy", "sell", "none"]
    size_fraction: float = 0.0
    rules: list[str] = field(default_factory=list)
    degraded: bool = False
    unavailable: list[str] = field(default_factory=list)
    outputs: dict = field(default_factory=dict)


def _scaled(multiplier: float, confidence: float, threshold: float) -> float:
    return multiplier * confidence / max(threshold, 1e-9)


def decide(
    symbol: str,
    technical: Literal["buy", "sell", "none"],
    holding: bool,
    outputs: ModelOutputs,
    config: TraderConfig,
    layers: Layers,
) -> Decision:
    """One symbol, one bar: buy (with a size), sell, hold or skip, and every rule that fired."""
    decision = Decision(symbol, "hold", technical, outputs={k: v for k, v in vars(outputs).items() if k != "unavailable"})
    missing = [n for n in layers.enabled() if n in outputs.unavailable]
    if missing:
        decision.degraded, decision.unavailable = True, missing
    fc = config.forecasting
    confident_forecast = (
        layers.forecast and outputs.forecast_trend is not None and outputs.forecast_confidence is not None
        and outputs.forecast_confidence >= fc.confidence_threshold
    )
    if holding:
        if technical == "sell":
            decision.action = "sell"
            decision.rules.append("technical_sell")
        elif confident_forecast and fc.use_for_exit and outputs.forecast_trend <= -fc.min_trend_strength:
            decision.action = "sell"
            decision.rules.append("forecast_contradicts_position")
        else:
            decision.rules.append("hold_position")
        return decision
    if technical != "buy":
        decision.rules.append("no_entry_signal")
        return decision
    if missing and config.trader.unavailable_policy == "skip":
        decision.action = "skip"
        decision.rules.append(f"service_unavailable_skip:{','.join(missing)}")
        return decision
    if missing:
        decision.rules.append(f"service_unavailable_technical_fallback:{','.join(missing)}")

    size = config.trader.base_position_fraction
    if layers.signal and outputs.signal_probability is not None:
        threshold = config.ml.min_confidence_threshold
        if outputs.signal_probability < threshold:
            return _veto(decision, "signal_below_min_confidence")
        size *= _scaled(config.ml.position_size_multiplier, outputs.signal_probability, threshold)
        decision.rules.append("signal_confident")
    if layers.ensemble and outputs.ensemble_score is not None:
        threshold = config.ensemble.confidence_threshold
        if outputs.ensemble_score < threshold:
            return _veto(decision, "ensemble_below_confidence_threshold")
        size *= _scaled(config.ensemble.position_size_multiplier, outputs.ensemble_score, threshold)
        decision.rules.append("ensemble_confident")
    if layers.anomaly and outputs.anomaly:
        if config.trader.anomaly_policy == "veto":
            return _veto(decision, "anomaly_veto")
        size *= config.trader.anomaly_shrink_factor
        decision.rules.append("anomaly_shrink")
    if confident_forecast and fc.use_for_entry:
        if outputs.forecast_trend <= -fc.min_trend_strength:
            return _veto(decision, "forecast_contradicts_entry")
        if fc.use_for_position_sizing and outputs.forecast_trend >= fc.min_trend_strength:
            size *= _scaled(fc.position_size_multiplier, outputs.forecast_confidence, fc.confidence_threshold)
            decision.rules.append("forecast_confirms")
    cap = config.trader.max_position_fraction
    if size > cap:
        size = cap
        decision.rules.append("risk_cap")
    decision.action = "buy"
    decision.size_fraction = round(size, 6)
    decision.rules.insert(0, "technical_buy")
    return decision


def _veto(decision: Decision, rule: str) -> Decision:
    decision.action = "skip"
    decision.rules.append(rule)
    return decision
