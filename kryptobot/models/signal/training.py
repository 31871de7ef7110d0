"""Training a signal model: walk-forward evaluation on purged splits, then a fit on all data."""
from __future__ import annotations

import numpy as np

from kryptobot.evaluation import confusion
from kryptobot.features import PIPELINE_VERSION, FeatureParams
from kryptobot.models.common.classifier import (
    check_feature_subset,
    data_range,
    load_meta_dataset,
    model_columns,
    threshold_sweep,
    walk_forward_report,
)
from kryptobot.models.signal.model import SignalModel
from kryptobot.models.signal.schemas import SignalTrainConfig
from kryptobot.runtime import TrainContext


def train(config: SignalTrainConfig, ctx: TrainContext) -> SignalModel:
    features = check_feature_subset(config.features)
    dataset = load_meta_dataset(ctx, config.data, config.labels)
    return fit(config, dataset, features, ctx)


def fit(config: SignalTrainConfig, dataset, features: list[str], ctx: TrainContext, extra: dict | None = None) -> SignalModel:
    """Out-of-sample metrics from the walk-forward, then the final forest fitted on every sample."""
    columns = model_columns(features)
    ctx.progress(0.2, "walk-forward evaluation")
    metrics, oos = walk_forward_report(config.model.build, dataset, columns, config.evaluation, config.labels.max_holding)
    ctx.progress(0.7, "fitting final model on all data")
    forest = config.model.build().fit(dataset.X[columns], dataset.y)
    importance = dict(zip(columns, map(float, forest.feature_importances_)))
    tested = ~np.isnan(oos)
    matrix = confusion(dataset.y[tested], (oos[tested] >= config.evaluation.threshold).astype(int))
    info = {
        "params": {
            "model": config.model.model_dump(),
            "labels": config.labels.model_dump(),
            "evaluation": config.evaluation.model_dump(),
            "feature_pipeline": {"version": PIPELINE_VERSION, **FeatureParams().to_dict()},
        },
        "features": features,
        "data_range": data_range(dataset),
        "metrics": {**metrics, "feature_importance": importance, "confusion_matrix": matrix,
                    "threshold_sweep": threshold_sweep(dataset, oos)},
        **(extra or {}),
    }
    return SignalModel(forest, features, FeatureParams(), info)
