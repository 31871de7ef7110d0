"""The decision rules: pure functions of the technical signal, the position, the models'
outputs and the settings. Live cycles and backtests call exactly these, so a backtest
measures the rules that trade.

Long-only. A technical *buy* on a symbol without a position is an entry candidate.

Entry rules, in order (the first veto wins; every rule that fired is recorded):

* signal / ensemble: a probability below ``min_confidence_threshold`` (ml_settings) /
  ``confidence_threshold`` (ensemble_settings) vetoes the entry;
* anomaly on the latest window: veto, or shrink the size (``anomaly_policy``);
* a confident forecast (confidence >= ``confidence_threshold``) of a fall of at least
  ``min_trend_strength`` vetoes the entry (``use_for_entry``);
* a model service that should have answered and did not: skip the trade, or decide
  without it (``unavailable_policy``); the decision is then ``degraded``.

Entry sizing: ``base_position_fraction`` of equity times one multiplier per ML layer that
approves, ``position_size_multiplier * confidence / threshold`` (>= the multiplier when the
model is at least as confident as its threshold); a confirming forecast also scales with
its trend strength, ``trend / min_trend_strength`` (at most 2: a forecast's magnitude is
noisier than its direction); the result is capped at ``max_position_fraction``. An entry
sets a stop and a target ``stop_loss_atr`` / ``take_profit_atr`` ATRs from its price:
the barriers the signal models' labels are defined by, so a model's "this signal
succeeds" is a statement about the trade the rules make.

Exits, in order: the stop and the target, touched inside the bar (its low / high,
:func:`barrier_hit`, the rule of the labels' :func:`kryptobot.labels.triple_barrier`), the
time limit (``max_holding_bars`` bars after the entry's decision bar, at that bar's close,
as the labels' time limit), a technical sell (``exit_on_sell_signal``), a confident
forecast of a fall of at least ``min_trend_strength`` (``use_for_exit``).

Fills. An exit known during the bar carries its ``fill_price`` (before slippage): a
barrier at its price, or at the open when the bar gapped through it; the time limit at
the close (a market-on-close order: the limit is known before the bar). Every other
order is decided at the close and has no fill price: the backtest fills it at the next
bar's open (the next open is the first price after the decision); the live paper broker
fills it at the decision close, the last price a cycle sees.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Literal, Mapping

from kryptobot.trading.settings import TraderConfig

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


def outputs_from(readings: Mapping[str, ModelOutputs], unavailable: tuple[str, ...] = ()) -> ModelOutputs:
    """One ModelOutputs from each layer's reading (a ModelOutputs with only that layer's fields set)."""
    merged: dict = {}
    for reading in readings.values():
        merged.update({k: v for k, v in vars(reading).items() if v is not None and k != "unavailable"})
    return ModelOutputs(**merged, unavailable=unavailable)


@dataclass(frozen=True)
class Holding:
    """An open long position, as the exit rules need it."""

    entry_price: float
    stop: float | None = None
    target: float | None = None
    bars_held: int = 0  # bars closed since the bar the entry was decided on (the labels' t0)


@dataclass(frozen=True)
class Bar:
    """One bar's prices, as the exit rules need them."""

    open: float
    high: float
    low: float
    close: float

    @classmethod
    def at(cls, price: float) -> "Bar":
        """A bar of which only one price is known (its close): barriers are checked on it alone."""
        return cls(price, price, price, price)


@dataclass(frozen=True)
class BarrierHit:
    rule: Literal["stop_loss", "take_profit"]
    price: float  # the fill before slippage: the barrier, or the open when the bar gapped through it


def barrier_hit(stop: float | None, target: float | None, bar: Bar) -> BarrierHit | None:
    """The barrier of a long position the bar touched, and its fill; None when neither was.

    As the labels (:func:`kryptobot.labels.triple_barrier`): the stop is touched when the
    low reaches it and fills at ``min(open, stop)``, the target when the high reaches it
    and fills at ``max(open, target)``; when both are inside one bar the stop wins (from
    a bar alone the order inside it is unknown: the conservative answer).
    """
    if stop is not None and bar.low <= stop:
        return BarrierHit("stop_loss", min(bar.open, stop))
    if target is not None and bar.high >= target:
        return BarrierHit("take_profit", max(bar.open, target))
    return None


@dataclass
class Decision:
    symbol: str
    action: Action
    technical: Literal["buy", "sell", "none"]
    price: float | None  # the close decided on (None: the symbol had no data)
    size_fraction: float = 0.0
    stop: float | None = None  # an entry's barriers
    target: float | None = None
    rules: list[str] = field(default_factory=list)
    degraded: bool = False
    unavailable: list[str] = field(default_factory=list)
    outputs: dict = field(default_factory=dict)
    fill_price: float | None = None  # an exit filled during the bar (barrier) or at its close (time limit)


MAX_TREND_FACTOR = 2.0


def _scaled(multiplier: float, confidence: float, threshold: float) -> float:
    return multiplier * confidence / max(threshold, 1e-9)


def _trend_factor(trend: float, min_trend_strength: float) -> float:
    if min_trend_strength <= 0:
        return 1.0
    return min(trend / min_trend_strength, MAX_TREND_FACTOR)


def decide(
    symbol: str,
    technical: Literal["buy", "sell", "none"],
    holding: Holding | None,
    price: float,
    atr: float | None,
    outputs: ModelOutputs,
    config: TraderConfig,
    layers: Layers,
    bar: Bar | None = None,
) -> Decision:
    """One symbol at one close: buy (size, stop, target), sell, hold or skip, and every rule that fired.

    ``price``: the close; ``atr``: the ATR (price units) at that close, for an entry's
    barriers; ``bar``: the decided bar's prices, for a position's barriers (None: only the
    close is known, and the barriers are checked on it).
    """
    decision = Decision(symbol, "hold", technical, price, outputs={k: v for k, v in vars(outputs).items() if k != "unavailable"})
    missing = [n for n in layers.enabled() if n in outputs.unavailable]
    if missing:
        decision.degraded, decision.unavailable = True, missing
    fc = config.forecasting
    confident_forecast = (
        layers.forecast and outputs.forecast_trend is not None and outputs.forecast_confidence is not None
        and outputs.forecast_confidence >= fc.confidence_threshold
    )
    if holding is not None:
        exit_rule, decision.fill_price = _exit_rule(technical, holding, bar or Bar.at(price), config)
        if exit_rule is None and confident_forecast and fc.use_for_exit and outputs.forecast_trend <= -fc.min_trend_strength:
            exit_rule = "forecast_contradicts_position"
        decision.action = "sell" if exit_rule else "hold"
        decision.rules.append(exit_rule or "hold_position")
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
            size *= _trend_factor(outputs.forecast_trend, fc.min_trend_strength)
            decision.rules.append("forecast_confirms")
    cap = config.trader.max_position_fraction
    if size > cap:
        size = cap
        decision.rules.append("risk_cap")
    decision.action = "buy"
    decision.size_fraction = round(size, 6)
    decision.stop, decision.target = barriers(price, atr, config)
    decision.rules.insert(0, "technical_buy")
    return decision


def buy_quantity(equity: float, cash: float, fraction: float, price: float, slippage: float, commission: float) -> float:
    """Shares of an entry worth ``fraction`` of ``equity``, filled at ``price`` plus
    slippage, clipped to what the cash left pays for commission included (floored to
    1e-6, so the broker never sees an order a rounding error too large)."""
    spend = min(equity * fraction, cash / (1 + commission))
    if spend <= 0:
        return 0.0
    return math.floor(spend / (price * (1 + slippage)) * 1e6) / 1e6


def barriers(price: float, atr: float | None, config: TraderConfig) -> tuple[float | None, float | None]:
    """Stop and target of an entry at ``price`` (None: that barrier is off, or no ATR yet)."""
    st = config.trader.strategy
    if atr is None or not atr > 0:  # NaN-safe
        return None, None
    stop = price - st.stop_loss_atr * atr if st.stop_loss_atr > 0 else None
    target = price + st.take_profit_atr * atr if st.take_profit_atr > 0 else None
    return stop, target


def _exit_rule(technical: str, holding: Holding, bar: Bar, config: TraderConfig) -> tuple[str | None, float | None]:
    """The first exit rule that fires, and its fill price when it is known at the decision."""
    st = config.trader.strategy
    hit = barrier_hit(holding.stop, holding.target, bar)
    if hit is not None:
        return hit.rule, hit.price
    if st.max_holding_bars and holding.bars_held >= st.max_holding_bars:
        return "time_limit", bar.close
    if technical == "sell" and st.exit_on_sell_signal:
        return "technical_sell", None
    return None, None


def _veto(decision: Decision, rule: str) -> Decision:
    decision.action = "skip"
    decision.rules.append(rule)
    return decision
