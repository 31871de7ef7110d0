"""Performance statistics of an equity curve (pure functions, daily bars)."""
from __future__ import annotations

import numpy as np
import pandas as pd

TRADING_DAYS = 252


def max_drawdown(equity: np.ndarray) -> float:
    """Largest peak-to-trough fall, as a negative fraction (0 when it never fell)."""
    equity = np.asarray(equity, dtype=float)
    if len(equity) == 0:
        return 0.0
    peaks = np.maximum.accumulate(equity)
    return float(np.min(equity / peaks - 1.0))


def performance(equity: pd.Series, trade_returns: list[float], exposure: float) -> dict:
    """Total return, CAGR, Sharpe (annualised, zero risk-free rate), max drawdown, win rate..."""
    values = equity.to_numpy(dtype=float)
    daily = np.diff(values) / values[:-1] if len(values) > 1 else np.array([])
    years = max((equity.index[-1] - equity.index[0]).days / 365.25, 1e-9) if len(values) > 1 else 0.0
    total = float(values[-1] / values[0] - 1) if len(values) else 0.0
    std = float(np.std(daily, ddof=1)) if len(daily) > 1 else 0.0
    wins = [r for r in trade_returns if r > 0]
    return {
        "total_return": total,
        "cagr": float((1 + total) ** (1 / years) - 1) if years > 0 and total > -1 else None,
        "sharpe": float(np.mean(daily) / std * np.sqrt(TRADING_DAYS)) if std > 0 else None,
        "max_drawdown": max_drawdown(values),
        "win_rate": len(wins) / len(trade_returns) if trade_returns else None,
        # per trade, net of costs: whether a filter picks better trades, apart from trading less
        "mean_trade_return": float(np.mean(trade_returns)) if trade_returns else None,
        "mean_trade_return_ci95": _mean_ci95(trade_returns),
        "trades": len(trade_returns),
        "exposure": float(exposure),
        "final_equity": float(values[-1]) if len(values) else None,
    }


def _mean_ci95(values: list[float]) -> list[float] | None:
    """Normal-approximation 95% interval of a mean: whether a difference between modes is
    more than the luck of a few trades."""
    if len(values) < 2:
        return None
    x = np.asarray(values, dtype=float)
    half = 1.96 * float(np.std(x, ddof=1)) / np.sqrt(len(x))
    return [float(x.mean() - half), float(x.mean() + half)]
