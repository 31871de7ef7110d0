"""The signal service's runtime: a RandomForest meta-labeller and its feature selection.

Given a technical signal (side + the bar it fired on), it predicts the probability
that the signal succeeds (take-profit before stop-loss, see :mod:`kryptobot.labels`).
Training reports out-of-sample walk-forward metrics next to naive baselines; serving
runs the forest through ONNX Runtime.
"""
from __future__ import annotations

from typing import Mapping

from kryptobot.models.common.classifier import classifier_verdict, instances_to_matrix
from kryptobot.models.signal import selection, training
from kryptobot.models.signal.model import SignalModel
from kryptobot.models.signal.schemas import FeatureSelectionConfig, SignalPrediction, SignalTrainConfig
from kryptobot.runtime import JobKind, ModelRuntime, ModelVersion, TrainContext, Verdict
from kryptobot.schemas import ClassifierInstance


class SignalRuntime(ModelRuntime):
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
    # ~0.2 ms per raw-bars instance (features + ONNX): a 64 KiB body (4 or 5 of them,
    # hundreds with named features) blocks the loop for about a millisecond
    inline_predict_bytes = 64 * 1024
    extra_jobs = (
        JobKind(
            "/feature-selection",
            FeatureSelectionConfig,
            "select_features",
            "Compare importance-threshold, top-N and RFECV feature sets by F1; the best becomes a new version",
        ),
    )

    def train(self, config: SignalTrainConfig, ctx: TrainContext) -> list[ModelVersion]:
        return [training.train(config, ctx)]

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

    def promotion(self, candidate: dict, champion: dict | None) -> Verdict:
        return classifier_verdict(candidate, champion)

    @classmethod
    def predict_example(cls) -> dict:
        from kryptobot.models.common.examples import classifier_example

        return classifier_example()
