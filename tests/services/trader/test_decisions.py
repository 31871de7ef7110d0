"""The decision rules, as pure functions."""
from __future__ import annotations

from pathlib import Path

import pytest

from kryptobot.models.ensemble.schemas import EnsemblePrediction
from kryptobot.models.signal.schemas import SignalPrediction
from kryptobot.trading.decisions import Holding, Layers, ModelOutputs, decide, outputs_from
from services.trader import wire
from kryptobot.trading.settings import TraderConfig

CONFIG = TraderConfig.load(Path(__file__).resolve().parents[3] / "config")
ALL = Layers()
CONFIDENT = ModelOutputs(signal_probability=0.7, ensemble_score=0.7, anomaly=False, forecast_trend=0.03, forecast_confidence=0.8)
PRICE, ATR = 100.0, 2.0
HELD = Holding(entry_price=100.0, stop=96.0, target=104.0, bars_held=3)


def entry(outputs: ModelOutputs, layers: Layers = ALL, config: TraderConfig = CONFIG):
    return decide("SPY", "buy", None, PRICE, ATR, outputs, config, layers)


def held(technical: str, price: float = PRICE, outputs: ModelOutputs = ModelOutputs(), holding: Holding = HELD):
    return decide("SPY", technical, holding, price, ATR, outputs, CONFIG, ALL)


def with_trader(**update) -> TraderConfig:
    return TraderConfig(CONFIG.trader.model_copy(update=update), CONFIG.ml, CONFIG.ensemble, CONFIG.forecasting)


def test_technical_only_buys_the_base_fraction_with_atr_barriers():
    d = entry(ModelOutputs(), Layers.only())
    assert d.action == "buy" and d.size_fraction == CONFIG.trader.base_position_fraction
    assert d.rules == ["technical_buy"]
    st = CONFIG.trader.strategy
    assert (d.stop, d.target) == (PRICE - st.stop_loss_atr * ATR, PRICE + st.take_profit_atr * ATR)
    no_atr = decide("SPY", "buy", None, PRICE, float("nan"), ModelOutputs(), CONFIG, Layers.only())
    assert no_atr.action == "buy" and no_atr.stop is None and no_atr.target is None


def test_confident_models_size_up_within_the_risk_cap():
    d = entry(CONFIDENT)
    assert d.action == "buy"
    assert d.size_fraction == CONFIG.trader.max_position_fraction
    assert {"signal_confident", "ensemble_confident", "forecast_confirms", "risk_cap"} <= set(d.rules)


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"signal_probability": 0.55}, "signal_below_min_confidence"),
        ({"ensemble_score": 0.5}, "ensemble_below_confidence_threshold"),
        ({"anomaly": True}, "anomaly_veto"),
        ({"forecast_trend": -0.05}, "forecast_contradicts_entry"),
    ],
)
def test_low_confidence_anomalies_and_contradicting_forecasts_veto(change, rule):
    d = entry(ModelOutputs(**{**vars(CONFIDENT), **change}))
    assert d.action == "skip" and d.rules[-1] == rule and d.size_fraction == 0


def test_an_unconfident_forecast_neither_vetoes_nor_sizes():
    d = entry(ModelOutputs(forecast_trend=-0.05, forecast_confidence=0.55), Layers.only("forecast"))
    assert d.action == "buy" and d.size_fraction == CONFIG.trader.base_position_fraction


def test_a_stronger_confirming_forecast_sizes_up_to_twice_the_minimum_trend():
    fc = CONFIG.forecasting
    uncapped = with_trader(max_position_fraction=1.0)
    sizes = [
        entry(ModelOutputs(forecast_trend=k * fc.min_trend_strength, forecast_confidence=fc.confidence_threshold),
              Layers.only("forecast"), uncapped).size_fraction
        for k in (1, 1.5, 2, 4)
    ]
    base = CONFIG.trader.base_position_fraction * fc.position_size_multiplier
    assert sizes[:3] == pytest.approx([base, 1.5 * base, 2 * base])
    assert sizes[3] == sizes[2]  # the trend factor stops at 2
    capped = entry(ModelOutputs(forecast_trend=2 * fc.min_trend_strength, forecast_confidence=1.0), Layers.only("forecast"))
    assert capped.size_fraction == CONFIG.trader.max_position_fraction and capped.rules[-1] == "risk_cap"


@pytest.mark.parametrize(
    ("technical", "price", "holding", "rule"),
    [
        ("none", 95.0, HELD, "stop_loss"),
        ("buy", 104.5, HELD, "take_profit"),
        ("none", 101.0, Holding(100.0, 96.0, 104.0, bars_held=10), "time_limit"),
        ("sell", 101.0, HELD, "technical_sell"),
    ],
)
def test_exits(technical, price, holding, rule):
    d = held(technical, price, holding=holding)
    assert d.action == "sell" and d.rules == [rule]


def test_a_confident_contradicting_forecast_exits_a_position():
    d = held("none", outputs=ModelOutputs(forecast_trend=-0.03, forecast_confidence=0.9))
    assert d.action == "sell" and d.rules == ["forecast_contradicts_position"]
    assert held("none", outputs=ModelOutputs(forecast_trend=0.03, forecast_confidence=0.9)).rules == ["hold_position"]
    assert held("none", outputs=ModelOutputs(forecast_trend=-0.03, forecast_confidence=0.5)).action == "hold"


def test_a_held_symbol_is_never_bought_again():
    assert held("buy", outputs=CONFIDENT).action == "hold"


def test_unavailable_service_policy():
    outputs = ModelOutputs(signal_probability=0.7, unavailable=("ensemble",))
    fallback = entry(outputs, Layers.only("signal", "ensemble"))
    assert fallback.action == "buy" and fallback.degraded and fallback.unavailable == ["ensemble"]
    assert "service_unavailable_technical_fallback:ensemble" in fallback.rules
    skipped = entry(outputs, Layers.only("signal", "ensemble"), with_trader(unavailable_policy="skip"))
    assert skipped.action == "skip" and skipped.degraded
    # a service of a layer that is off is not missed
    assert not entry(outputs, Layers.only("signal")).degraded


def test_anomaly_shrink_policy():
    d = entry(ModelOutputs(anomaly=True), Layers.only("anomaly"), with_trader(anomaly_policy="shrink"))
    assert d.action == "buy" and d.size_fraction == pytest.approx(CONFIG.trader.base_position_fraction * 0.5)
    assert "anomaly_shrink" in d.rules


def test_disabled_layers_are_ignored_even_when_their_outputs_are_there():
    vetoing = ModelOutputs(signal_probability=0.1, ensemble_score=0.1, anomaly=True, forecast_trend=-0.5, forecast_confidence=1.0)
    d = entry(vetoing, Layers.only())
    assert d.action == "buy" and d.rules == ["technical_buy"]


def test_outputs_from_the_services_typed_predictions():
    hard = EnsemblePrediction(side="buy", voting="hard", probability=None, vote=1, vote_share=0.66, take=True,
                              confidence_threshold=0.6, base_models={}, features={})
    outputs = outputs_from({
        "signal": wire.signal_reading(SignalPrediction(probability=0.7, side="buy", features={})),
        "ensemble": wire.ensemble_reading(hard),
        "anomaly": wire.anomaly_reading(True, 1.4),
        "forecast": wire.forecast_reading(0.01, 0.8),
    })
    assert outputs.signal_probability == 0.7
    assert outputs.ensemble_score == 0.66  # hard voting: the vote share is the score
    assert outputs.anomaly is True and outputs.anomaly_score == 1.4 and outputs.forecast_trend == 0.01
    assert outputs_from({}, ("signal",)).unavailable == ("signal",)
