"""The decision rules, as pure functions."""
from __future__ import annotations

from pathlib import Path

import pytest

from services.trader.decisions import Layers, ModelOutputs, decide
from services.trader.settings import TraderConfig

CONFIG = TraderConfig.load(Path(__file__).resolve().parents[3] / "config")
ALL = Layers()
CONFIDENT = ModelOutputs(signal_probability=0.7, ensemble_score=0.7, anomaly=False, forecast_trend=0.03, forecast_confidence=0.8)


def test_technical_only_buys_the_base_fraction():
    d = decide("SPY", "buy", False, ModelOutputs(), CONFIG, Layers.only())
    assert d.action == "buy" and d.size_fraction == CONFIG.trader.base_position_fraction
    assert d.rules == ["technical_buy"]


def test_confident_models_size_up_within_the_risk_cap():
    d = decide("SPY", "buy", False, CONFIDENT, CONFIG, ALL)
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
    d = decide("SPY", "buy", False, ModelOutputs(**{**vars(CONFIDENT), **change}), CONFIG, ALL)
    assert d.action == "skip" and d.rules[-1] == rule


def test_an_unconfident_forecast_neither_vetoes_nor_sizes():
    d = decide("SPY", "buy", False, ModelOutputs(forecast_trend=-0.05, forecast_confidence=0.55), CONFIG, Layers.only("forecast"))
    assert d.action == "buy" and d.size_fraction == CONFIG.trader.base_position_fraction


def test_exits_on_a_technical_sell_or_a_contradicting_forecast():
    assert decide("SPY", "sell", True, ModelOutputs(), CONFIG, ALL).rules == ["technical_sell"]
    d = decide("SPY", "none", True, ModelOutputs(forecast_trend=-0.03, forecast_confidence=0.9), CONFIG, ALL)
    assert d.action == "sell" and d.rules == ["forecast_contradicts_position"]
    assert decide("SPY", "none", True, ModelOutputs(forecast_trend=0.03, forecast_confidence=0.9), CONFIG, ALL).action == "hold"


def test_unavailable_service_policy():
    outputs = ModelOutputs(signal_probability=0.7, unavailable=("ensemble",))
    fallback = decide("SPY", "buy", False, outputs, CONFIG, Layers.only("signal", "ensemble"))
    assert fallback.action == "buy" and fallback.degraded and fallback.unavailable == ["ensemble"]
    skip_config = TraderConfig(CONFIG.trader.model_copy(update={"unavailable_policy": "skip"}), CONFIG.ml, CONFIG.ensemble, CONFIG.forecasting)
    skipped = decide("SPY", "buy", False, outputs, skip_config, Layers.only("signal", "ensemble"))
    assert skipped.action == "skip" and skipped.degraded


def test_anomaly_shrink_policy():
    shrink = TraderConfig(CONFIG.trader.model_copy(update={"anomaly_policy": "shrink"}), CONFIG.ml, CONFIG.ensemble, CONFIG.forecasting)
    d = decide("SPY", "buy", False, ModelOutputs(anomaly=True), shrink, Layers.only("anomaly"))
    assert d.action == "buy" and d.size_fraction == pytest.approx(CONFIG.trader.base_position_fraction * 0.5)
