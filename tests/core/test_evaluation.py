"""Metrics match scikit-learn, baselines are right, and walk-forward finds no edge in noise."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from kryptobot.errors import TrainingError
from kryptobot.evaluation import (
    classification_metrics,
    conformal_quantile,
    confusion,
    interval_coverage,
    oos_metrics,
    regression_metrics,
    walk_forward_predictions,
)
from kryptobot.splits import purged_walk_forward


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0, 1)
    m = classification_metrics(y, p, threshold=0.4)
    pred = (p >= 0.4).astype(int)
    assert m["n"] == 300 and m["base_rate"] == pytest.approx(y.mean())
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    assert m["predicted_positive_rate"] == pytest.approx(pred.mean())


def test_baselines():
    y = np.array([1, 1, 1, 0])  # base rate 0.75
    m = classification_metrics(y, np.full(4, 0.9))
    b = m["baseline"]
    assert b["accuracy"] == 0.75  # always "1", the majority
    assert b["precision"] == 0.75 and b["recall"] == 1.0
    assert b["f1"] == pytest.approx(2 * 0.75 / 1.75)
    assert b["roc_auc"] == 0.5
    assert b["brier"] == pytest.approx(np.mean((0.75 - y) ** 2))
    # With a training base rate, majority and brier come from what training knew.
    b = classification_metrics(y, np.full(4, 0.9), train_base_rate=0.4)["baseline"]
    assert b["accuracy"] == 0.25  # training said "mostly 0"
    assert b["brier"] == pytest.approx(np.mean((0.4 - y) ** 2))
    assert b["precision"] == 0.75  # always-positive precision is the test base rate regardless


def test_single_class_fold():
    m = classification_metrics(np.zeros(5, dtype=int), np.array([0.1, 0.2, 0.7, 0.3, 0.2]))
    assert m["roc_auc"] is None and m["baseline"]["roc_auc"] is None
    assert m["precision"] == 0.0 and m["baseline"]["f1"] == 0.0 and m["accuracy"] == 0.8
    with pytest.raises(ValueError):
        classification_metrics([0, 1], [0.5, np.nan])


def test_confusion():
    assert confusion([0, 0, 1, 1, 1], [0, 1, 1, 1, 0]) == [[1, 1], [1, 2]]
    assert confusion([0, 0], [0, 0]) == [[2, 0], [0, 0]]


def daily_events(n: int, horizon: int = 5):
    t0 = pd.date_range("2015-01-01", periods=n, freq="D")
    return t0, t0 + pd.Timedelta(days=horizon)


def test_walk_forward_on_noise_finds_nothing():
    """The honesty check: features with no information must not score above chance."""
    rng = np.random.default_rng(42)
    n = 2000
    X = pd.DataFrame(rng.normal(size=(n, 5)), columns=list("abcde"))
    y = rng.integers(0, 2, n)
    t0, t1 = daily_events(n)
    splits = purged_walk_forward(t0, t1, n_splits=5)
    oos = walk_forward_predictions(LogisticRegression, X, y, splits)
    tested = ~np.isnan(oos)
    assert tested.sum() == n - 600 and not tested[:600].any()
    m = oos_metrics(y, oos, splits)
    assert abs(m["roc_auc"] - 0.5) < 0.06
    assert m["accuracy"] < m["baseline"]["accuracy"] + 0.04
    assert m["brier"] >= m["baseline"]["brier"] - 0.005
    assert len(m["per_fold"]) == 5 and sum(f["n"] for f in m["per_fold"]) == m["n"]


def test_walk_forward_finds_a_real_edge():
    rng = np.random.default_rng(7)
    n = 1500
    signal = rng.normal(size=n)
    X = np.column_stack([signal, rng.normal(size=(n, 3))])
    y = (signal + 0.5 * rng.normal(size=n) > 0).astype(int)
    t0, t1 = daily_events(n)
    splits = purged_walk_forward(t0, t1, n_splits=4)
    m = oos_metrics(y, walk_forward_predictions(LogisticRegression, X, y, splits), splits)
    assert m["roc_auc"] > 0.85 and m["accuracy"] > m["baseline"]["accuracy"] + 0.2
    assert m["per_fold"][0]["n_train"] == len(splits[0][0])


def test_one_class_training_set_predicts_that_class():
    X = np.arange(20, dtype=float)[:, None]
    y = np.r_[np.zeros(10, dtype=int), np.ones(10, dtype=int)]
    splits = [(np.arange(0, 8), np.arange(8, 12)), (np.arange(0, 14), np.arange(14, 20))]
    oos = walk_forward_predictions(LogisticRegression, X, y, splits)
    assert (oos[8:12] == 0.0).all() and np.isnan(oos[:8]).all()
    assert (oos[14:] > 0.5).all()


def test_regression_metrics():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.5, 2.0, 2.5, 4.0])
    naive = np.array([0.0, 1.0, 2.0, 3.0])
    m = regression_metrics(y, pred, naive)
    assert m["mse"] == pytest.approx(0.125) and m["rmse"] == pytest.approx(np.sqrt(0.125)) and m["mae"] == pytest.approx(0.25)
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred))
    assert m["naive"] == pytest.approx({"mse": 1.0, "rmse": 1.0, "mae": 1.0, "r2": skm.r2_score(y, naive)})
    assert m["skill"] == pytest.approx(0.875) and m["mse_ratio"] == pytest.approx(0.125)
    perfect_naive = regression_metrics(y, pred, y)
    assert perfect_naive["skill"] is None and perfect_naive["mse_ratio"] is None
    assert regression_metrics(np.ones(3), np.ones(3), np.zeros(3))["r2"] is None  # constant target


def test_interval_coverage():
    assert interval_coverage([1, 2, 3, 4], [0, 2, 3.5, 0], [1, 2.5, 4, 3]) == 0.5


def test_conformal_quantile():
    residuals = np.arange(1, 20, dtype=float)  # n = 19
    assert conformal_quantile(residuals, 0.9) == 18.0  # ceil(20 * 0.9) = 18th smallest
    assert conformal_quantile(-residuals, 0.5) == 10.0  # signs do not matter
    assert conformal_quantile(np.arange(1, 11, dtype=float), 0.9) == 10.0  # 0.9 * 11 = 9.9 -> 10th
    with pytest.raises(TrainingError) as err:
        conformal_quantile(np.arange(1, 10, dtype=float), 0.95)
    assert err.value.field == "coverage" and "at least 19" in err.value.message
    # The guarantee: coverage of fresh samples is at least the target.
    rng = np.random.default_rng(1)
    hits = []
    for _ in range(200):
        q = conformal_quantile(rng.standard_t(3, 50), 0.8)
        fresh = rng.standard_t(3, 200)
        hits.append(interval_coverage(fresh, -q * np.ones(200), q * np.ones(200)))
    assert np.mean(hits) >= 0.8 - 0.01


def test_meta_labels_of_a_random_walk_are_unpredictable():
    """End to end: features + labels + purged splits on a martingale give chance-level AUC.

    A look-ahead anywhere in the pipeline (features, labels, splits) would show up here
    as an AUC well above 0.5.
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from kryptobot.labels import build_meta_dataset

    rng = np.random.default_rng(5)
    data = {}
    for symbol in ("AAA", "BBB", "CCC"):
        close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.02, 2500)))
        open_ = np.r_[50.0, close[:-1]]
        data[symbol] = pd.DataFrame(
            {
                "timestamp": pd.date_range("2012-01-01", periods=2500, freq="D"),
                "open": open_,
                "high": np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, 2500))),
                "low": np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, 2500))),
                "close": close,
                "volume": rng.lognormal(10, 0.5, 2500),
            }
        )
    ds = build_meta_dataset(data)
    splits = purged_walk_forward(ds.t0, ds.t1, n_splits=5, embargo=10)
    oos = walk_forward_predictions(lambda: make_pipeline(StandardScaler(), LogisticRegression()), ds.X, ds.y, splits)
    m = oos_metrics(ds.y, oos, splits)
    assert m["n"] > 700
    assert abs(m["roc_auc"] - 0.5) < 0.07
