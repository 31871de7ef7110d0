"""Request parameters the meta-labelling classifiers (signal, ensemble) share.

Plain pydantic: importable without scikit-learn, so the wire schemas that use them are too.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kryptobot.labels import LabelParams


class ForestParams(BaseModel):
    """RandomForest hyper-parameters (scikit-learn names)."""

    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(200, ge=1, le=2000)
    max_depth: int | None = Field(6, ge=1, le=64)
    min_samples_leaf: int = Field(20, ge=1)
    max_features: Literal["sqrt", "log2"] | float = "sqrt"
    class_weight: Literal["balanced", "balanced_subsample"] | None = None
    random_state: int = 42

    def build(self):
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(**self.model_dump(), n_jobs=-1)



class LabelConfig(BaseModel):
    """Triple-barrier meta-labels: take-profit / stop-loss in ATRs and a time limit in bars."""

    model_config = ConfigDict(extra="forbid")

    tp_mult: float = Field(LabelParams.tp_mult, gt=0, le=20, description="take-profit distance in ATRs")
    sl_mult: float = Field(LabelParams.sl_mult, gt=0, le=20, description="stop-loss distance in ATRs")
    max_holding: int = Field(LabelParams.max_holding, ge=1, le=250, description="time limit (bars)")

    def params(self) -> LabelParams:
        return LabelParams(tp_mult=self.tp_mult, sl_mult=self.sl_mult, max_holding=self.max_holding)



class EvaluationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_splits: int = Field(5, ge=2, le=20, description="walk-forward test blocks")
    threshold: float = Field(0.5, gt=0, lt=1, description="probability above which a signal counts as 'take'")
