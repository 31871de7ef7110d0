"""Performance statistics of an equity curve (pure functions).

The ratios come from empyrical (``empyrical-reloaded``, the maintained fork of
Quantopian's library) so they are the standard definitions, annualised with the market's
bars per year (:func:`kryptobot.data.timeframes.periods_per_year`: 252 for daily stock
bars, 365 for a 24/7 market). What it does not have (drawdown duration, profit factor,
the interval of a mean) is here. An undefined number (a flat curve's Sharpe, a Sortino
without losing bars) is None, never NaN or infinity.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from kryptobot.thresholds import mean_ci95

TRADING_DAYS = 252


def _empyrical():
    import empyrical  # scipy.stats underneath: imported by the first backtest, not by every trader start

    return empyrical


def max_drawdown(equity: np.ndarray) -> float:
    """Largest peak-to-trough fall, as a negative fraction (0 when it never fell)."""
    equity = np.asarray(equity, dtype=float)
    if len(equity) == 0:
        return 0.0
    peaks = np.maximum.accumulate(equity)
    return float(np.min(equity / peaks - 1.0))


def longest_drawdown(equity: pd.Series) -> tuple[int, int]:
    """(bars, calendar days) of the longest stretch below a previous peak: from the peak to
    the bar that regained it, or to the last bar when it never did."""
    values = equity.to_numpy(dtype=float)
    if len(values) < 2:
        return 0, 0
    peaks = np.flatnonzero(values >= np.maximum.accumulate(values))  # bars at the running peak
    ends = np.append(peaks[1:], len(values) - 1)  # the bar that regained it, or the last bar
    under = ends - peaks
    under[:-1][under[:-1] == 1] = 0  # the next bar was a new peak: no drawdown in between
    longest = int(np.argmax(under))
    if under[longest] == 0:
        return 0, 0
    return int(under[longest]), int((equity.index[ends[longest]] - equity.index[peaks[longest]]).days)


def profit_factor(pnl: Sequence[float]) -> float | None:
    """Gross profit over gross loss of the closed trades (None without a losing trade)."""
    x = np.asarray(pnl, dtype=float)
    loss = -x[x < 0].sum()
    return float(x[x > 0].sum() / loss) if loss > 0 else None


def monthly_returns(returns: pd.Series) -> dict[str, float]:
    """Compounded return of each calendar month, ``{"2023-01": 0.012, ...}``."""
    if returns.empty:
        return {}
    by_month = _empyrical().aggregate_returns(returns, "monthly")
    return {f"{year:04d}-{month:02d}": float(r) for (year, month), r in by_month.items()}


def performance(equity: pd.Series, trade_returns: Sequence[float], exposure: float,
                periods_per_year: float = TRADING_DAYS, trade_pnl: Sequence[float] | None = None) -> dict:
    """One equity curve summarised: returns and their risk, drawdowns, and the trades.

    ``equity``: the value at each bar's close (DatetimeIndex); ``trade_returns`` /
    ``trade_pnl``: each closed trade's return and profit, net of costs; ``exposure``: the
    mean fraction of equity invested.
    """
    values = equity.to_numpy(dtype=float)
    returns = equity.pct_change().iloc[1:] if len(values) > 1 else pd.Series(dtype=float)
    total = float(values[-1] / values[0] - 1) if len(values) else 0.0
    bars, days = longest_drawdown(equity)
    wins = [r for r in trade_returns if r > 0]
    empyrical, annual = _empyrical(), dict(annualization=periods_per_year)
    return {
        "total_return": total,
        "cagr": _number(empyrical.annual_return(returns, **annual)) if len(returns) and total > -1 else None,
        "annual_volatility": _number(empyrical.annual_volatility(returns, **annual)) if len(returns) > 1 else None,
        "sharpe": _ratio(empyrical.sharpe_ratio, returns, **annual),
        "sortino": _ratio(empyrical.sortino_ratio, returns, **annual),
        "calmar": _ratio(empyrical.calmar_ratio, returns, **annual),
        "max_drawdown": max_drawdown(values),
        "max_drawdown_duration_bars": bars,
        "max_drawdown_duration_days": days,
        "win_rate": len(wins) / len(trade_returns) if trade_returns else None,
        "profit_factor": profit_factor(trade_pnl) if trade_pnl else None,
        # per trade, net of costs: whether a filter picks better trades, apart from trading less
        "mean_trade_return": float(np.mean(trade_returns)) if trade_returns else None,
        "mean_trade_return_ci95": mean_ci95(trade_returns)[1],
        "trades": len(trade_returns),
        "exposure": float(exposure),
        "final_equity": float(values[-1]) if len(values) else None,
        "periods_per_year": float(periods_per_year),
        "monthly_returns": monthly_returns(returns),
    }


def mean_difference(a: Sequence[float], b: Sequence[float]) -> dict | None:
    """Mean of ``a`` minus mean of ``b`` with its normal-approximation 95% interval (Welch's
    standard error), and what it says: ``better`` or ``worse`` when the interval excludes 0,
    else ``no evidence``. None when either side has fewer than two values."""
    if len(a) < 2 or len(b) < 2:
        return None
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(x.mean() - y.mean())
    half = 1.96 * math.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y))
    low, high = diff - half, diff + half
    return {"difference": diff, "ci95": [low, high],
            "verdict": "better" if low > 0 else "worse" if high < 0 else "no evidence"}


def _number(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _ratio(fn, returns: pd.Series, **kwargs) -> float | None:
    if len(returns) < 2 or not np.any(returns.to_numpy() != 0):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return _number(fn(returns, **kwargs))
