"""What the meta-labelling classifiers (signal, ensemble) share.

Both answer "will this technical signal succeed?" from the same features and labels,
evaluated the same way, so they can be compared on the same out-of-sample data:

* ``configs``: ``ForestParams``, ``LabelConfig``, ``EvaluationConfig``, the request
  parameters both share;
* ``load_meta_dataset`` -> features + meta-labels for the requested market data;
* ``walk_forward_report`` -> out-of-sample metrics over purged walk-forward splits;
* ``threshold_sweep`` -> what each threshold on those out-of-sample scores keeps and earns;
* ``classifier_verdict`` -> the promotion gate's verdict by out-of-sample ROC AUC;
* ``instances_to_matrix`` -> the serving-time input matrix from named features or bars,
  computed with the version's own feature pipeline;
* ``onnx.OnnxClassifier`` -> compiled inference for a fitted scikit-learn classifier.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from kryptobot.errors import InvalidInput
from kryptobot.evaluation import classification_metrics, walk_forward_predictions
from kryptobot.features import FEATURE_NAMES, FeatureParams, latest_features_of, validate_feature_dict
from kryptobot.labels import build_meta_dataset
from kryptobot.models.common.configs import EvaluationConfig, LabelConfig
from kryptobot.promotion import Verdict, judge_metadata
from kryptobot.splits import purged_walk_forward
from kryptobot.thresholds import CLASSIFIER_GRID, OBJECTIVE, sweep

SIDE_COLUMN = "side"
#: promotion tolerance against the active version's out-of-sample ROC AUC: about half the
#: sampling noise of an AUC on a thousand signals, so a retrain on fresh data that scores
#: the same is not held back by the luck of its predecessor's holdout
ROC_AUC_TOLERANCE = 0.01


def model_columns(features: Sequence[str]) -> list[str]:
    """Model inputs: the chosen features plus the side of the technical signal."""
    return [*features, SIDE_COLUMN]


def load_meta_dataset(ctx, data, labels: LabelConfig, feature_params: FeatureParams | None = None):
    bars = ctx.load_bars(data)
    return build_meta_dataset(bars, feature_params or FeatureParams(), labels.params())


def walk_forward_report(
    make_model: Callable[[], object],
    dataset,
    columns: Sequence[str],
    evaluation: EvaluationConfig,
    embargo_bars: int,
) -> tuple[dict, np.ndarray]:
    """Out-of-sample metrics (with baselines) and the OOS probabilities (NaN = never tested)."""
    splits = purged_walk_forward(dataset.t0, dataset.t1, n_splits=evaluation.n_splits, embargo=embargo_bars)
    X = dataset.X[list(columns)]
    oos = walk_forward_predictions(make_model, X, dataset.y, splits)
    metrics = oos_report(dataset.y, oos, evaluation, embargo_bars)
    return metrics, oos


def oos_report(y: np.ndarray, oos: np.ndarray, evaluation: EvaluationConfig, embargo_bars: int) -> dict:
    """Metrics of out-of-sample scores (NaN = never tested) next to naive baselines.

    The baselines use the base rate of the initial training block (what a naive model
    could have known), not the test period's.
    """
    tested = ~np.isnan(oos)
    train_base_rate = float(np.mean(y[: np.argmax(tested)])) if tested.any() and np.argmax(tested) > 0 else None
    metrics = classification_metrics(y[tested], oos[tested], threshold=evaluation.threshold, train_base_rate=train_base_rate)
    metrics["evaluation"] = {
        "scheme": "purged walk-forward",
        "n_splits": evaluation.n_splits,
        "embargo_bars": embargo_bars,
        "tested_samples": int(tested.sum()),
    }
    return metrics


def threshold_sweep(dataset, scores: np.ndarray) -> dict:
    """:func:`kryptobot.thresholds.sweep` of out-of-sample ``scores`` (NaN = never tested),
    by the realised return of each signal's triple-barrier trade.

    ``buy`` holds the buy signals only, the entries of the long-only trader (its "auto"
    thresholds read that one), ``sell`` the sell signals, ``all`` both.
    """
    tested = ~np.isnan(scores)
    side = dataset.X[SIDE_COLUMN].to_numpy()
    masks = {"buy": tested & (side > 0), "sell": tested & (side < 0), "all": tested}
    sides = {
        name: sweep(scores[mask], dataset.ret[mask], dataset.y[mask], CLASSIFIER_GRID, fallback=CLASSIFIER_GRID[0])
        for name, mask in masks.items()
    }
    return {
        "score": "out-of-sample walk-forward score; a signal is kept when score >= threshold",
        "return": "realised side-adjusted return of the signal's triple-barrier trade (close at t0 to the exit)",
        "objective": OBJECTIVE,
        "sides": sides,
    }


def classifier_verdict(candidate: dict, champion: dict | None, metrics_path: str = "metrics") -> Verdict:
    """Out-of-sample ROC AUC against the base-rate baseline's (0.5) and the active version's.

    ROC AUC, not F1 or accuracy: it does not depend on a threshold (which "auto" may
    move) and its naive baseline is the same on any data.
    """
    return judge_metadata(candidate, champion, "roc_auc", f"{metrics_path}.roc_auc", f"{metrics_path}.baseline.roc_auc",
                          ROC_AUC_TOLERANCE)


def data_range(dataset) -> dict:
    return {
        "start": str(min(dataset.t0)),
        "end": str(max(dataset.t1)),
        "symbols": sorted({str(s) for s in dataset.symbol}),
        "samples": int(len(dataset.y)),
        "positive_outcomes": int(np.sum(dataset.y)),
    }


def instances_to_matrix(instances: Sequence, features: Sequence[str], feature_params: FeatureParams) -> tuple[np.ndarray, list[dict]]:
    """Rows of ``features + [side]`` for each instance, and the feature values used."""
    rows = np.empty((len(instances), len(features) + 1), dtype=np.float32)
    used: list[dict] = []
    for i, inst in enumerate(instances):
        if inst.features is not None:
            values = validate_feature_dict(inst.features, list(features), field=f"instances[{i}].features")
        else:
            field = f"instances[{i}].bars"
            # the checked arrays, no frame: pandas would cost more than the features themselves
            computed = latest_features_of(inst.bars.arrays(field), feature_params, field=field)
            values = np.array([computed[name] for name in features], dtype=np.float64)
        rows[i, :-1] = values
        rows[i, -1] = 1.0 if inst.side == "buy" else -1.0
        used.append(dict(zip(features, map(float, values))))
    return rows, used


def check_feature_subset(features: Sequence[str] | None, field: str = "features") -> list[str]:
    if features is None:
        return list(FEATURE_NAMES)
    unknown = [f for f in features if f not in FEATURE_NAMES]
    if unknown:
        raise InvalidInput(f"unknown feature(s) {unknown}; known: {FEATURE_NAMES}", field=field)
    if not features:
        raise InvalidInput("at least one feature is needed", field=field)
    return [f for f in FEATURE_NAMES if f in features]
