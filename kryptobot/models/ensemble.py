"""Ensemble service model: a soft or hard VotingClassifier of RandomForest,
GradientBoosting and AdaBoost over the signal model's features and meta-labels.

Every base model and the ensemble are evaluated on the same purged walk-forward splits
as the signal model, so all of them (and the signal model) compare on the same
out-of-sample data. The ensemble's out-of-sample scores are combined from the base
models' with :func:`combine`, the function serving uses, which computes what
``VotingClassifier`` computes (checked in tests). Serving runs each base model through
ONNX Runtime, so each one's probability and vote are available per instance.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import joblib
import numpy as np

from kryptobot.errors import InvalidInput
from kryptobot.features import FEATURE_NAMES, PIPELINE_VERSION, FeatureParams
from kryptobot.models.ensemble_config import (
    BASE_MODELS,
    EnsembleOptions,
    EnsemblePrediction,
    EnsembleTrainConfig,
)
from kryptobot.models.ensemble_onnx import export_base_model
from kryptobot.models.ensemble_reports import write_reports
from kryptobot.models.meta import (
    EvaluationConfig,
    OnnxClassifier,
    data_range,
    instances_to_matrix,
    load_meta_dataset,
    model_columns,
    oos_report,
    walk_forward_report,
)
from kryptobot.runtime import ModelService, ModelVersion, TrainContext
from kryptobot.schemas import ClassifierInstance
from kryptobot.settings import EnsembleSettings, load_settings_file

__all__ = ["BASE_MODELS", "EnsembleModel", "EnsembleService", "EnsembleTrainConfig", "combine", "evaluate_ensemble", "vote_share"]

HARD_DECISION_RULE = "weighted majority of base votes (share > 0.5, a tie is 'fail'), as VotingClassifier.predict"


def vote_share(base_proba: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted share of base models voting "success" (a vote is P > 0.5, as their predict)."""
    w = np.asarray(weights, dtype=np.float64)
    return ((base_proba > 0.5) * w).sum(axis=1) / w.sum()


def combine(base_proba: np.ndarray, weights: np.ndarray, voting: str) -> tuple[np.ndarray, np.ndarray]:
    """(score, vote) per row from the base models' P(success), shape (rows, models).

    soft: score = weighted mean probability, vote = score > 0.5;
    hard: score = weighted vote share, vote = weighted votes for > against
    (a tie is "fail", as ``VotingClassifier``'s argmax puts class 0 first).
    """
    w = np.asarray(weights, dtype=np.float64)
    if voting == "soft":
        score = base_proba @ (w / w.sum())
        return score, (score > 0.5).astype(int)
    votes = base_proba > 0.5
    for_, against = (votes * w).sum(axis=1), (~votes * w).sum(axis=1)
    return for_ / w.sum(), (for_ > against).astype(int)


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


def evaluate_ensemble(y: np.ndarray, oos: dict[str, np.ndarray], config: EnsembleTrainConfig, confidence_threshold: float) -> tuple[dict, dict | None]:
    """Out-of-sample metrics of the ensemble from its base models' OOS probabilities, and
    the soft ensemble's reliability curve (None for a hard one)."""
    embargo = config.labels.max_holding
    stacked = np.column_stack([oos[name] for name in BASE_MODELS])
    tested = ~np.isnan(stacked).any(axis=1)
    score, vote = np.full(len(y), np.nan), np.full(len(y), np.nan)
    score[tested], vote[tested] = combine(stacked[tested], np.asarray(config.weights), config.voting)
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


class EnsembleModel(ModelVersion):
    line = "ensemble"

    def __init__(self, voting: str, weights: list[float], features: list[str], info: dict, estimator=None):
        self.voting = voting
        self.weights = np.asarray(weights, dtype=np.float64)
        self.features = features
        self.feature_params = FeatureParams()
        self.info = info
        self.estimator = estimator  # the fitted VotingClassifier (training side only)
        self._onnx: dict[str, OnnxClassifier] = {}

    @classmethod
    def fit(cls, config: EnsembleTrainConfig, dataset, ctx: TrainContext, confidence_threshold: float) -> EnsembleModel:
        from sklearn.ensemble import VotingClassifier

        features = list(FEATURE_NAMES)
        columns = model_columns(features)
        per_model, oos = {}, {}
        for i, name in enumerate(BASE_MODELS):
            ctx.progress(0.1 + 0.6 * i / len(BASE_MODELS), f"walk-forward evaluation of {name}", model=name)
            per_model[name], oos[name] = walk_forward_report(
                getattr(config, name).build, dataset, columns, config.evaluation, config.labels.max_holding
            )
        ensemble, reliability = evaluate_ensemble(dataset.y, oos, config, confidence_threshold)
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
        return cls(config.voting, config.weights, features, info, estimator)

    def save(self, artifacts: Path, reports: Path) -> None:
        joblib.dump(self.estimator, artifacts / "voting_classifier.joblib")
        for name, fitted in zip(BASE_MODELS, self.estimator.estimators_):
            export_base_model(fitted, len(self.features) + 1, artifacts / f"{name}.onnx")
        (artifacts / "ensemble.json").write_text(json.dumps({
            "voting": self.voting, "weights": self.weights.tolist(), "features": self.features,
            "feature_params": self.feature_params.to_dict(),
        }))
        write_reports(reports, self.info, self.voting, self.weights.tolist())

    @classmethod
    def load(cls, artifacts: Path, metadata: dict) -> EnsembleModel:
        spec = json.loads((artifacts / "ensemble.json").read_text())
        model = cls(spec["voting"], spec["weights"], spec["features"], metadata)
        model.feature_params = FeatureParams.from_dict(spec["feature_params"])
        model._onnx = {name: OnnxClassifier.load(artifacts / f"{name}.onnx") for name in BASE_MODELS}
        return model

    def metadata(self) -> dict:
        return self.info

    def base_probabilities(self, X: np.ndarray) -> np.ndarray:
        """P(success) of each base model (columns in ``BASE_MODELS`` order), compiled."""
        return np.column_stack([self._onnx[name].predict_proba(X) for name in BASE_MODELS])

    def warmup(self) -> None:
        self.base_probabilities(np.zeros((4, len(self.features) + 1), dtype=np.float32))


class EnsembleService(ModelService):
    """Voting ensemble (RandomForest, GradientBoosting, AdaBoost): the probability (soft) or
    vote (hard) that a technical signal succeeds, with every base model's probability and vote.

    `take` applies `confidence_threshold` of config/ensemble_settings.json; a hard-voting
    version has no probability (asking for one with `options.want = "probability"` is a 422).
    """

    name = "ensemble"
    lines = ("ensemble",)
    version_classes: ClassVar[Mapping[str, type[ModelVersion]]] = {"ensemble": EnsembleModel}
    TrainConfig = EnsembleTrainConfig
    Instance = ClassifierInstance
    Prediction = EnsemblePrediction
    PredictOptions = EnsembleOptions

    def __init__(self, settings):
        super().__init__(settings)
        # validated once at start-up: a wrong file stops the service with the key named
        self.ensemble_settings = load_settings_file(EnsembleSettings, settings.config_dir)

    def train(self, config: EnsembleTrainConfig, ctx: TrainContext) -> list[ModelVersion]:
        dataset = load_meta_dataset(ctx, config.data, config.labels)
        return [EnsembleModel.fit(config, dataset, ctx, self.ensemble_settings.confidence_threshold)]

    def predict(self, models: Mapping[str, ModelVersion], instances: list[ClassifierInstance], options: EnsembleOptions | None = None) -> list[dict]:
        model: EnsembleModel = models["ensemble"]  # type: ignore[assignment]
        if options is not None and options.want == "probability" and model.voting == "hard":
            raise InvalidInput(
                f"{model.stored_metadata['version'] if model.stored_metadata else 'this version'} is a hard-voting "
                "ensemble: it gives each base model's probability and vote, its weighted vote and vote share, but no "
                "calibrated ensemble probability; ask for want='vote' or activate a soft-voting version",
                field="options.want",
            )
        X, used = instances_to_matrix(instances, model.features, model.feature_params)
        base = model.base_probabilities(X)
        score, vote = combine(base, model.weights, model.voting)
        share = vote_share(base, model.weights)
        threshold = self.ensemble_settings.confidence_threshold
        soft = model.voting == "soft"
        return [
            {
                "symbol": inst.symbol,
                "side": inst.side,
                "voting": model.voting,
                "probability": float(score[i]) if soft else None,
                "vote": int(vote[i]),
                "vote_share": float(share[i]),
                "take": bool(score[i] >= threshold),
                "confidence_threshold": threshold,
                "base_models": {n: {"probability": float(base[i, j]), "vote": int(base[i, j] > 0.5)} for j, n in enumerate(BASE_MODELS)},
                "features": used[i],
            }
            for i, inst in enumerate(instances)
        ]

    @classmethod
    def predict_example(cls) -> dict:
        from kryptobot.models.examples import classifier_example

        return {**classifier_example(), "options": {"want": "auto"}}
