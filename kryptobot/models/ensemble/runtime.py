"""The ensemble service's runtime: a soft or hard VotingClassifier of RandomForest,
GradientBoosting and AdaBoost over the signal model's features and meta-labels.

Every base model and the ensemble are evaluated on the same purged walk-forward splits
as the signal model, so all of them (and the signal model) compare on the same
out-of-sample data. Serving runs each base model through ONNX Runtime, so each one's
probability and vote are available per instance.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from kryptobot.errors import InvalidInput
from kryptobot.models.common.classifier import classifier_verdict, instances_to_matrix, load_meta_dataset
from kryptobot.models.ensemble import training
from kryptobot.models.ensemble.model import EnsembleModel, combine, vote_share
from kryptobot.models.ensemble.schemas import BASE_MODELS, EnsembleOptions, EnsemblePrediction, EnsembleTrainConfig
from kryptobot.runtime import ModelRuntime, ModelVersion, TrainContext, Verdict
from kryptobot.schemas import ClassifierInstance
from kryptobot.settings import EnsembleSettings, load_settings_file
from kryptobot.thresholds import classifier_threshold


class EnsembleRuntime(ModelRuntime):
    """Voting ensemble (RandomForest, GradientBoosting, AdaBoost): the probability (soft) or
    vote (hard) that a technical signal succeeds, with every base model's probability and vote.

    `take` applies `confidence_threshold` of config/ensemble_settings.json (`"auto"`: the one the
    active version's out-of-sample threshold sweep picks for the signal's side); a hard-voting
    version has no probability (asking for one with `options.want = "probability"` is a 422).
    """

    name = "ensemble"
    lines = ("ensemble",)
    version_classes: ClassVar[Mapping[str, type[ModelVersion]]] = {"ensemble": EnsembleModel}
    TrainConfig = EnsembleTrainConfig
    Instance = ClassifierInstance
    Prediction = EnsemblePrediction
    PredictOptions = EnsembleOptions
    # ~0.2 ms per raw-bars instance (features + ONNX): a 64 KiB body (4 or 5 of them,
    # hundreds with named features) blocks the loop for about a millisecond
    inline_predict_bytes = 64 * 1024

    def __init__(self, settings):
        super().__init__(settings)
        # validated once at start-up: a wrong file stops the service with the key named
        self.ensemble_settings = load_settings_file(EnsembleSettings, settings.config_dir)

    def train(self, config: EnsembleTrainConfig, ctx: TrainContext) -> list[ModelVersion]:
        dataset = load_meta_dataset(ctx, config.data, config.labels)
        return [training.fit(config, dataset, ctx, self.ensemble_settings.confidence_threshold)]

    def predict(self, models: Mapping[str, ModelVersion], instances: list[ClassifierInstance], options: EnsembleOptions | None = None) -> list[dict]:
        model: EnsembleModel = models["ensemble"]  # type: ignore[assignment]
        if options is not None and options.want == "probability" and model.voting == "hard":
            raise InvalidInput(
                f"{model.version or 'this version'} is a hard-voting "
                "ensemble: it gives each base model's probability and vote, its weighted vote and vote share, but no "
                "calibrated ensemble probability; ask for want='vote' or activate a soft-voting version",
                field="options.want",
            )
        X, used = instances_to_matrix(instances, model.features, model.feature_params)
        base = model.base_probabilities(X)
        score, vote = combine(base, model.weights, model.voting)
        share = vote_share(base, model.weights)
        setting, metrics = self.ensemble_settings.confidence_threshold, (model.info.get("metrics") or {}).get("ensemble")
        by_side = {side: classifier_threshold(setting, metrics, side)[0] for side in ("buy", "sell")}
        soft = model.voting == "soft"
        return [
            {
                "symbol": inst.symbol,
                "side": inst.side,
                "voting": model.voting,
                "probability": float(score[i]) if soft else None,
                "vote": int(vote[i]),
                "vote_share": float(share[i]),
                "take": bool(score[i] >= by_side[inst.side]),
                "confidence_threshold": by_side[inst.side],
                "base_models": {n: {"probability": float(base[i, j]), "vote": int(base[i, j] > 0.5)} for j, n in enumerate(BASE_MODELS)},
                "features": used[i],
            }
            for i, inst in enumerate(instances)
        ]

    def promotion(self, candidate: dict, champion: dict | None) -> Verdict:
        return classifier_verdict(candidate, champion, "metrics.ensemble")

    @classmethod
    def predict_example(cls) -> dict:
        from kryptobot.models.common.examples import classifier_example

        return {**classifier_example(), "options": {"want": "auto"}}
