"""Threshold sweeps on out-of-sample scores, and the "auto" threshold they resolve to.

A model's probabilities are only useful at a threshold that keeps the trades worth
making, and which one that is can only be read off out-of-sample predictions. Each
classifier version (signal, ensemble) sweeps its walk-forward probabilities, and each
forecaster its test-block confidence, over a fixed grid (:func:`sweep`): how many signals
a threshold keeps, how often the kept ones were right, and the mean realised return of
the kept trades next to that of all trades, with a 95% interval.

A threshold set to ``"auto"`` in the trader's settings resolves, from the active
version's sweep, by one stated objective (:data:`OBJECTIVE`, :func:`choose`). Numpy only:
the trader imports this without scikit-learn.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

#: the signal and ensemble probabilities swept (the trader's ``min_confidence_threshold``
#: and ``confidence_threshold`` live here: real-data probabilities sit near 0.45-0.56)
CLASSIFIER_GRID = tuple(round(0.40 + 0.02 * i, 2) for i in range(16))  # 0.40 .. 0.70
#: the forecasters' calibrated direction confidence (>= 0.5 by construction)
FORECAST_GRID = tuple(round(0.50 + 0.02 * i, 2) for i in range(21))  # 0.50 .. 0.90
#: the least share of signals an "auto" threshold may keep: below it a "better" mean
#: rests on a handful of trades
MIN_KEPT_SHARE = 0.2
#: what an "auto" forecast confidence resolves to when no grid threshold qualifies: a
#: forecaster that never showed an edge never counts as confident, so it neither vetoes
#: nor sizes entries
FORECAST_NEVER = 1.0

OBJECTIVE = (
    f"the threshold whose kept trades have the highest mean realised return, among those keeping at least "
    f"{MIN_KEPT_SHARE:.0%} of the signals whose 95% interval's lower bound lies above the mean of all trades; "
    "when none qualifies: the fallback (classifiers: the lowest threshold swept, so the model filters nothing "
    f"it has not shown it can; forecasts: {FORECAST_NEVER:g}, a forecast that never counts as confident)"
)


def mean_ci95(values) -> tuple[float | None, list[float] | None]:
    """Mean and its normal-approximation 95% interval (None with fewer than 2 values)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return None, None
    mean = float(x.mean())
    if len(x) < 2:
        return mean, None
    half = 1.96 * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, [mean - half, mean + half]


def _summary(returns: np.ndarray, correct: np.ndarray) -> dict:
    mean, ci = mean_ci95(returns)
    return {
        "kept": int(len(returns)),
        "precision": float(correct.mean()) if len(correct) else None,
        "mean_return": mean,
        "ci95": ci,
    }


def sweep(scores, returns, correct, grid: Sequence[float], fallback: float) -> dict:
    """Every threshold of ``grid`` applied to out-of-sample ``scores`` (keep = score >= threshold).

    ``returns``: each sample's realised return (what following it earned); ``correct``:
    1 where it was right (the label, or the forecast's direction). Rows: ``threshold``,
    ``kept``, ``kept_share``, ``precision`` (share right among the kept), ``mean_return``
    and ``ci95`` of the kept; ``all`` is the same for every sample. ``auto`` is
    :func:`choose`'s answer with ``fallback``.
    """
    s = np.asarray(scores, dtype=np.float64)
    r = np.asarray(returns, dtype=np.float64)
    c = np.asarray(correct, dtype=np.float64)
    if not len(s) == len(r) == len(c):
        raise ValueError(f"scores ({len(s)}), returns ({len(r)}) and correct ({len(c)}) differ in length")
    finite = np.isfinite(s) & np.isfinite(r)
    s, r, c = s[finite], r[finite], c[finite]
    rows = []
    for t in grid:
        keep = s >= t
        rows.append({"threshold": float(t), "kept_share": float(keep.mean()) if len(s) else 0.0, **_summary(r[keep], c[keep])})
    out = {"n": int(len(s)), "all": _summary(r, c), "rows": rows, "fallback": float(fallback)}
    out["auto"] = dict(zip(("threshold", "reason"), choose(out)))
    return out


def choose(result: Mapping, min_kept_share: float = MIN_KEPT_SHARE) -> tuple[float, str]:
    """The threshold :data:`OBJECTIVE` picks from one :func:`sweep` result, and why."""
    fallback = float(result["fallback"])
    everything = result["all"]["mean_return"]
    if everything is None:
        return fallback, f"no out-of-sample samples: fallback {fallback:g}"
    qualified = [
        row for row in result["rows"]
        if row["kept_share"] >= min_kept_share and row["ci95"] is not None and row["ci95"][0] > everything
    ]
    if not qualified:
        return fallback, (
            f"no threshold keeping >= {min_kept_share:.0%} of {result['n']} signals has a 95% interval above the "
            f"all-trades mean {everything:.5f}: fallback {fallback:g}"
        )
    best = max(qualified, key=lambda row: (row["mean_return"], -row["threshold"]))
    return float(best["threshold"]), (
        f"kept {best['kept_share']:.0%} of {result['n']} signals, mean return {best['mean_return']:.5f} "
        f"(95% CI {best['ci95'][0]:.5f}..{best['ci95'][1]:.5f}) vs {everything:.5f} for all"
    )


def resolve(setting: float | str, result: Mapping | None, fallback: float) -> tuple[float, str]:
    """A settings threshold as a number: itself when fixed, else :func:`choose` on the active
    version's sweep ``result`` (None: the version reports none, e.g. trained before sweeps
    existed, and ``fallback`` applies)."""
    if setting != "auto":
        return float(setting), "fixed in the settings"
    if result is None:
        return float(fallback), f"the version reports no threshold sweep: fallback {fallback:g}"
    return choose(result)


def classifier_threshold(setting: float | str, metrics: Mapping | None, side: str = "buy") -> tuple[float, str]:
    """A signal or ensemble threshold setting as a number, from a version's classifier
    ``metrics`` (the signal version's ``metrics``, the ensemble's ``metrics.ensemble``),
    whose ``threshold_sweep.sides.<side>`` is a :func:`sweep` result."""
    sides = ((metrics or {}).get("threshold_sweep") or {}).get("sides") or {}
    return resolve(setting, sides.get(side), CLASSIFIER_GRID[0])


def forecast_threshold(setting: float | str, metrics: Mapping | None) -> tuple[float, str]:
    """A forecast confidence setting as a number, from a forecaster version's ``metrics``
    (``confidence_sweep`` is a :func:`sweep` result)."""
    return resolve(setting, (metrics or {}).get("confidence_sweep"), FORECAST_NEVER)
