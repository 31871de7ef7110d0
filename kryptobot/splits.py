"""Time-ordered cross-validation splits that cannot leak the future into training.

* :func:`purged_walk_forward` for labelled events (meta-labels): each label covers an
  interval ``[t0, t1]``; a training sample whose interval reaches into a test block
  would let the model see test-period prices, so it is purged, and an embargo drops
  the training samples just before the block as well.
* :func:`time_ordered_split` for sliding-window models (forecast, anomaly):
  train / validation / test in time order, separated by gaps.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kryptobot.errors import TrainingError


def _as_ns(values, name: str) -> np.ndarray:
    """Timestamps as int64 nanoseconds (any datetime resolution, index or array)."""
    stamps = pd.DatetimeIndex(pd.to_datetime(np.asarray(values)))
    if stamps.tz is not None:
        stamps = stamps.tz_convert("UTC").tz_localize(None)
    if stamps.hasnans:
        raise ValueError(f"{name} contains missing timestamps")
    return stamps.as_unit("ns").asi8


def _bar_period_ns(t0: np.ndarray, t1: np.ndarray) -> int:
    """The bar length: the smallest gap between distinct event timestamps (all are bar times)."""
    stamps = np.unique(np.concatenate([t0, t1]))
    gaps = np.diff(stamps)
    return int(gaps.min()) if len(gaps) else 0


def purged_walk_forward(
    t0,
    t1,
    n_splits: int = 5,
    embargo: pd.Timedelta | int | None = None,
    min_train_fraction: float = 0.3,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window walk-forward splits, purged and embargoed: ``[(train_idx, test_idx), ...]``.

    ``t0``/``t1``: each sample's entry time and the time its label became known (any
    order, several symbols may be interleaved). Indices refer to positions in ``t0``.

    The earliest ``min_train_fraction`` of samples (by t0) is only ever trained on; the
    rest is cut into ``n_splits`` consecutive test blocks of (nearly) equal size. For a
    block starting at time ``T``, train = samples earlier in t0 order with ``t1 < T``
    (purge) and ``t0 < T - embargo`` (embargo). So no test index is ever in train, and
    every training label is known before the first test entry.

    ``embargo``: a Timedelta, or an int number of bars (converted with the bar length
    seen in the data). It is never shorter than the longest label span
    ``max(t1 - t0)`` (the rule "embargo >= label horizon" stays true even when weekends
    stretch a horizon counted in bars); None means exactly that span.

    The result can be passed as ``cv=`` to scikit-learn (e.g. RFECV). Raises
    TrainingError (field "n_splits") when there are too few samples to test on, or
    when the embargo leaves a block with no training data.
    """
    t0_ns = _as_ns(t0, "t0")
    t1_ns = _as_ns(t1, "t1")
    n = len(t0_ns)
    if len(t1_ns) != n:
        raise ValueError(f"t0 ({n}) and t1 ({len(t1_ns)}) differ in length")
    if np.any(t1_ns < t0_ns):
        raise ValueError("t1 before t0: a label cannot be known before its entry")
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 1:
        raise ValueError(f"n_splits must be a positive integer, got {n_splits!r}")
    if not 0 < min_train_fraction < 1:
        raise ValueError(f"min_train_fraction must be in (0, 1), got {min_train_fraction!r}")

    longest_span = int((t1_ns - t0_ns).max()) if n else 0
    if embargo is None:
        embargo_ns = longest_span
    elif isinstance(embargo, (int, np.integer)) and not isinstance(embargo, bool):
        if embargo < 0:
            raise ValueError("embargo must be >= 0")
        embargo_ns = max(int(embargo) * _bar_period_ns(t0_ns, t1_ns), longest_span)
    else:
        embargo_td = pd.Timedelta(embargo)
        if embargo_td < pd.Timedelta(0):
            raise ValueError("embargo must be >= 0")
        embargo_ns = max(int(embargo_td.value), longest_span)

    order = np.argsort(t0_ns, kind="stable")
    t0_sorted, t1_sorted = t0_ns[order], t1_ns[order]
    first_test = math.ceil(min_train_fraction * n)
    if n - first_test < n_splits:
        raise TrainingError(
            f"{n} samples leave {n - first_test} for testing, fewer than n_splits={n_splits} test blocks",
            field="n_splits",
        )
    splits = []
    for block in np.array_split(np.arange(first_test, n), n_splits):
        start = t0_sorted[block[0]]
        before = np.arange(block[0])
        keep = (t1_sorted[before] < start) & (t0_sorted[before] < start - embargo_ns)
        train = before[keep]
        if len(train) == 0:
            raise TrainingError(
                f"no training samples are left before the test block starting {pd.Timestamp(start)} "
                f"after purging and an embargo of {pd.Timedelta(embargo_ns)}: use fewer splits or more data",
                field="n_splits",
            )
        splits.append((np.sort(order[train]), np.sort(order[block])))
    return splits


def time_ordered_split(
    n: int,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    gap: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation / test index arrays over ``n`` time-ordered samples, in that order.

    ``gap`` samples are left out between train and validation and between validation
    and test. For sliding-window samples (sample i reads inputs i-window+1..i and a
    target h steps ahead) use ``gap >= window + h - 1`` so no two parts share a bar.
    The fractions are of the ``n - 2 * gap`` samples that remain.
    Raises TrainingError (field "data") when a part would be empty.
    """
    if len(fractions) != 3 or any(f <= 0 for f in fractions):
        raise ValueError(f"fractions must be three positive numbers, got {fractions!r}")
    if gap < 0:
        raise ValueError("gap must be >= 0")
    total = float(sum(fractions))
    usable = n - 2 * gap
    n_train = int(usable * fractions[0] / total)
    n_val = int(usable * fractions[1] / total)
    n_test = usable - n_train - n_val
    if min(n_train, n_val, n_test) < 1:
        raise TrainingError(
            f"{n} samples are too few for train/validation/test parts {fractions} with gaps of {gap}",
            field="data",
        )
    train = np.arange(0, n_train)
    val = np.arange(n_train + gap, n_train + gap + n_val)
    test = np.arange(n_train + 2 * gap + n_val, n)
    return train, val, test
