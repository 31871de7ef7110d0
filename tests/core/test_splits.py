"""Purged walk-forward and time-ordered splits never let the future into training."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kryptobot.errors import TrainingError
from kryptobot.splits import purged_walk_forward, time_ordered_split


def events(n_bars: int = 600, symbols: int = 1, horizon: int = 10, seed: int = 0, shuffle: bool = False):
    """Random signal events on a daily clock, labels known 1..horizon bars later."""
    rng = np.random.default_rng(seed)
    clock = pd.date_range("2018-01-01", periods=n_bars, freq="D")
    t0, t1 = [], []
    for _ in range(symbols):
        rows = np.sort(rng.choice(n_bars - horizon, size=n_bars // 5, replace=False))
        t0.append(clock[rows])
        t1.append(clock[rows + rng.integers(1, horizon + 1, size=len(rows))])
    t0, t1 = np.concatenate(t0), np.concatenate(t1)
    order = rng.permutation(len(t0)) if shuffle else np.argsort(t0, kind="stable")
    return pd.DatetimeIndex(t0[order]), pd.DatetimeIndex(t1[order])


def check_no_leak(splits, t0, t1, embargo: pd.Timedelta):
    for train, test in splits:
        assert len(train) and len(test)
        assert not set(train) & set(test)
        start = t0[test].min()
        assert (t0[train] < start).all()  # train always earlier than test
        assert (t1[train] < start).all()  # purge: every training label known before the block
        assert (t0[train] < start - embargo).all()  # embargo


def test_blocks_cover_the_tail_in_order():
    t0, t1 = events()
    n = len(t0)
    splits = purged_walk_forward(t0, t1, n_splits=5, min_train_fraction=0.3)
    assert len(splits) == 5
    tested = np.concatenate([test for _, test in splits])
    assert list(tested) == list(range(int(np.ceil(0.3 * n)), n))  # consecutive, each once
    assert all(len(test) in (len(tested) // 5, len(tested) // 5 + 1) for _, test in splits)
    # Expanding window: each fold trains on at least as much as the previous one.
    sizes = [len(train) for train, _ in splits]
    assert sizes == sorted(sizes) and sizes[0] > 0.2 * n
    check_no_leak(splits, t0, t1, (t1 - t0).max())


@pytest.mark.parametrize("embargo, expected", [(20, pd.Timedelta(days=20)), (pd.Timedelta(days=30), pd.Timedelta(days=30)), ("45D", pd.Timedelta(days=45))])
def test_embargo_in_bars_or_time(embargo, expected):
    t0, t1 = events()
    splits = purged_walk_forward(t0, t1, n_splits=4, embargo=embargo)
    check_no_leak(splits, t0, t1, expected)
    # The embargo removes what it must and no more.
    for train, test in splits:
        start = t0[test].min()
        allowed = np.flatnonzero((t0 < start - expected) & (t1 < start))
        assert list(train) == list(allowed)


def test_embargo_is_never_shorter_than_the_label_span():
    t0, t1 = events(horizon=10)
    span = (t1 - t0).max()
    for small in (0, 2, pd.Timedelta(hours=1)):
        check_no_leak(purged_walk_forward(t0, t1, n_splits=3, embargo=small), t0, t1, span - pd.Timedelta(1))
    assert purged_walk_forward(t0, t1, n_splits=3, embargo=0)[0][0].tolist() == purged_walk_forward(t0, t1, n_splits=3)[0][0].tolist()


def test_interleaved_symbols_in_any_order():
    t0, t1 = events(symbols=3, shuffle=True, seed=3)
    assert not t0.is_monotonic_increasing
    splits = purged_walk_forward(t0, t1, n_splits=5, embargo=10)
    check_no_leak(splits, t0, t1, pd.Timedelta(days=10))
    tested = np.concatenate([test for _, test in splits])
    assert len(set(tested)) == len(tested) == len(t0) - int(np.ceil(0.3 * len(t0)))
    # The never-tested samples are the earliest ones.
    untested = np.setdiff1d(np.arange(len(t0)), tested)
    assert t0[untested].max() <= t0[tested].min()
    # Same timestamps in several symbols: a sample sharing the block's first t0 is never trained on.
    for train, test in splits:
        assert not (t0[train] == t0[test].min()).any()


def test_plain_arrays_and_numpy_datetimes_work():
    t0, t1 = events()
    a = purged_walk_forward(t0.to_numpy(), t1.to_numpy().astype("datetime64[s]"), n_splits=3)
    b = purged_walk_forward(t0, t1, n_splits=3)
    assert all((x[0] == y[0]).all() and (x[1] == y[1]).all() for x, y in zip(a, b))


def test_too_few_samples_or_bad_input():
    t0, t1 = events(n_bars=60)
    with pytest.raises(TrainingError) as err:
        purged_walk_forward(t0[:6], t1[:6], n_splits=5)
    assert err.value.field == "n_splits"
    with pytest.raises(TrainingError):  # an embargo that swallows all training data
        purged_walk_forward(t0, t1, n_splits=2, embargo=pd.Timedelta(days=1000))
    with pytest.raises(ValueError):
        purged_walk_forward(t1, t0)  # labels known before entry


def test_sklearn_accepts_the_splits():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    t0, t1 = events()
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(len(t0), 3)), rng.integers(0, 2, len(t0))
    scores = cross_val_score(LogisticRegression(), X, y, cv=purged_walk_forward(t0, t1, n_splits=3))
    assert len(scores) == 3


def test_time_ordered_split():
    train, val, test = time_ordered_split(1000, gap=30)
    assert train[0] == 0 and test[-1] == 999
    assert val[0] - train[-1] == 31 and test[0] - val[-1] == 31  # 30 samples left out each time
    assert len(train) == 658 and len(val) == 141 and len(test) == 141
    train, val, test = time_ordered_split(10, fractions=(0.6, 0.2, 0.2))
    assert (list(train), list(val), list(test)) == ([0, 1, 2, 3, 4, 5], [6, 7], [8, 9])
    with pytest.raises(TrainingError) as err:
        time_ordered_split(20, gap=9)
    assert err.value.field == "data"
    with pytest.raises(ValueError):
        time_ordered_split(100, fractions=(0.8, 0.2, 0.0))
