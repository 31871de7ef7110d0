"""Honest evaluation: out-of-sample metrics, always next to a naive baseline.

A number without a baseline says nothing (70% accuracy is worthless when 70% of
signals succeed anyway), so :func:`classification_metrics` and
:func:`regression_metrics` report the baseline beside every metric, and
:func:`walk_forward_predictions` only ever scores a model on data it was not fitted on.
All results are plain Python numbers (JSON-ready); an undefined metric is ``None``.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from kryptobot.errors import TrainingError


def _binary(y, name: str) -> np.ndarray:
    y = np.asarray(y).ravel()
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1")
    return y.astype(np.int64)


def _opt(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def classification_metrics(y_true, proba, threshold: float = 0.5, train_base_rate: float | None = None) -> dict:
    """Metrics of P(class 1) predictions; a sample counts as predicted positive when ``proba >= threshold``.

    Keys: accuracy, precision, recall, f1, roc_auc, brier, n, base_rate (share of
    positives in ``y_true``), threshold, predicted_positive_rate, and ``baseline``:

    * accuracy: always predicting the majority class (majority by ``train_base_rate``
      when given, as a deployed baseline would only know the training data);
    * precision / recall / f1: always predicting positive (take every signal), so
      precision = base_rate, recall = 1;
    * roc_auc: 0.5 (an uninformative ranking);
    * brier: predicting the base rate (the training one when given) for every sample.

    With only one class present, roc_auc is None (undefined), as is the baseline's.
    """
    y = _binary(y_true, "y_true")
    p = np.asarray(proba, dtype=np.float64).ravel()
    if len(p) != len(y):
        raise ValueError(f"y_true ({len(y)}) and proba ({len(p)}) differ in length")
    if len(y) == 0:
        raise ValueError("no samples to evaluate")
    if not np.isfinite(p).all():
        raise ValueError("proba contains NaN or infinite values (untested samples?)")
    pred = (p >= threshold).astype(np.int64)
    base_rate = float(y.mean())
    both_classes = 0 < base_rate < 1
    reference = base_rate if train_base_rate is None else float(train_base_rate)
    majority = int(reference >= 0.5)
    return {
        "n": int(len(y)),
        "base_rate": base_rate,
        "threshold": float(threshold),
        "predicted_positive_rate": float(pred.mean()),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y, p)) if both_classes else None,
        "brier": float(np.mean((p - y) ** 2)),
        "baseline": {
            "accuracy": float(np.mean(y == majority)),
            "precision": base_rate,
            "recall": 1.0 if base_rate > 0 else 0.0,
            "f1": 2 * base_rate / (1 + base_rate),
            "roc_auc": 0.5 if both_classes else None,
            "brier": float(np.mean((reference - y) ** 2)),
        },
    }


def confusion(y_true, y_pred) -> list[list[int]]:
    """``[[TN, FP], [FN, TP]]`` (rows: true class 0/1, columns: predicted 0/1)."""
    matrix = skm.confusion_matrix(_binary(y_true, "y_true"), _binary(y_pred, "y_pred"), labels=[0, 1])
    return [[int(v) for v in row] for row in matrix]


def _rows(X, idx: np.ndarray):
    return X.iloc[idx] if isinstance(X, (pd.DataFrame, pd.Series)) else np.asarray(X)[idx]


def walk_forward_predictions(
    make_model: Callable[[], object],
    X,
    y,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Out-of-sample P(class 1) for every sample, NaN where a sample was never tested.

    For each ``(train, test)`` split a fresh ``make_model()`` (scikit-learn-like:
    ``fit``, ``predict_proba``, ``classes_``) is fitted on ``train`` and predicts
    ``test``. A training set holding one class only predicts that class (a classifier
    cannot be fitted on it). With overlapping test sets the last split wins.
    """
    y = _binary(y, "y")
    oos = np.full(len(y), np.nan)
    for train, test in splits:
        train, test = np.asarray(train), np.asarray(test)
        if len(test) == 0:
            continue
        classes = np.unique(y[train])
        if len(classes) < 2:
            oos[test] = float(classes[0]) if len(classes) else np.nan
            continue
        model = make_model()
        model.fit(_rows(X, train), y[train])
        column = list(model.classes_).index(1)
        oos[test] = np.asarray(model.predict_proba(_rows(X, test)))[:, column]
    return oos


def oos_metrics(
    y,
    oos_proba,
    splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    threshold: float = 0.5,
) -> dict:
    """``classification_metrics`` over the tested samples only, plus ``per_fold`` when ``splits`` is given.

    The baseline's training base rate is that of the first fold's training set (with
    ``splits``), else that of the never-tested samples (the initial training window).
    Each per-fold entry adds ``fold``, ``n_train`` and uses its own training base rate.
    """
    y = _binary(y, "y")
    p = np.asarray(oos_proba, dtype=np.float64)
    tested = ~np.isnan(p)
    if not tested.any():
        raise ValueError("no sample was tested")
    if splits:
        train_rate = float(y[np.asarray(splits[0][0])].mean())
    else:
        train_rate = float(y[~tested].mean()) if (~tested).any() else None
    out = classification_metrics(y[tested], p[tested], threshold, train_base_rate=train_rate)
    if splits:
        per_fold = []
        for k, (train, test) in enumerate(splits):
            test = np.asarray(test)
            fold = classification_metrics(y[test], p[test], threshold, train_base_rate=float(y[np.asarray(train)].mean()))
            per_fold.append({"fold": k, "n_train": int(len(train)), **fold})
        out["per_fold"] = per_fold
    return out


def _regression(y: np.ndarray, pred: np.ndarray) -> dict:
    err = pred - y
    mse = float(np.mean(err**2))
    total = float(np.sum((y - y.mean()) ** 2))
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": float(np.mean(np.abs(err))),
        "r2": None if total == 0 else 1.0 - float(np.sum(err**2)) / total,
    }


def regression_metrics(y_true, y_pred, y_naive) -> dict:
    """mse, rmse, mae, r2 of ``y_pred``, the same for ``y_naive`` under ``naive``, and skill.

    ``y_naive`` is the forecast to beat (e.g. "no change" for returns, last value for
    prices). ``skill = 1 - mse / mse_naive`` (> 0: better than naive) and
    ``mse_ratio = mse / mse_naive``; both None when the naive forecast is perfect.
    Arrays of any shape are flattened (e.g. several horizons at once).
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    pred = np.asarray(y_pred, dtype=np.float64).ravel()
    naive = np.asarray(y_naive, dtype=np.float64).ravel()
    if not len(y) == len(pred) == len(naive):
        raise ValueError(f"lengths differ: y_true {len(y)}, y_pred {len(pred)}, y_naive {len(naive)}")
    if len(y) == 0:
        raise ValueError("no samples to evaluate")
    if not (np.isfinite(y).all() and np.isfinite(pred).all() and np.isfinite(naive).all()):
        raise ValueError("NaN or infinite values")
    out = _regression(y, pred)
    out["n"] = int(len(y))
    out["naive"] = _regression(y, naive)
    mse_naive = out["naive"]["mse"]
    out["mse_ratio"] = None if mse_naive == 0 else out["mse"] / mse_naive
    out["skill"] = None if mse_naive == 0 else 1.0 - out["mse"] / mse_naive
    return out


def interval_coverage(y, lower, upper) -> float:
    """Share of ``y`` inside ``[lower, upper]`` (bounds inclusive)."""
    y, lo, hi = (np.asarray(a, dtype=np.float64).ravel() for a in (y, lower, upper))
    if not len(y) == len(lo) == len(hi) or len(y) == 0:
        raise ValueError("y, lower and upper must be non-empty and of equal length")
    return float(np.mean((y >= lo) & (y <= hi)))


def conformal_quantile(abs_residuals, coverage: float) -> float:
    """Split-conformal half-width: the ``ceil((n+1) * coverage)``-th smallest of ``n`` calibration residuals.

    ``prediction +/- q`` then covers a new exchangeable sample with probability
    >= ``coverage``. Raises TrainingError (field "coverage") when ``n`` is too small
    for that guarantee (n < coverage / (1 - coverage), e.g. 19 for 95%).
    """
    r = np.sort(np.abs(np.asarray(abs_residuals, dtype=np.float64).ravel()))
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be in (0, 1), got {coverage!r}")
    if not np.isfinite(r).all():
        raise ValueError("residuals contain NaN or infinite values")
    n = len(r)
    # The tiny slack stops float error turning e.g. 0.9 * 10 = 9.000000000000002 into 10.
    k = math.ceil((n + 1) * coverage - 1e-9)
    if k > n:
        raise TrainingError(
            f"{n} calibration residuals are too few for {coverage:.0%} conformal coverage, "
            f"need at least {math.ceil(coverage / (1 - coverage) - 1e-9)}",
            field="coverage",
        )
    return float(r[k - 1])
