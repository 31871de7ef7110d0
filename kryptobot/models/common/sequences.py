"""Scale-free per-bar inputs and the windowing both neural models share.

The forecaster reads :func:`log_ratio_features` directly; the anomaly detector builds
its own regime-relative features (:mod:`kryptobot.models.anomaly.data`) but scales
and windows them with the same :class:`FeatureScaler` and :func:`windows`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: per-bar log ratios: no price level or volume unit leaks in
LOG_RATIO_FEATURES = ("log_return", "log_range", "body", "gap", "volume_change")


def log_ratio_features(bars: pd.DataFrame) -> tuple[np.ndarray, pd.Series]:
    """``(len(bars) - 1, len(LOG_RATIO_FEATURES))`` features and their timestamps.

    The first bar has no previous close, so it only serves as the reference of the second.
    ``bars`` must be validated (prices > 0, volume >= 0, sorted).
    """
    o, h, l, c, v = (bars[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume"))
    prev_close = c[:-1]
    X = np.column_stack(
        [
            np.log(c[1:] / prev_close),
            np.log(h[1:] / l[1:]),
            np.log(c[1:] / o[1:]),
            np.log(o[1:] / prev_close),
            np.log1p(v[1:]) - np.log1p(v[:-1]),
        ]
    )
    return X, bars["timestamp"].iloc[1:].reset_index(drop=True)


@dataclass(frozen=True)
class FeatureScaler:
    """Per-feature standardisation; fitted on training rows only (no look-ahead)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> "FeatureScaler":
        scale = X.std(axis=0)
        return cls(X.mean(axis=0), np.where(scale > 1e-12, scale, 1.0))

    def transform(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean) / self.scale).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureScaler":
        return cls(np.asarray(data["mean"], dtype=np.float64), np.asarray(data["scale"], dtype=np.float64))


def windows(X: np.ndarray, window: int) -> np.ndarray:
    """Sliding windows ``(len(X) - window + 1, window, features)``; window i ends on row i + window - 1."""
    return np.lib.stride_tricks.sliding_window_view(X, window, axis=0).transpose(0, 2, 1)
