"""Performance statistics of an equity curve."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kryptobot.trading.metrics import max_drawdown, performance


def test_max_drawdown_is_the_largest_peak_to_trough_fall():
    assert max_drawdown(np.array([100, 120, 90, 130, 65, 140])) == pytest.approx(65 / 130 - 1)
    assert max_drawdown(np.array([1, 2, 3])) == 0.0


def test_performance_of_a_steady_doubling_over_two_years():
    days = pd.date_range("2020-01-01", "2022-01-01", freq="D")
    equity = pd.Series(100 * 2 ** (np.arange(len(days)) / (len(days) - 1)), index=days)
    # a bar every calendar day: a 24/7 market's 365 bars a year (the default is 252 exchange days)
    stats = performance(equity, trade_returns=[0.1, -0.05, 0.2], exposure=0.5, periods_per_year=365)
    assert stats["total_return"] == pytest.approx(1.0)
    assert stats["cagr"] == pytest.approx(2 ** (365 / 731) - 1, rel=1e-3)
    assert stats["sharpe"] is None or stats["sharpe"] > 100  # no volatility: no finite Sharpe worth the name
    assert stats["max_drawdown"] == 0.0
    assert stats["win_rate"] == pytest.approx(2 / 3) and stats["trades"] == 3 and stats["exposure"] == 0.5
    assert stats["mean_trade_return"] == pytest.approx(0.25 / 3)
    low, high = stats["mean_trade_return_ci95"]
    assert low < 0.25 / 3 < high and high - low == pytest.approx(2 * 1.96 * np.std([0.1, -0.05, 0.2], ddof=1) / np.sqrt(3))


def test_sharpe_of_a_random_walk_is_near_zero():
    rng = np.random.default_rng(0)
    days = pd.bdate_range("2010-01-01", periods=5000)
    equity = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days)))), index=days)
    assert abs(performance(equity, [], 1.0)["sharpe"]) < 0.5
