"""Request and response schemas of the ensemble service.

Everything a request can get wrong (weights, voting type, hyper-parameters) is checked
here, in pydantic, so the HTTP layer answers 422 naming the field before a job starts.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kryptobot.models.common.configs import EvaluationConfig, ForestParams, LabelConfig
from kryptobot.schemas import Answer, TrainConfigBase

#: the base models, in the order of ``weights`` and of the VotingClassifier's estimators
BASE_MODELS = ("random_forest", "gradient_boosting", "ada_boost")


class GradientBoostingParams(BaseModel):
    """GradientBoostingClassifier hyper-parameters (scikit-learn names)."""

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
    """AdaBoostClassifier (SAMME, decision stumps) hyper-parameters (scikit-learn names)."""

    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(100, ge=1, le=2000)
    learning_rate: float = Field(0.5, gt=0, le=5)
    random_state: int = 42

    def build(self):
        from sklearn.ensemble import AdaBoostClassifier

        return AdaBoostClassifier(**self.model_dump())


class EnsembleTrainConfig(TrainConfigBase):
    voting: Literal["soft", "hard"] = Field(
        "soft", description="soft: weighted mean probability; hard: weighted majority vote (no probability)"
    )
    weights: list[float] = Field(
        default_factory=lambda: [1.0, 1.0, 1.0],
        description=f"one per base model, in the order {', '.join(BASE_MODELS)}; >= 0, not all zero",
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
        if any(not math.isfinite(w) or w < 0 for w in value):
            raise ValueError("weights must be finite and >= 0")
        if sum(value) == 0:
            raise ValueError("at least one weight must be > 0")
        return [float(w) for w in value]

    def estimators(self) -> list[tuple[str, object]]:
        """Unfitted base models, named and ordered as in ``BASE_MODELS``."""
        return [(name, getattr(self, name).build()) for name in BASE_MODELS]


class EnsembleOptions(BaseModel):
    """What the caller relies on. The response always carries everything the version can give."""

    model_config = ConfigDict(extra="forbid")

    want: Literal["auto", "probability", "vote"] = Field(
        "auto",
        description=(
            "auto / vote: always answered. probability: only a soft ensemble has one; asking a hard-voting "
            "ensemble for it is a 422 (it gives the weighted vote share, which is not a calibrated probability)."
        ),
    )


class BaseModelOutput(Answer):
    probability: float = Field(description="this base model's P(success)")
    vote: int = Field(description="1 when its probability > 0.5 (its scikit-learn predict)")


class EnsemblePrediction(Answer):
    symbol: str | None = None
    side: Literal["buy", "sell"]
    voting: Literal["soft", "hard"]
    probability: float | None = Field(description="soft only: weighted mean P(success); null for a hard ensemble")
    vote: int = Field(description="the ensemble's decision, as VotingClassifier.predict (1 = the signal succeeds)")
    vote_share: float = Field(description="weighted share of base-model votes for success")
    take: bool = Field(
        description="probability (soft) or vote share (hard) >= confidence_threshold of ensemble_settings.json"
    )
    confidence_threshold: float
    base_models: dict[str, BaseModelOutput]
    features: dict[str, float] = Field(description="feature values the models saw")
