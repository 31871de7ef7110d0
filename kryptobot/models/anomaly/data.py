"""The anomaly detector's input pipeline and its event-matching rule.

The same code builds windows at train and serve time: bar features relative to the
symbol's own long-run behaviour (so one model fits symbols at any price level and
volatility), a standard scaler fitted on the training part only and saved with the
version, and sliding windows of ``window`` bars (:mod:`kryptobot.models.common.sequences`).

The matching rule that scores detections against ground truth (planted anomalies, or
dated market shocks) lives here too, so the training report, the tests and the
baselines all use one definition.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

#: per-bar inputs, each relative to the same symbol's trailing LOOKBACK bars, so no price
#: level, volume unit or volatility level leaks in: a 3% move is ordinary for one stock
#: and a shock for another. The true range (high/low extended to the previous close)
#: carries the overnight gap and the intraday swing in one number.
FEATURES = ("return_scaled", "true_range_ratio", "volume_ratio")
PIPELINE_VERSION = 3
#: bars of history that set a symbol's scales (about half a trading year of daily bars).
#: Long on purpose: against the last 20 bars (pipeline v2) the medians had adapted to a
#: crash within days, so its second week looked ordinary; half a year of medians moves
#: only once most of those bars are turbulent.
LOOKBACK = 120
_TINY = 1e-9  # keeps a flat bar (high == low == previous close) finite
#: the smallest typical move and range (log units, 0.01%): a symbol that barely trades has
#: medians near 0, and dividing by them would turn every tick into a shock
_MIN_SCALE = 1e-4
_CLIP = 50.0


def bar_features(bars: pd.DataFrame) -> tuple[np.ndarray, pd.Series]:
    """``(len(bars) - LOOKBACK - 1, len(FEATURES))`` features and their timestamps.

    Bar t is described against the medians of bars t-LOOKBACK .. t-1 (never itself, or
    a shock would dampen its own score, and never later bars): its close-to-close log
    return in units of the median absolute return, its log true range over the median
    true range, and its log volume over the median log volume. ``bars`` must be
    validated (prices > 0, volume >= 0, sorted).
    """
    h, l, c, v = (bars[k].to_numpy(dtype=np.float64) for k in ("high", "low", "close", "volume"))
    prev = c[:-1]
    ret = np.log(c[1:] / prev)
    true_range = np.log(np.maximum(h[1:], prev) / np.minimum(l[1:], prev))
    log_volume = np.log1p(v[1:])
    X = np.column_stack(
        [
            ret / np.maximum(_trailing_median(np.abs(ret)), _MIN_SCALE),
            np.log((true_range + _TINY) / np.maximum(_trailing_median(true_range), _MIN_SCALE)),
            log_volume - _trailing_median(log_volume),
        ]
    )[LOOKBACK:]
    return np.clip(X, -_CLIP, _CLIP), bars["timestamp"].iloc[LOOKBACK + 1:].reset_index(drop=True)


def _trailing_median(x: np.ndarray) -> np.ndarray:
    """Median of the LOOKBACK values before each position (NaN where there are fewer)."""
    out = np.full(len(x), np.nan)
    if len(x) > LOOKBACK:  # numpy, not pandas rolling: this runs on every /predict
        out[LOOKBACK:] = np.median(np.lib.stride_tricks.sliding_window_view(x[:-1], LOOKBACK), axis=1)
    return out


def min_bars(window: int) -> int:
    """Bars needed for one window: the window, its first bar's LOOKBACK history and one reference close."""
    return window + LOOKBACK + 1


def window_end_bars(window: int) -> int:
    """Index into the bars of the first window's last bar (window i ends on bar i + this)."""
    return min_bars(window) - 1


def window_errors(windows_: np.ndarray, reconstruction: np.ndarray, score_bars: int | None) -> np.ndarray:
    """Mean squared reconstruction error of each window over its last ``score_bars`` bars.

    The autoencoder reconstructs the whole window, but only the most recent bars score
    it: averaged over all bars, one shocked bar is diluted ``window``-fold and keeps the
    window anomalous for ``window`` bars after the event, which tells a trader little
    about *now*. ``None`` scores the whole window.
    """
    tail = slice(None) if score_bars is None else slice(-score_bars, None)
    return np.mean((windows_[:, tail] - reconstruction[:, tail]) ** 2, axis=(1, 2))


# ---- matching detections to events ---------------------------------------------------
def locate_events(window_ends: pd.Series, event_times) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Position (into ``window_ends``' timeline) of each event's bar, and those events' times.

    Events whose bar is not a window end (outside the range, in the warm-up, or not a
    trading day of this series) are dropped; both results are in time order.
    """
    ends = pd.DatetimeIndex(pd.to_datetime(window_ends))
    events = pd.DatetimeIndex(pd.to_datetime(list(event_times))).sort_values()
    pos = ends.get_indexer(events)
    return pos[pos >= 0], events[pos >= 0]


def detection_scores(flags: np.ndarray, event_pos: np.ndarray, match_bars: int) -> dict:
    """Counts for precision, recall and detection delay of window flags against events:

    * an **event** at window-end position ``p`` is *detected* if any window ending at
      ``p .. p + match_bars`` is flagged (recall = detected events / events); its
      *delay* is the number of bars from ``p`` to the first such flag;
    * a **flag** on the window ending at ``q`` is *correct* if some event lies at
      ``q - match_bars .. q``, i.e. among the window's last ``match_bars + 1`` bars
      (precision = correct flags / flags).

    Positions are over one symbol's windows; events before the first window end are
    not scoreable and must be dropped by the caller (``locate_events`` does).
    ``delays`` has one entry per event, in ``event_pos`` order (None: missed).
    """
    flags = np.asarray(flags, dtype=bool)
    n = len(flags)
    near_event = np.zeros(n, dtype=bool)
    delays: list[int | None] = []
    for p in event_pos:
        span = slice(p, min(n, p + match_bars + 1))
        near_event[span] = True
        hits = np.flatnonzero(flags[span])
        delays.append(int(hits[0]) if len(hits) else None)
    n_flags = int(flags.sum())
    correct = int((flags & near_event).sum())
    return {
        "events": int(len(event_pos)),
        "detected_events": sum(d is not None for d in delays),
        "flags": n_flags,
        "correct_flags": correct,
        "windows": n,
        "windows_near_events": int(near_event.sum()),
        "delays": delays,
    }


COUNTS = ("events", "detected_events", "flags", "correct_flags", "windows", "windows_near_events")


def summarize_detection(counts: list[dict], match_bars: int) -> dict:
    """Pool per-symbol counts into precision / recall / F1 and delay, next to what chance would score.

    Chance is a detector flagging the same fraction of windows at random: its expected
    recall is ``1 - (1 - flag_rate) ** (match_bars + 1)`` and its expected precision the
    share of windows near an event.
    """
    total = {k: sum(c[k] for c in counts) for k in COUNTS}
    delays = [d for c in counts for d in c["delays"] if d is not None]
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
        "delay_bars": {
            "mean": float(np.mean(delays)) if delays else None,
            "median": float(np.median(delays)) if delays else None,
            "detected_at_delay": [delays.count(d) for d in range(match_bars + 1)],
        },
        "chance": {"precision": chance_precision, "recall": chance_recall, "f1": _f1(chance_precision, chance_recall)},
    }


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
