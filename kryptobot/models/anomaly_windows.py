"""The anomaly detector's input pipeline and its event-matching rule.

The same code builds windows at train and serve time: scale-free bar features (so one
model fits symbols at any price level), a standard scaler fitted on the training part
only and saved with the version, and sliding windows of ``window`` bars.

The matching rule that scores detections against planted ground truth lives here too,
so the training report, the tests and the baseline all use one definition.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: per-bar inputs; every one is a log ratio, so no price level or volume unit leaks in
FEATURES = ("log_return", "log_range", "body", "gap", "volume_change")
PIPELINE_VERSION = 1


def bar_features(bars: pd.DataFrame) -> tuple[np.ndarray, pd.Series]:
    """``(len(bars) - 1, len(FEATURES))`` features and their timestamps.

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


def min_bars(window: int) -> int:
    """Bars needed for one window (one extra bar is the first return's reference)."""
    return window + 1


def windows(X: np.ndarray, window: int) -> np.ndarray:
    """Sliding windows ``(len(X) - window + 1, window, features)``; window i ends on row i + window - 1."""
    return np.lib.stride_tricks.sliding_window_view(X, window, axis=0).transpose(0, 2, 1)


def window_errors(windows_: np.ndarray, reconstruction: np.ndarray, score_bars: int | None) -> np.ndarray:
    """Mean squared reconstruction error of each window over its last ``score_bars`` bars.

    The autoencoder reconstructs the whole window, but only the most recent bars score
    it: averaged over all bars, one shocked bar is diluted ``window``-fold and keeps the
    window anomalous for ``window`` bars after the event, which tells a trader little
    about *now*. ``None`` scores the whole window.
    """
    tail = slice(None) if score_bars is None else slice(-score_bars, None)
    return np.mean((windows_[:, tail] - reconstruction[:, tail]) ** 2, axis=(1, 2))


# ---- matching detections to planted events ---------------------------------------------
def event_positions(window_ends: pd.Series, event_times) -> np.ndarray:
    """Index (into ``window_ends``' timeline) of each event's bar; events outside it are dropped."""
    ends = pd.DatetimeIndex(pd.to_datetime(window_ends))
    events = pd.DatetimeIndex(pd.to_datetime(list(event_times)))
    pos = ends.get_indexer(events)
    return np.sort(pos[pos >= 0])


def detection_scores(flags: np.ndarray, event_pos: np.ndarray, match_bars: int) -> dict:
    """Precision, recall and F1 of window flags against events, with the matching rule:

    * an **event** at window-end position ``p`` is *detected* if any window ending at
      ``p .. p + match_bars`` is flagged (recall = detected events / events);
    * a **flag** on the window ending at ``q`` is *correct* if some event lies at
      ``q - match_bars .. q``, i.e. among the window's last ``match_bars + 1`` bars
      (precision = correct flags / flags).

    Positions are over one symbol's windows; events before the first window end are
    not scoreable and must be dropped by the caller (``event_positions`` does).
    """
    flags = np.asarray(flags, dtype=bool)
    n = len(flags)
    near_event = np.zeros(n, dtype=bool)
    detected = 0
    for p in event_pos:
        span = slice(p, min(n, p + match_bars + 1))
        near_event[span] = True
        detected += bool(flags[span].any())
    n_flags = int(flags.sum())
    correct = int((flags & near_event).sum())
    return {
        "events": int(len(event_pos)),
        "detected_events": int(detected),
        "flags": n_flags,
        "correct_flags": correct,
        "windows": n,
        "windows_near_events": int(near_event.sum()),
    }


COUNTS = ("events", "detected_events", "flags", "correct_flags", "windows", "windows_near_events")


def summarize_detection(counts: list[dict], match_bars: int) -> dict:
    """Pool per-symbol counts into precision / recall / F1, next to what chance would score.

    Chance is a detector flagging the same fraction of windows at random: its expected
    recall is ``1 - (1 - flag_rate) ** (match_bars + 1)`` and its expected precision the
    share of windows near an event.
    """
    total = {k: sum(c[k] for c in counts) for k in COUNTS}
    precision = total["correct_flags"] / total["flags"] if total["flags"] else 0.0
    recall = total["detected_events"] / total["events"] if total["events"] else 0.0
    flag_rate = total["flags"] / total["windows"] if total["windows"] else 0.0
    chance_recall = 1 - (1 - flag_rate) ** (match_bars + 1)
    chance_precision = total["windows_near_events"] / total["windows"] if total["windows"] else 0.0
    return {
        **total,
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "flag_rate": flag_rate,
        "chance": {"precision": chance_precision, "recall": chance_recall, "f1": _f1(chance_precision, chance_recall)},
    }


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
