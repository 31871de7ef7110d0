"""Backtest metrics on small curves whose numbers are known by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kryptobot.trading.metrics import longest_drawdown, mean_difference, monthly_returns, performance, profit_factor

DAYS = pd.bdate_range("2024-01-29", periods=8)  # Jan 29 .. Feb 7: two calendar months
CURVE = pd.Series([100, 110, 99, 104.5, 99, 121, 115, 118.0], index=DAYS)


def test_ratios_are_the_standard_definitions_annualised_by_the_calendar():
    r = CURVE.pct_change().dropna().to_numpy()
    for bars_per_year in (252, 365):
        stats = performance(CURVE, [], 1.0, bars_per_year)
        assert stats["total_return"] == pytest.approx(0.18)
        assert stats["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(bars_per_year))
        downside = np.sqrt(np.mean(np.minimum(r, 0) ** 2))
        assert stats["sortino"] == pytest.approx(r.mean() / downside * np.sqrt(bars_per_year))
        cagr = 1.18 ** (bars_per_year / 7) - 1  # 7 daily returns
        assert stats["cagr"] == pytest.approx(cagr)
        assert stats["max_drawdown"] == pytest.approx(99 / 110 - 1)
        assert stats["calmar"] == pytest.approx(cagr / (1 - 99 / 110))


def test_drawdown_duration_runs_from_the_peak_to_the_bar_that_regains_it():
    # 110 on Jan 30, under water until 121 on Feb 5: 4 bars, 6 calendar days; then 115, 118 to the end
    assert longest_drawdown(CURVE) == (4, 6)
    assert longest_drawdown(pd.Series([1.0, 2.0, 3.0], index=DAYS[:3])) == (0, 0)
    # never recovered: to the last bar
    assert longest_drawdown(pd.Series([1.0, 3.0, 2.0, 2.5, 2.9], index=DAYS[:5])) == (3, 3)


def test_monthly_returns_compound_within_each_month():
    months = monthly_returns(CURVE.pct_change().dropna())
    assert months == pytest.approx({"2024-01": 99 / 100 - 1, "2024-02": 118 / 99 - 1})


def test_trade_statistics():
    assert profit_factor([30.0, -10.0, 20.0, -15.0]) == pytest.approx(50 / 25)
    assert profit_factor([5.0]) is None  # no losing trade: undefined, not infinite
    stats = performance(CURVE, [0.10, -0.05, 0.02], 0.4, trade_pnl=[10.0, -5.0, 2.0])
    assert stats["win_rate"] == pytest.approx(2 / 3) and stats["profit_factor"] == pytest.approx(12 / 5)
    low, high = stats["mean_trade_return_ci95"]
    half = 1.96 * np.std([0.10, -0.05, 0.02], ddof=1) / np.sqrt(3)
    assert (low, high) == pytest.approx((0.07 / 3 - half, 0.07 / 3 + half))


def test_undefined_numbers_are_none_not_nan():
    flat = performance(pd.Series([100.0] * 5, index=DAYS[:5]), [], 0.0)
    assert flat["sharpe"] is None and flat["sortino"] is None and flat["calmar"] is None
    rising = performance(pd.Series([100.0, 101, 102, 103], index=DAYS[:4]), [], 1.0)
    assert rising["sortino"] is None and rising["max_drawdown"] == 0.0  # no losing bar, no drawdown


def test_a_difference_of_means_says_whether_it_is_more_than_luck():
    rng = np.random.default_rng(0)
    same = mean_difference(rng.normal(0, 0.02, 200), rng.normal(0, 0.02, 200))
    assert same["verdict"] == "no evidence" and same["ci95"][0] < 0 < same["ci95"][1]
    better = mean_difference(rng.normal(0.01, 0.02, 200), rng.normal(0, 0.02, 200))
    assert better["verdict"] == "better"
    assert mean_difference([0.1], [0.0, 0.1]) is None
