"""The backtest's replay, without services: same rules and same signals as a live cycle.

Hand-computed fills are in ``test_fills.py``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kryptobot.data import get_provider
from kryptobot.features import FeatureParams
from kryptobot.trading.backtest import MODES, Tape, _outputs, _simulate, replay
from kryptobot.trading.backtest import symbol_history
from kryptobot.trading.decisions import Bar, ModelOutputs, decide
from kryptobot.trading.market import view
from kryptobot.trading.settings import TraderConfig

CONFIG = TraderConfig.load(Path(__file__).resolve().parents[3] / "config")
PROVIDER = get_provider("synthetic")
STRATEGY = CONFIG.trader.strategy


@pytest.fixture(scope="module")
def histories():
    return {s: symbol_history(PROVIDER, s, pd.Timestamp("2022-01-01"), pd.Timestamp("2023-12-31"), FeatureParams(), STRATEGY)
            for s in ("SPY", "QQQ", "AAPL")}


def test_backtest_signals_are_the_live_cycle_signals(histories):
    """No look-ahead: the signal the backtest acts on at a bar is what a live cycle on that day saw."""
    h = histories["SPY"]
    days = h.bars["timestamp"]
    for i in range(0, len(days), 37):
        live = view(PROVIDER, "SPY", CONFIG.trader.history_bars, STRATEGY, as_of=days.iat[i])
        assert live.last_timestamp == days.iat[i]
        assert live.technical == h.signals["side"].iat[i], days.iat[i]
        assert live.atr == pytest.approx(h.signals["atr"].iat[i], rel=1e-9)


def _with_policy(policy: str) -> TraderConfig:
    return TraderConfig(CONFIG.trader.model_copy(update={"unavailable_policy": policy}), CONFIG.ml, CONFIG.ensemble, CONFIG.forecasting)


def test_missing_services_follow_the_unavailable_policy(histories):
    traded = {s: h.bars for s, h in histories.items()}
    technical = _simulate(histories, traded, CONFIG, MODES["technical"], 100_000)
    assert technical.trades and technical.degraded == 0
    fallback = _simulate(histories, traded, _with_policy("technical"), MODES["all"], 100_000)
    # no service answered: every decision is degraded, and the rules trade on the technical signal
    assert fallback.degraded > 0
    pd.testing.assert_series_equal(fallback.equity, technical.equity)
    skipped = _simulate(histories, traded, _with_policy("skip"), MODES["all"], 100_000)
    assert skipped.trades == [] and skipped.equity.iat[-1] == 100_000


def test_costs_are_charged(histories):
    traded = {s: h.bars for s, h in histories.items()}
    free = TraderConfig(CONFIG.trader.model_copy(update={"commission": 0.0, "slippage": 0.0}), CONFIG.ml, CONFIG.ensemble, CONFIG.forecasting)
    with_costs = _simulate(histories, traded, CONFIG, MODES["technical"], 100_000)
    without = _simulate(histories, traded, free, MODES["technical"], 100_000)
    assert len(with_costs.trades) == len(without.trades)
    assert with_costs.equity.iat[-1] < without.equity.iat[-1]


def test_model_output_summary_counts_traded_days_only():
    from kryptobot.trading.backtest import output_summary

    h = symbol_history(PROVIDER, "SPY", pd.Timestamp("2023-01-01"), pd.Timestamp("2023-12-31"), FeatureParams(), STRATEGY)
    # the services answer for every bar they were sent, warm-up included
    h.outputs = {day: {"anomaly": ModelOutputs(anomaly=i % 2 == 0, anomaly_score=1.0)} for i, day in enumerate(h.window["timestamp"])}
    summary = output_summary({"SPY": h})
    assert summary["anomaly"]["answers"] == len(h.bars) < len(h.window)


def _random_outputs(histories, seed: int = 0) -> None:
    """Answers of every kind on the traded days, some missing (a service that did not answer)."""
    rng = np.random.default_rng(seed)
    for h in histories.values():
        h.outputs = {}
        for day, side in zip(h.bars["timestamp"], h.signals["side"]):
            o = {}
            if rng.random() < 0.9:
                o["forecast"] = ModelOutputs(forecast_trend=float(rng.normal(0, 0.03)), forecast_confidence=float(rng.random()))
            if rng.random() < 0.9:
                o["anomaly"] = ModelOutputs(anomaly=bool(rng.random() < 0.1), anomaly_score=1.0)
            if side == "buy" and rng.random() < 0.9:
                o["signal"] = ModelOutputs(signal_probability=float(rng.uniform(0.4, 0.9)))
                o["ensemble"] = ModelOutputs(ensemble_score=float(rng.uniform(0.4, 0.9)))
            h.outputs[day] = o


@pytest.mark.parametrize("mode", list(MODES))
def test_the_replays_one_shortcut_is_what_decide_says(histories, mode):
    """The replay skips decide() for a flat symbol without a technical buy; on every such bar
    of the market, with answers of every kind and missing ones, decide() holds, places no
    order and is degraded exactly when the shortcut counts it so."""
    _random_outputs(histories)
    layers = MODES[mode]
    tape = Tape.of(histories, {s: h.bars for s, h in histories.items()})
    checked = 0
    for symbol, h in histories.items():
        o, hi, lo, c = tape.prices[symbol]
        for i, side in enumerate(tape.sides[symbol]):
            if side == "buy":
                continue
            d = decide(symbol, side, None, c[i], tape.atrs[symbol][i], _outputs(tape.outputs[symbol][i], layers, side, False),
                       CONFIG, layers, Bar(o[i], hi[i], lo[i], c[i]))
            assert d.action == "hold" and d.rules == ["no_entry_signal"] and d.fill_price is None
            assert d.degraded == bool(layers.forecast and tape.no_forecast[symbol][i])
            checked += 1
    assert checked > 1000


def test_results_are_annualised_by_the_markets_calendar(histories):
    _random_outputs(histories, seed=1)
    traded = {s: h.bars for s, h in histories.items()}
    stocks = replay(histories, traded, CONFIG, ["technical", "all"], 100_000).results()
    crypto = replay(histories, traded, CONFIG, ["technical", "all"], 100_000, periods_per_year=365).results()
    for mode in ("technical", "all", "buy_and_hold"):
        assert stocks[mode]["total_return"] == crypto[mode]["total_return"]
        assert crypto[mode]["sharpe"] == pytest.approx(stocks[mode]["sharpe"] * np.sqrt(365 / 252))
        assert set(stocks[mode]["monthly_returns"]) >= {"2022-01", "2023-12"}
    assert {"sortino", "calmar", "max_drawdown_duration_bars", "profit_factor", "excess_return_vs_buy_and_hold"} <= set(stocks["all"])
    assert stocks["all"]["vs_technical"]["verdict"] in ("better", "worse", "no evidence")
