"""A trained signal model: the fitted forest, its ONNX compilation and what it was trained on."""
from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np

from kryptobot import plots
from kryptobot.features import PIPELINE_VERSION, FeatureParams
from kryptobot.models.common.onnx import OnnxClassifier
from kryptobot.runtime import ModelVersion


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
            "threshold_sweep": m.get("threshold_sweep"),
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
        # serving reads only the ONNX graph: forest.joblib (the original design's artifact)
        # is written for users' own analysis and never unpickled here
        model._onnx = OnnxClassifier.load(artifacts / "forest.onnx")
        return model

    def metadata(self) -> dict:
        return self.info

    def warmup(self) -> None:
        self.predict_matrix(np.zeros((4, len(self.features) + 1), dtype=np.float32))

    # -- serving ---------------------------------------------------------------------
    def predict_matrix(self, X: np.ndarray) -> np.ndarray:
        if self._onnx is None:
            return self.forest.predict_proba(X)[:, 1]
        return self._onnx.predict_proba(X)
