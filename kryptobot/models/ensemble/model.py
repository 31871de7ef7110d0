"""A trained ensemble: its base models compiled to ONNX, and the vote that combines them.

:func:`combine` computes what ``VotingClassifier`` computes (checked in tests); training's
out-of-sample scores and serving both use it, so what was measured is what is served.
"""
from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np

from kryptobot.features import FeatureParams
from kryptobot.models.common.onnx import OnnxClassifier
from kryptobot.models.ensemble.onnx import export_base_model
from kryptobot.models.ensemble.reports import write_reports
from kryptobot.models.ensemble.schemas import BASE_MODELS
from kryptobot.runtime import ModelVersion


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
