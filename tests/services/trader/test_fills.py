"""Realistic fills, on a tiny hand-made market whose trades are computed by hand.

Costs: slippage 0.2% against us on each fill, commission 0.1% of each fill's notional.
Every entry below is a technical buy at a close of 100 with an ATR of 2: stop 96 (2 ATRs),
target 106 (3 ATRs), time limit 3 bars after the decision bar.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kryptobot.labels import LabelParams, triple_barrier
from kryptobot.trading.backtest import MODES, SymbolHistory, _simulate
from kryptobot.trading.decisions import Bar, barrier_hit
from kryptobot.trading.settings import TraderConfig

BASE = TraderConfig.load(Path(__file__).resolve().parents[3] / "config")
SLIP, COMM = 0.002, 0.001
CONFIG = TraderConfig(
    BASE.trader.model_copy(update={
        "slippage": SLIP, "commission": COMM, "base_position_fraction": 0.5, "max_position_fraction": 1.0,
        "strategy": BASE.trader.strategy.model_copy(update={"stop_loss_atr": 2.0, "take_profit_atr": 3.0, "max_holding_bars": 3}),
    }),
    BASE.ml, BASE.ensemble, BASE.forecasting,
)
CASH = 10_000.0


def market(rows: list[tuple[float, float, float, float, str]]) -> tuple[dict, dict]:
    """(open, high, low, close, technical side) per bar; the ATR is 2 on every bar."""
    bars = pd.DataFrame(rows, columns=["open", "high", "low", "close", "side"])
    bars.insert(0, "timestamp", pd.bdate_range("2024-01-01", periods=len(rows)))
    bars["volume"] = 1e6
    signals = pd.DataFrame({"side": bars.pop("side"), "atr": 2.0})
    return {"X": SymbolHistory(bars, pd.DataFrame(index=bars.index), signals)}, {"X": bars}


def run(rows):
    histories, traded = market(rows)
    return _simulate(histories, traded, CONFIG, MODES["technical"], CASH)


def shares(price: float) -> float:
    """An entry of half the equity (5,000) at ``price`` plus slippage, floored to 1e-6."""
    return np.floor(5_000 / (price * (1 + SLIP)) * 1e6) / 1e6


FLAT = (100, 100.5, 99.5, 100, "none")


def test_entry_fills_at_the_next_open_and_the_target_inside_a_later_bar():
    r = run([
        (99, 100.5, 98.5, 100, "buy"),  # decided at the close: 100, stop 96, target 106
        (101, 103, 99, 102, "none"),  # filled at this open: 101 * 1.002 = 101.202
        (102, 107, 101, 104, "none"),  # the high reaches 106: sold there, 106 * 0.998 = 105.788
        FLAT,
    ])
    (t,) = r.trades
    assert (t.entry_price, t.exit_price, t.rule) == (pytest.approx(101.202), pytest.approx(105.788), "take_profit")
    assert t.decided == pd.Timestamp("2024-01-01") and t.entry == pd.Timestamp("2024-01-02") and t.exit == pd.Timestamp("2024-01-03")
    q = shares(101)
    assert t.quantity == q
    paid, got = q * 101.202 * 1.001, q * 105.788 * 0.999
    assert t.pnl == pytest.approx(got - paid) and t.ret == pytest.approx(105.788 * 0.999 / (101.202 * 1.001) - 1)
    assert r.equity.iat[-1] == pytest.approx(CASH + got - paid)
    # equity at each close: cash only, then marked at the close of 102, then the exit
    assert r.equity.iat[0] == CASH
    assert r.equity.iat[1] == pytest.approx(CASH - paid + q * 102)


def test_a_gap_through_the_stop_fills_at_the_open():
    r = run([
        (99, 100.5, 98.5, 100, "buy"),
        (99, 101, 98, 100, "none"),  # entry at 99 * 1.002 = 99.198; low 98 stays above the stop
        (95, 97, 94, 96.5, "none"),  # opens at 95, below the stop at 96: sold at the open, 95 * 0.998
        FLAT,
    ])
    (t,) = r.trades
    assert t.rule == "stop_loss" and t.exit_price == pytest.approx(94.81) and t.entry_price == pytest.approx(99.198)
    assert t.ret == pytest.approx(94.81 * 0.999 / (99.198 * 1.001) - 1)


def test_a_bar_touching_both_barriers_is_a_stop_as_in_the_labels():
    r = run([
        (99, 100.5, 98.5, 100, "buy"),
        (100, 107, 95, 101, "none"),  # the entry bar reaches both 106 and 96: the stop, at 96
        FLAT,
    ])
    (t,) = r.trades
    assert t.rule == "stop_loss" and t.exit_price == pytest.approx(96 * 0.998)
    assert t.entry == t.exit == pd.Timestamp("2024-01-02")


def test_the_time_limit_closes_at_the_close_three_bars_after_the_decision():
    r = run([
        (99, 100.5, 98.5, 100, "buy"),  # decision bar (t0)
        (100, 101, 99, 100.5, "none"),  # entry at 100.2
        (100.5, 102, 99, 101, "none"),
        (101, 103, 100, 102.5, "none"),  # t0 + 3: no barrier touched, out at the close of 102.5
        FLAT,
    ])
    (t,) = r.trades
    assert t.rule == "time_limit" and t.exit == pd.Timestamp("2024-01-04") and t.exit_price == pytest.approx(102.5 * 0.998)


def test_a_technical_sell_fills_at_the_next_open_and_a_last_order_never_fills():
    r = run([
        (99, 100.5, 98.5, 100, "buy"),
        (100, 101, 99, 100.5, "sell"),  # entry at 100.2, then a sell decided at this close
        (99.5, 100, 98, 99, "buy"),  # sold at this open: 99.5 * 0.998; a new entry decided at the close
        (99, 100, 98.5, 99.5, "none"),  # re-entered at 99 * 1.002
        (99.5, 100, 99, 99.8, "sell"),  # sell decided at the last close: no bar left to fill it
    ])
    first, = r.trades
    assert first.rule == "technical_sell" and first.exit_price == pytest.approx(99.5 * 0.998)
    assert first.exit == pd.Timestamp("2024-01-03") and first.entry_price == pytest.approx(100.2)
    assert r.exposure > 0 and r.equity.iat[-1] < CASH  # the second position is still held, marked at 99.8


def test_the_barrier_rule_is_the_labels_rule():
    """On random bars, the exit the rules take from each buy is the exit the triple-barrier
    label records: same bar, same barrier, same price."""
    rng = np.random.default_rng(3)
    n = 400
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = np.r_[100, close[:-1]] * np.exp(rng.normal(0, 0.01, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, n)))
    bars = pd.DataFrame({"timestamp": pd.bdate_range("2020-01-01", periods=n), "open": open_, "high": high, "low": low,
                         "close": close, "volume": 1.0})
    atr = np.full(n, 2.0)
    params = LabelParams(tp_mult=3.0, sl_mult=2.0, max_holding=8)
    events = pd.DataFrame({"index": np.arange(0, n - 10, 3), "side": 1})
    labels = triple_barrier(bars, events, atr, params)
    for row in labels.itertuples():
        stop, target = close[row.index] - 2.0 * 2, close[row.index] + 3.0 * 2
        exit_row, hit = None, None
        for j in range(row.index + 1, row.index + params.max_holding + 1):
            hit = barrier_hit(stop, target, Bar(open_[j], high[j], low[j], close[j]))
            if hit is not None:
                exit_row = j
                break
        if row.barrier == "time":
            assert hit is None
            continue
        assert bars["timestamp"].iat[exit_row] == row.t1
        assert hit.rule == {"sl": "stop_loss", "tp": "take_profit"}[row.barrier]
        assert hit.price / close[row.index] - 1 == pytest.approx(row.ret)
