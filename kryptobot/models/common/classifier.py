"""What the meta-labelling classifiers (signal, ensemble) share.

Both answer "will this technical signal succeed?" from the same features and labels,
evaluated the same way, so they can be compared on the same out-of-sample data:

* ``configs``: ``ForestParams``, ``LabelConfig``, ``EvaluationConfig``, the request
  parameters both share;
* ``load_meta_dataset`` -> features + meta-labels for the requested market data;
* ``walk_forward_report`` -> out-of-sample metrics over purged walk-forward splits;
* ``instances_to_matrix`` -> the serving-time input matrix from named features or bars,
  computed with the version's own feature pipeline;
* ``onnx.OnnxClassifier`` -> compiled inference for a fitted scikit-learn classifier.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from kryptobot.errors import InvalidInput
from kryptobot.evaluation import classification_metrics, walk_forward_predictions
from kryptobot.features import FEATURE_NAMES, FeatureParams, latest_features, validate_feature_dict
from kryptobot.labels import build_meta_dataset
from kryptobot.models.common.configs import EvaluationConfig, LabelConfig
from kryptobot.splits import purged_walk_forward

SIDE_COLUMN = "side"


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
            # latest_features validates the bars itself: validating here too would double the cost
            computed = latest_features(inst.bars.columns(), feature_params, field=f"instances[{i}].bars")
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
