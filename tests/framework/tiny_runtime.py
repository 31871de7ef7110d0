"""A tiny model runtime for the framework's own tests: logistic regression on two numbers.

It lives in an importable module, not in the test file, because the framework's training
job runs in a child process that imports the runtime by ``"module:Class"``. The version
is saved as JSON (coefficients and intercept), never pickled.
"""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat

from kryptobot.errors import TrainingError
from kryptobot.runtime import ModelRuntime, ModelVersion, TrainContext
from services.framework import create_model_app

FEATURES = ("x1", "x2")
#: the rule the synthetic labels follow: y = 1 when 2*x1 - x2 + noise > 0
TRUE_COEF = (2.0, -1.0)
GATE_TIMEOUT = 60.0


#: an x1 that makes predict fail like a buggy model (the framework's 500 path)
BUG_TRIGGER = 13.125


class TinyTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_samples: int = Field(400, ge=40, le=100_000, description="synthetic samples (the last quarter is held out)")
    seed: int = Field(0, ge=0)
    C: float = Field(1.0, gt=0, description="inverse regularisation strength")
    gate: str | None = Field(None, description="wait until this file exists before fitting (holds a job running)")
    activate: bool = True


class TinyInstance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    x1: FiniteFloat
    x2: FiniteFloat


class TinyPrediction(BaseModel):
    probability: float = Field(ge=0, le=1)
    label: int


class TinyModel(ModelVersion):
    """Coefficients of a fitted logistic regression; scored with numpy, no estimator object."""

    line = "tiny"

    def __init__(self, coef: list[float], intercept: float, params: dict, metrics: dict):
        self.coef = np.asarray(coef, dtype=float)
        self.intercept = float(intercept)
        self.params = params
        self.metrics = metrics

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(X @ self.coef + self.intercept)))

    def save(self, artifacts: Path, reports: Path) -> None:
        (artifacts / "model.json").write_text(json.dumps({"coef": self.coef.tolist(), "intercept": self.intercept}))
        (reports / "training_results.json").write_text(json.dumps(self.metrics))

    @classmethod
    def load(cls, artifacts: Path, metadata: dict) -> TinyModel:
        saved = json.loads((artifacts / "model.json").read_text())
        return cls(saved["coef"], saved["intercept"], metadata.get("params") or {}, metadata.get("metrics") or {})

    def metadata(self) -> dict:
        return {"params": self.params, "features": list(FEATURES), "metrics": self.metrics}


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES)))
    y = (X @ np.array(TRUE_COEF) + rng.normal(scale=0.5, size=n) > 0).astype(int)
    return X, y


def wait_for_gate(gate: str) -> None:
    deadline = time.monotonic() + GATE_TIMEOUT
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TrainingError(f"gate {gate} did not open in {GATE_TIMEOUT:.0f}s", field="gate")
        time.sleep(0.05)


class TinyRuntime(ModelRuntime):
    """Logistic regression on two numbers (`x1`, `x2`): the framework's test runtime."""

    name = "tiny"
    lines = ("tiny",)
    version_classes = {"tiny": TinyModel}
    TrainConfig = TinyTrainConfig
    Instance = TinyInstance
    Prediction = TinyPrediction

    def train(self, config: TinyTrainConfig, ctx: TrainContext) -> list[ModelVersion]:
        from sklearn.linear_model import LogisticRegression

        if config.gate:
            ctx.progress(0.1, "waiting for the gate", force=True)
            wait_for_gate(config.gate)
        X, y = synthetic(config.n_samples, config.seed)
        cut = len(X) * 3 // 4
        fitted = LogisticRegression(C=config.C).fit(X[:cut], y[:cut])
        ctx.progress(0.8, "evaluating")
        majority = int(y[:cut].mean() >= 0.5)
        metrics = {
            "accuracy": float((fitted.predict(X[cut:]) == y[cut:]).mean()),
            "baseline": float((y[cut:] == majority).mean()),
            "test_samples": len(X) - cut,
        }
        params = config.model_dump(exclude={"gate", "activate"})
        return [TinyModel(fitted.coef_[0].tolist(), float(fitted.intercept_[0]), params, metrics)]

    def predict(self, models: Mapping[str, ModelVersion], instances: list[TinyInstance], options=None) -> list[dict]:
        model: TinyModel = models["tiny"]  # type: ignore[assignment]
        if any(inst.x1 == BUG_TRIGGER for inst in instances):  # a bug, as a model could have one
            raise RuntimeError("model file /secret/path/weights.bin is corrupt")
        X = np.array([[inst.x1, inst.x2] for inst in instances])
        return [{"probability": float(p), "label": int(p >= 0.5)} for p in model.probabilities(X)]

    @classmethod
    def predict_example(cls) -> dict:
        return {"instances": [{"x1": 1.5, "x2": -0.5}, {"x1": -1.0, "x2": 2.0}]}


def create_app():
    return create_model_app(TinyRuntime)
