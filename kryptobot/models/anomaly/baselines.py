"""What the autoencoder is measured against, and the rule that makes the comparison fair.

* a rolling **z-score of the absolute log return** (no model: how unusual today's move is
  against the mean and spread of the previous ``lookback`` moves), the classic shock
  detector;
* an **IsolationForest** fitted on the same scaled training windows as the autoencoder;
* **feature magnitude** (no model: the mean squared scaled feature of the scored bars).

Every detector is compared at the **same flag rate**: on each symbol's scored windows,
a baseline flags exactly as many windows as the autoencoder flagged there (its highest
scores), so a detector cannot look better by flagging more.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

#: z-score lookbacks reported next to the main one, so the comparison does not rest on one choice
ZSCORE_LOOKBACKS = (20, 60, 120, 250)

DESCRIPTIONS = {
    "zscore": "no model: |log return| of the window's last bar minus the mean of the previous {lookback} bars' "
              "|log return|, over their standard deviation",
    "isolation_forest": "scikit-learn IsolationForest (200 trees) fitted on the same scaled training windows' scored bars",
    "feature_magnitude": "no model: mean squared scaled feature of the same bars (how far from typical)",
}


def abs_return_zscore(bars: pd.DataFrame, lookback: int) -> np.ndarray:
    """Per bar: ``(|r_t| - mean(|r|)) / std(|r|)`` over bars ``t-lookback .. t-1`` (NaN before that).

    ``r`` is the close-to-close log return; only earlier bars set the scale, as for the
    autoencoder's inputs.
    """
    absret = pd.Series(np.r_[np.nan, np.abs(np.diff(np.log(bars["close"].to_numpy(dtype=np.float64))))])
    past = absret.shift(1).rolling(lookback, min_periods=lookback)
    std = past.std().to_numpy()
    return (absret.to_numpy() - past.mean().to_numpy()) / np.where(std > 0, std, np.nan)


def window_scorers(train: np.ndarray, score_bars: int | None, window: int, seed: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Scores (higher = more anomalous) of the window-based baselines, fitted on ``train`` windows."""
    from sklearn.ensemble import IsolationForest

    bars = score_bars or window

    def scored(batch: np.ndarray) -> np.ndarray:
        return batch[:, -bars:].reshape(len(batch), -1)

    forest = IsolationForest(n_estimators=200, random_state=seed, n_jobs=1)
    forest.fit(scored(train))
    return {
        "isolation_forest": lambda b: -forest.score_samples(scored(b)),
        "feature_magnitude": lambda b: np.mean(scored(b) ** 2, axis=1),
    }


def flags_like(scores: np.ndarray, n_flags: int) -> np.ndarray:
    """Flag the ``n_flags`` highest finite ``scores`` (the same flag rate as another detector)."""
    scores = np.asarray(scores, dtype=np.float64)
    flags = np.zeros(len(scores), dtype=bool)
    finite = np.flatnonzero(np.isfinite(scores))
    if n_flags > 0 and len(finite):
        order = finite[np.argsort(scores[finite], kind="stable")]
        flags[order[-n_flags:]] = True
    return flags
