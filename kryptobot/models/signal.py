"""Signal service model: a RandomForest meta-labeller and its feature selection.

Given a technical signal (side + the bar it fired on), it predicts the probability
that the signal succeeds (take-profit before stop-loss, see :mod:`kryptobot.labels`).
Training reports out-of-sample walk-forward metrics next to naive baselines; serving
runs the forest through ONNX Runtime.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Mapping

import joblib
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kryptobot import plots
from kryptobot.evaluation import confusion
from kryptobot.features import FEATURE_NAMES, PIPELINE_VERSION, FeatureParams
from kryptobot.models.meta import (
    EvaluationConfig,
    ForestParams,
    LabelConfig,
    OnnxClassifier,
    check_feature_subset,
    data_range,
    instances_to_matrix,
    load_meta_dataset,
    model_columns,
    walk_forward_report,
)
from kryptobot.runtime import JobKind, ModelService, ModelVersion, TrainContext
from kryptobot.schemas import ClassifierInstance, TrainConfigBase
from kryptobot.models import selection


class SignalTrainConfig(TrainConfigBase):
    model: ForestParams = Field(default_factory=ForestParams)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    features: list[str] | None = Field(None, description=f"subset of {FEATURE_NAMES}; default all")

    @field_validator("features")
    @classmethod
    def _known_features(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            unknown = [f for f in value if f not in FEATURE_NAMES]
            if unknown or not value:
                raise ValueError(f"unknown feature(s) {unknown}; known: {FEATURE_NAMES}" if unknown else "empty feature list")
        return value

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "data": {"source": "synthetic", "symbols": ["SYNA", "SYNB"], "start": "2014-01-01", "end": "2022-12-31"},
                    "model": {"n_estimators": 100, "max_depth": 6, "min_samples_leaf": 20},
                    "labels": {"tp_mult": 2.0, "sl_mult": 2.0, "max_holding": 10},
                }
            ]
        },
    )


class FeatureSelectionConfig(TrainConfigBase):
    """Try importance-threshold, top-N and RFECV feature sets against the active model's."""

    importance_threshold: float = Field(0.05, ge=0, le=1)
    top_n: int = Field(5, ge=1, le=len(FEATURE_NAMES))
    rfecv: bool = Field(True, description="also run recursive feature elimination with (purged) CV")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"data": {"symbols": ["SYNA", "SYNB"]}}]})


class SignalPrediction(BaseModel):
    symbol: str | None = None
    probability: float = Field(description="P(signal succeeds)")
    side: Literal["buy", "sell"]
    features: dict[str, float] = Field(description="feature values the model saw")


class SignalModel(ModelVersion):
    """A fitted forest, its ONNX compilation, and what it was trained on."""

    line = "signal"

    def __init__(self, forest, features: list[str], feature_params: FeatureParams, info: dict, reports: dict | None = None):
        self.forest = forest
        self.features = features
        self.feature_params = feature_params
        self.info = info
        self._reports = reports or {}
        self._onnx: OnnxClassifier | None = None

    # -- training --------------------------------------------------------------------
    @classmethod
    def fit(cls, config: SignalTrainConfig, dataset, features: list[str], ctx: TrainContext, extra: dict | None = None) -> "SignalModel":
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
            "metrics": {**metrics, "feature_importance": importance, "confusion_matrix": matrix},
            **(extra or {}),
        }
        return cls(forest, features, FeatureParams(), info)

    # -- persistence -----------------------------------------------------------------
    def save(self, artifacts: Path, reports: Path) -> None:
        joblib.dump(self.forest, artifacts / "forest.joblib")
        OnnxClassifier.export(self.forest, len(self.features) + 1, artifacts / "forest.onnx")
        (artifacts / "pipeline.json").write_text(
            json.dumps({"features": self.features, "feature_params": self.feature_params.to_dict(), "version": PIPELINE_VERSION})
        )
        m = self.info["metrics"]
        results = {
            "accuracy": m["accuracy"], "precision": m["precision"], "recall": m["recall"], "f1": m["f1"],
            "roc_auc": m["roc_auc"], "brier": m["brier"], "base_rate": m["base_rate"], "baseline": m["baseline"],
            "feature_importance": m["feature_importance"],
            "training_samples": self.info["data_range"]["samples"],
            "positive_outcomes": self.info["data_range"]["positive_outcomes"],
            "evaluation": m["evaluation"],
        }
        (reports / "training_results.json").write_text(json.dumps(results, indent=2))
        plots.bar_chart(reports / "feature_importance.png", m["feature_importance"], "Feature importance (impurity)", "importance")
        plots.confusion_matrix(reports / "confusion_matrix.png", m["confusion_matrix"], ["fail", "success"], "Out-of-sample confusion matrix")
        for name, write in self._reports.items():
            write(reports / name)

    @classmethod
    def load(cls, artifacts: Path, metadata: dict) -> "SignalModel":
        pipeline = json.loads((artifacts / "pipeline.json").read_text())
        model = cls(None, pipeline["features"], FeatureParams.from_dict(pipeline["feature_params"]), metadata)
        model._onnx = OnnxClassifier.load(artifacts / "forest.onnx")
        model._forest_path = artifacts / "forest.joblib"
        return model

    def sklearn_forest(self):
        """The scikit-learn forest (for feature selection), loaded on demand."""
        if self.forest is None:
            self.forest = joblib.load(self._forest_path)
        return self.forest

    def metadata(self) -> dict:
        return self.info

    def warmup(self) -> None:
        self.predict_matrix(np.zeros((4, len(self.features) + 1), dtype=np.float32))

    # -- serving ---------------------------------------------------------------------
    def predict_matrix(self, X: np.ndarray) -> np.ndarray:
        if self._onnx is None:
            return self.forest.predict_proba(X)[:, 1]
        return self._onnx.predict_proba(X)


class SignalService(ModelService):
    """RandomForest meta-labeller: the probability that a technical trade signal succeeds.

    Train with `POST /train` (synthetic data by default: no network), then score signals
    with `POST /predict` from raw bars or from the nine named features.
    """

    name = "signal"
    lines = ("signal",)
    version_classes = {"signal": SignalModel}
    TrainConfig = SignalTrainConfig
    Instance = ClassifierInstance
    Prediction = SignalPrediction
    extra_jobs = (
        JobKind(
            "/feature-selection",
            FeatureSelectionConfig,
            "select_features",
            "Compare importance-threshold, top-N and RFECV feature sets by F1; the best becomes a new version",
        ),
    )

    def train(self, config: SignalTrainConfig, ctx: TrainContext) -> list[ModelVersion]:
        features = check_feature_subset(config.features)
        dataset = load_meta_dataset(ctx, config.data, config.labels)
        return [SignalModel.fit(config, dataset, features, ctx)]

    def select_features(self, config: FeatureSelectionConfig, ctx: TrainContext) -> list[ModelVersion]:
        return [selection.run_feature_selection(config, ctx)]

    def predict(self, models: Mapping[str, ModelVersion], instances: list[ClassifierInstance], options=None) -> list[dict]:
        model: SignalModel = models["signal"]  # type: ignore[assignment]
        X, used = instances_to_matrix(instances, model.features, model.feature_params)
        proba = model.predict_matrix(X)
        return [
            {"symbol": inst.symbol, "probability": float(p), "side": inst.side, "features": u}
            for p, inst, u in zip(proba, instances, used)
        ]

    @classmethod
    def predict_example(cls) -> dict:
        from kryptobot.models.examples import classifier_example

        return classifier_example()
