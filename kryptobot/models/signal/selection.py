"""Feature selection for the signal model.

Candidates, each scored by the same out-of-sample purged walk-forward F1 as training:
the active model's own feature set, features with importance >= a threshold, the top-N
most important, and RFECV's choice (cross-validated on the same purged splits). The best
set (ties go to the current set, then to fewer features) becomes a new version whose
``parent`` is the analysed one.
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path


from kryptobot import plots
from kryptobot.errors import TrainingError
from kryptobot.models.common.classifier import SIDE_COLUMN, load_meta_dataset, model_columns, walk_forward_report
from kryptobot.models.signal.model import SignalModel
from kryptobot.models.signal.schemas import FeatureSelectionConfig, SignalTrainConfig
from kryptobot.models.signal.training import fit
from kryptobot.runtime import TrainContext
from kryptobot.splits import purged_walk_forward

COMPARED = ("accuracy", "precision", "recall", "f1", "roc_auc")


def _rfecv(config, dataset, features: list[str], forest_params) -> tuple[list[str], list[float]]:
    from sklearn.feature_selection import RFECV

    columns = model_columns(features)
    splits = purged_walk_forward(dataset.t0, dataset.t1, n_splits=config.evaluation.n_splits, embargo=config.labels.max_holding)
    small = forest_params.model_copy(update={"n_estimators": min(forest_params.n_estimators, 50)}).build()
    selector = RFECV(small, step=1, cv=splits, scoring="f1", min_features_to_select=1, n_jobs=1)
    selector.fit(dataset.X[columns], dataset.y)
    chosen = [c for c, keep in zip(columns, selector.support_) if keep and c != SIDE_COLUMN]
    return chosen or features[:1], [float(s) for s in selector.cv_results_["mean_test_score"]]


def run_feature_selection(config: FeatureSelectionConfig, ctx: TrainContext) -> SignalModel:
    current = ctx.active_model("signal")
    if current is None:
        raise TrainingError("feature selection analyses the active signal model: train one first", field="model")
    params = current.info["params"]
    train_config = SignalTrainConfig(
        data=config.data, model=params["model"], labels=params["labels"], evaluation=params["evaluation"], activate=config.activate
    )
    ctx.progress(0.05, "loading data")
    dataset = load_meta_dataset(ctx, config.data, train_config.labels)
    # the importances the version stored when it was trained: no need to unpickle its forest
    importance = {c: float(v) for c, v in current.info["metrics"]["feature_importance"].items() if c != SIDE_COLUMN}
    ranked = sorted(importance, key=importance.get, reverse=True)
    candidates: dict[str, list[str]] = {"current": list(current.features)}
    above = [f for f in ranked if importance[f] >= config.importance_threshold]
    if above:
        candidates["importance_threshold"] = above
    candidates["top_n"] = ranked[: config.top_n]
    rfecv_scores: list[float] = []
    if config.rfecv:
        ctx.progress(0.15, "RFECV")
        candidates["rfecv"], rfecv_scores = _rfecv(train_config, dataset, list(current.features), train_config.model)

    results = {}
    for i, (method, features) in enumerate(candidates.items()):
        ctx.progress(0.3 + 0.4 * i / len(candidates), f"evaluating {method} ({len(features)} features)")
        metrics, _ = walk_forward_report(
            train_config.model.build, dataset, model_columns(features), train_config.evaluation, train_config.labels.max_holding
        )
        results[method] = {"features": features, "metrics": {k: metrics[k] for k in COMPARED}, "baseline": metrics["baseline"]}

    def rank(method: str):
        return (results[method]["metrics"]["f1"], method == "current", -len(results[method]["features"]))

    best = max(results, key=rank)
    summary = {
        "analysed_version": current.stored_metadata["version"],
        "winner": best,
        "improved": best != "current" and results[best]["metrics"]["f1"] > results["current"]["metrics"]["f1"],
        "importance": importance,
        "candidates": results,
    }
    reports = {"feature_importance.png": partial(plots.bar_chart, values=importance, title="Feature importance of the analysed model", ylabel="importance")}
    if rfecv_scores:
        reports["rfecv_scores.png"] = partial(
            plots.lines, series={"mean F1 (purged CV)": rfecv_scores}, title="RFECV scores", xlabel="number of inputs", ylabel="F1"
        )
    for method in results:
        if method == "current":
            continue
        comparison = {"method": method, "original": results["current"], "optimized": results[method], "winner": best}
        reports[f"comparison_{method}.json"] = partial(_write_json, data=comparison)
        reports[f"model_comparison_{method}.png"] = partial(
            plots.grouped_bars,
            groups={k: {"original": results["current"]["metrics"][k] or 0.0, method: results[method]["metrics"][k] or 0.0} for k in COMPARED},
            title=f"Original vs {method} ({len(results[method]['features'])} features), out-of-sample",
        )
    ctx.progress(0.8, f"fitting the winner ({best})")
    model = fit(
        train_config, dataset, results[best]["features"], ctx,
        extra={"parent": current.stored_metadata["version"], "feature_selection": summary},
    )
    model._reports = reports
    return model


def _write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2, default=float))
