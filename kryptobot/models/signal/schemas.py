"""The signal service's wire contract: training configs and the prediction it answers.

Importable without scikit-learn: the trader parses the service's answers with these.
"""
from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from kryptobot.features import FEATURE_NAMES
from kryptobot.models.common.configs import EvaluationConfig, ForestParams, LabelConfig
from kryptobot.schemas import Answer, TrainConfigBase


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



class SignalPrediction(Answer):
    symbol: str | None = None
    probability: float = Field(description="P(signal succeeds)")
    side: Literal["buy", "sell"]
    features: dict[str, float] = Field(description="feature values the model saw")
