"""Ensemble service model: a soft or hard VotingClassifier of RandomForest,
GradientBoosting and AdaBoost over the signal model's features and meta-labels.

Every base model and the ensemble are evaluated on the same purged walk-forward splits
as the signal model, so all of them (and the signal model) compare on the same
out-of-sample data. The ensemble's out-of-sample probabilities are combined from the
base models' with :func:`combine`, the same function serving uses, which is exactly what
``VotingClassifier`` computes (checked in tests). Serving runs each base model through
ONNX Runtime, so each one's probability and vote are available per instance.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Mapping

import joblib
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kryptobot import plots
from kryptobot.errors import InvalidInput
from kryptobot.features import FEATURE_NAMES, PIPELINE_VERSION, FeatureParams
from kryptobot.models.meta import (
    EvaluationConfig,
    LabelConfig,
    OnnxClassifier,
    data_range,
    instances_to_matrix,
    load_meta_dataset,
    model_columns,
    oos_report,
    walk_forward_report,
)
from kryptobot.models.signal import ForestParams
from kryptobot.runtime import ModelService, ModelVersion, TrainContext
from kryptobot.schemas import ClassifierInstance, TrainConfigBase
from kryptobot.settings import EnsembleSettings, load_settings_file

BASE_MODELS = ("random_forest", "gradient_boosting", "ada_boost")
COMPARED = ("accuracy", "precision", "recall", "f1", "roc_auc", "brier")


class GradientBoostingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(100, ge=1, le=2000)
    learning_rate: float = Field(0.05, gt=0, le=1)
    max_depth: int = Field(3, ge=1, le=16)
    subsample: float = Field(0.8, gt=0, le=1)
    random_state: int = 42

    def build(self):
        from sklearn.ensemble import GradientBoostingClassifier

        return GradientBoostingClassifier(**self.model_dump())


class AdaBoostParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(100, ge=1, le=2000)
    learning_rate: float = Field(0.5, gt=0, le=5)
    random_state: int = 42

    def build(self):
        from sklearn.ensemble import AdaBoostClassifier

        return AdaBoostClassifier(**self.model_dump())


class EnsembleTrainConfig(TrainConfigBase):
    voting: Literal["soft", "hard"] = Field("soft", description="soft: weighted mean probability; hard: weighted majority vote")
    weights: list[float] = Field(
        default_factory=lambda: [1.0, 1.0, 1.0],
        description="one per base model, in the order random_forest, gradient_boosting, ada_boost",
    )
    random_forest: ForestParams = Field(default_factory=lambda: ForestParams(n_estimators=100))
    gradient_boosting: GradientBoostingParams = Field(default_factory=GradientBoostingParams)
    ada_boost: AdaBoostParams = Field(default_factory=AdaBoostParams)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "data": {"source": "synthetic", "symbols": ["SYNA", "SYNB"], "start": "2014-01-01", "end": "2022-12-31"},
                    "voting": "soft",
                    "weights": [1, 2, 1],
                    "random_forest": {"n_estimators": 60},
                    "gradient_boosting": {"n_estimators": 60},
                    "ada_boost": {"n_estimators": 60},
                }
            ]
        },
    )

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: list[float]) -> list[float]:
        if len(value) != len(BASE_MODELS):
            raise ValueError(f"need exactly {len(BASE_MODELS)} weights ({', '.join(BASE_MODELS)}), got {len(value)}")
        if any(not np.isfinite(w) or w < 0 for w in value):
            raise ValueError("weights must be finite and >= 0")
        if sum(value) == 0:
            raise ValueError("at least one weight must be > 0")
        return [float(w) for w in value]

    def estimators(self) -> list[tuple[str, object]]:
        return [(name, getattr(self, name).build()) for name in BASE_MODELS]


def combine(base_proba: np.ndarray, weights: np.ndarray, voting: str) -> tuple[np.ndarray, np.ndarray]:
    """(score, vote) per row from base models' P(success), shape (rows, models).

    soft: score = weighted mean probability, vote = score > 0.5.
    hard: score = weighted share of base votes for success, vote = share > 0.5
    (a tie goes to "fail", as in ``VotingClassifier``'s argmax over class 0 first).
    """
    w = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    if voting == "soft":
        score = base_proba @ w
    else:
        score = (base_proba > 0.5).astype(np.float64) @ w
    return score, (score > 0.5).astype(int)


class EnsembleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    want: Literal["auto", "probability", "vote"] = Field(
        "auto",
        description="auto: probability for soft ensembles, vote for hard ones. A hard ensemble cannot give a probability.",
    )


class BaseModelOutput(BaseModel):
    probability: float
    vote: int


class EnsemblePrediction(BaseModel):
    symbol: str | None = None
    side: Literal["buy", "sell"]
    voting: Literal["soft", "hard"]
    probability: float | None = Field(description="soft only: weighted mean P(success)")
    vote: int = Field(description="1 = the ensemble takes the signal")
    vote_share: float = Field(description="weighted share of base votes for success")
    take: bool = Field(description="score >= confidence_threshold (ensemble_settings.json)")
    confidence_threshold: float
    base_models: dict[str, BaseModelOutput]
    features: dict[str, float]


class EnsembleModel(ModelVersion):
    line = "ensemble"

    def __init__(self, voting: str, weights: list[float], features: list[str], info: dict, estimator=None):
        self.voting = voting
        self.weights = np.asarray(weights, dtype=np.float64)
        self.features = features
        self.feature_params = FeatureParams()
        self.info = info
        self.estimator = estimator  # the fitted VotingClassifier (training side)
        self._onnx: dict[str, OnnxClassifier] = {}

    @classmethod
    def fit(cls, config: EnsembleTrainConfig, dataset, ctx: TrainContext) -> "EnsembleModel":
        from sklearn.ensemble import VotingClassifier

        features = list(FEATURE_NAMES)
        columns = model_columns(features)
        embargo = config.labels.max_holding
        per_model, oos = {}, {}
        for i, name in enumerate(BASE_MODELS):
            ctx.progress(0.1 + 0.6 * i / len(BASE_MODELS), f"walk-forward evaluation of {name}")
            per_model[name], oos[name] = walk_forward_report(getattr(config, name).build, dataset, columns, config.evaluation, embargo)
        stacked = np.column_stack([oos[n] for n in BASE_MODELS])
        tested = ~np.isnan(stacked).any(axis=1)
        score = np.full(len(dataset.y), np.nan)
        score[tested], _ = combine(stacked[tested], np.asarray(config.weights), config.voting)
        ensemble = oos_report(dataset.y, score, config.evaluation, embargo)
        y = dataset.y[tested]
        if config.voting == "hard":
            ensemble["brier"] = None  # a vote share is not a probability
            ensemble["probability_note"] = "hard voting: scores are weighted vote shares, not probabilities"
        ctx.progress(0.75, "fitting the ensemble on all data")
        estimator = VotingClassifier(config.estimators(), voting=config.voting, weights=config.weights, n_jobs=1)
        estimator.fit(dataset.X[columns].to_numpy(dtype=np.float32), dataset.y)
        reliability = None
        if config.voting == "soft":
            from sklearn.calibration import calibration_curve

            frac, mean = calibration_curve(y, score[tested], n_bins=10, strategy="quantile")
            reliability = {"mean_predicted": mean.tolist(), "fraction_positive": frac.tolist()}
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
        n_inputs = len(self.features) + 1
        for name, fitted in zip(BASE_MODELS, self.estimator.estimators_):
            OnnxClassifier.export(fitted, n_inputs, artifacts / f"{name}.onnx")
        (artifacts / "ensemble.json").write_text(
            json.dumps({"voting": self.voting, "weights": self.weights.tolist(), "features": self.features,
                        "feature_params": self.feature_params.to_dict()})
        )
        metrics = self.info["metrics"]
        rows = {"ensemble": metrics["ensemble"], **metrics["base_models"]}
        results = {
            "voting": self.voting,
            "weights": dict(zip(BASE_MODELS, self.weights.tolist())),
            "feature_columns": model_columns(self.features),
            "ensemble": {k: metrics["ensemble"].get(k) for k in (*COMPARED, "base_rate")},
            "base_models": {n: {k: m.get(k) for k in (*COMPARED, "base_rate")} for n, m in metrics["base_models"].items()},
            "baseline": metrics["ensemble"]["baseline"],
            "evaluation": metrics["ensemble"]["evaluation"],
            "reliability": metrics["reliability"],
            "training_samples": self.info["data_range"]["samples"],
            "positive_outcomes": self.info["data_range"]["positive_outcomes"],
        }
        (reports / "training_results.json").write_text(json.dumps(results, indent=2))
        by_metric = {k: {name: rows[name].get(k) or 0.0 for name in rows} for k in ("accuracy", "precision", "recall", "f1", "roc_auc")}
        plots.grouped_bars(reports / "model_comparison.png", by_metric, "Out-of-sample metrics: base models vs ensemble")
        by_model = {name: {k: rows[name].get(k) or 0.0 for k in ("accuracy", "precision", "recall", "f1", "roc_auc")} for name in rows}
        plots.grouped_bars(
            reports / "metrics_by_model.png", by_model, "Metrics by model (dashed: naive baseline)",
            baseline={k: metrics["ensemble"]["baseline"].get(k) for k in ("accuracy", "precision", "recall", "f1", "roc_auc")},
        )
        if metrics["reliability"]:
            rel = metrics["reliability"]
            plots.lines(
                reports / "calibration.png",
                {"ensemble": rel["fraction_positive"], "perfect": rel["mean_predicted"]},
                "Reliability of the soft ensemble (out-of-sample)", "mean predicted probability", "observed success rate",
                x=rel["mean_predicted"],
            )

    @classmethod
    def load(cls, artifacts: Path, metadata: dict) -> "EnsembleModel":
        spec = json.loads((artifacts / "ensemble.json").read_text())
        model = cls(spec["voting"], spec["weights"], spec["features"], metadata)
        model.feature_params = FeatureParams.from_dict(spec["feature_params"])
        model._onnx = {name: OnnxClassifier.load(artifacts / f"{name}.onnx") for name in BASE_MODELS}
        return model

    def metadata(self) -> dict:
        return self.info

    def base_probabilities(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([self._onnx[name].predict_proba(X) for name in BASE_MODELS])

    def warmup(self) -> None:
        self.base_probabilities(np.zeros((4, len(self.features) + 1), dtype=np.float32))


class EnsembleService(ModelService):
    """Voting ensemble (RandomForest, GradientBoosting, AdaBoost): the probability (soft) or
    vote (hard) that a technical signal succeeds, with every base model's probability and vote.
    """

    name = "ensemble"
    lines = ("ensemble",)
    version_classes = {"ensemble": EnsembleModel}
    TrainConfig = EnsembleTrainConfig
    Instance = ClassifierInstance
    Prediction = EnsemblePrediction
    PredictOptions = EnsembleOptions

    def __init__(self, settings):
        super().__init__(settings)
        self.ensemble_settings = load_settings_file(EnsembleSettings, settings.config_dir)

    def train(self, config: EnsembleTrainConfig, ctx: TrainContext) -> list[ModelVersion]:
        dataset = load_meta_dataset(ctx, config.data, config.labels)
        return [EnsembleModel.fit(config, dataset, ctx)]

    def predict(self, models: Mapping[str, ModelVersion], instances, options: EnsembleOptions | None = None) -> list[dict]:
        model: EnsembleModel = models["ensemble"]  # type: ignore[assignment]
        want = (options.want if options else "auto")
        if want == "probability" and model.voting == "hard":
            raise InvalidInput(
                "this is a hard-voting ensemble: it gives each base model's probability and vote, the ensemble's "
                "vote and its weighted vote share, but no ensemble probability; ask for want='vote' or activate a soft version",
                field="options.want",
            )
        X, used = instances_to_matrix(instances, model.features, model.feature_params)
        base = model.base_probabilities(X)
        score, vote = combine(base, model.weights, model.voting)
        hard_votes = (base > 0.5).astype(int)
        share = hard_votes @ (model.weights / model.weights.sum())
        threshold = self.ensemble_settings.confidence_threshold
        out = []
        for i, inst in enumerate(instances):
            out.append({
                "symbol": inst.symbol,
                "side": inst.side,
                "voting": model.voting,
                "probability": float(score[i]) if model.voting == "soft" else None,
                "vote": int(vote[i]),
                "vote_share": float(share[i]),
                "take": bool(score[i] >= threshold),
                "confidence_threshold": threshold,
                "base_models": {n: {"probability": float(base[i, j]), "vote": int(hard_votes[i, j])} for j, n in enumerate(BASE_MODELS)},
                "features": used[i],
            })
        return out

    @classmethod
    def predict_example(cls) -> dict:
        from kryptobot.models.examples import classifier_example

        return {**classifier_example(), "options": {"want": "auto"}}
