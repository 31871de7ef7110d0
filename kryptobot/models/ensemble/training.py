"""Training an ensemble: every base model and the vote scored on the same purged walk-forward
splits as the signal model, then the VotingClassifier fitted on all data."""
from __future__ import annotations

import numpy as np

from kryptobot.features import FEATURE_NAMES, PIPELINE_VERSION, FeatureParams
from kryptobot.models.common.classifier import data_range, model_columns, oos_report, threshold_sweep, walk_forward_report
from kryptobot.models.common.configs import EvaluationConfig
from kryptobot.models.ensemble.model import EnsembleModel, combine
from kryptobot.models.ensemble.schemas import BASE_MODELS, EnsembleTrainConfig
from kryptobot.runtime import TrainContext
from kryptobot.thresholds import classifier_threshold


HARD_DECISION_RULE = "weighted majority of base votes (share > 0.5, a tie is 'fail'), as VotingClassifier.predict"



def take_statistics(y: np.ndarray, score: np.ndarray, confidence_threshold: float) -> dict:
    """What ``take = score >= confidence_threshold`` did out of sample."""
    take = score >= confidence_threshold
    return {
        "confidence_threshold": confidence_threshold,
        "taken": int(take.sum()),
        "take_rate": float(take.mean()),
        "success_rate_when_taken": float(y[take].mean()) if take.any() else None,
        "mean_score_when_taken": float(score[take].mean()) if take.any() else None,
        "base_rate": float(y.mean()),
    }



def ensemble_scores(oos: dict[str, np.ndarray], config: EnsembleTrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble's out-of-sample (score, vote) from its base models' (NaN: never tested)."""
    stacked = np.column_stack([oos[name] for name in BASE_MODELS])
    tested = ~np.isnan(stacked).any(axis=1)
    score, vote = np.full(len(stacked), np.nan), np.full(len(stacked), np.nan)
    score[tested], vote[tested] = combine(stacked[tested], np.asarray(config.weights), config.voting)
    return score, vote


def evaluate_ensemble(y: np.ndarray, oos: dict[str, np.ndarray], config: EnsembleTrainConfig, confidence_threshold: float) -> tuple[dict, dict | None]:
    """Out-of-sample metrics of the ensemble from its base models' OOS probabilities, and
    the soft ensemble's reliability curve (None for a hard one)."""
    embargo = config.labels.max_holding
    score, vote = ensemble_scores(oos, config)
    tested = ~np.isnan(score)
    metrics = oos_report(y, score, config.evaluation, embargo)
    metrics["at_confidence_threshold"] = take_statistics(y[tested], score[tested], confidence_threshold)
    if config.voting == "soft":
        from sklearn.calibration import calibration_curve

        metrics["decision_rule"] = f"probability >= {config.evaluation.threshold}"
        frac, mean = calibration_curve(y[tested], score[tested], n_bins=10, strategy="quantile")
        return metrics, {"mean_predicted": mean.tolist(), "fraction_positive": frac.tolist()}
    # A hard ensemble decides by its vote, so accuracy..f1 are the served vote's; roc_auc
    # ranks by vote share, and a Brier score of a vote share would pass it off as a probability.
    decided = oos_report(y, vote, EvaluationConfig(n_splits=config.evaluation.n_splits, threshold=0.5), embargo)
    metrics.update({k: decided[k] for k in ("accuracy", "precision", "recall", "f1", "predicted_positive_rate")})
    metrics.update(brier=None, threshold=None, decision_rule=HARD_DECISION_RULE)
    return metrics, None


def fit(config: EnsembleTrainConfig, dataset, ctx: TrainContext, confidence_threshold: float | str) -> EnsembleModel:
    """Each base model's and the vote's out-of-sample metrics, then the final VotingClassifier."""
    from sklearn.ensemble import VotingClassifier

    features = list(FEATURE_NAMES)
    columns = model_columns(features)
    per_model, oos = {}, {}
    for i, name in enumerate(BASE_MODELS):
        ctx.progress(0.1 + 0.6 * i / len(BASE_MODELS), f"walk-forward evaluation of {name}", model=name)
        per_model[name], oos[name] = walk_forward_report(
            getattr(config, name).build, dataset, columns, config.evaluation, config.labels.max_holding
        )
    sweep = threshold_sweep(dataset, ensemble_scores(oos, config)[0])
    # an "auto" threshold is this version's own: what serving it would resolve to
    threshold, _ = classifier_threshold(confidence_threshold, {"threshold_sweep": sweep}, side="all")
    ensemble, reliability = evaluate_ensemble(dataset.y, oos, config, threshold)
    ensemble["threshold_sweep"] = sweep
    ctx.progress(0.75, "fitting the ensemble on all data")
    estimator = VotingClassifier(config.estimators(), voting=config.voting, weights=config.weights, n_jobs=1)
    estimator.fit(dataset.X[columns].to_numpy(dtype=np.float32), dataset.y)
    info = {
        "params": {
            "voting": config.voting,
            "weights": config.weights,
            **{name: getattr(config, name).model_dump() for name in BASE_MODELS},
            "labels": config.labels.model_dump(),
            "evaluation": config.evaluation.model_dump(),
            "feature_pipeline": {"version": PIPELINE_VERSION, **FeatureParams().to_dict()},
        },
        "features": features,
        "data_range": data_range(dataset),
        "metrics": {"ensemble": ensemble, "base_models": per_model, "reliability": reliability},
    }
    return EnsembleModel(config.voting, config.weights, features, info, estimator)
