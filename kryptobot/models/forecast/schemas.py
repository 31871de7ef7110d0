"""The forecast service's wire contract: the training config and the prediction it answers.

Importable without TensorFlow or scikit-learn: the trader parses the service's answers with these.
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kryptobot.schemas import Answer, BarsInstance, TrainConfigBase


MODEL_TYPES = ("lstm", "gru")



COVERAGE_LEVELS = (0.5, 0.8, 0.9, 0.95)



CONFIDENCE_METHOD = (
    "probability that the realised change over the horizon has the sign of the forecast trend: "
    "sigmoid(b * |forecast log return at the horizon| / sigma), sigma = std of the input window's log returns, "
    "b fitted by logistic regression on the held-out calibration block (0.5 = coin flip). "
    "Combined: mean over the active models of that probability for the combined direction "
    "(p where a model agrees with it, 1 - p where it does not)."
)



INTERVAL_METHOD = (
    "split-conformal per horizon step on a held-out calibration block, scores |error| / sigma, "
    "so bounds are forecast +/- q_step * sigma in log-return space; the test-block coverage of each version "
    "is in its metrics. Combined: the union (lowest lower, highest upper bound) of the models' intervals, "
    "which covers at least as often as each model's interval does."
)


InputKind = Literal["univariate", "multivariate"]


ModelType = Literal["lstm", "gru"]



Coverage = Literal[0.5, 0.8, 0.9, 0.95]



class ForecastTrainConfig(TrainConfigBase):
    """Which forecasters to train, on what, and how. Unset window sizes come from
    ``config/forecasting_settings.json``."""

    model_types: list[ModelType] | None = Field(
        None, min_length=1, description="model types to train, each a version line (default: the settings file's)"
    )
    sequence_length: int | None = Field(None, ge=5, le=500, description="bars per input window (default: settings, 60)")
    forecast_horizon: int | None = Field(None, ge=1, le=250, description="bars forecast ahead (default: settings, 5)")
    inputs: InputKind = Field(
        "multivariate", description="univariate: close log returns; multivariate: all OHLCV-derived log-ratio features"
    )
    epochs: int = Field(30, ge=1, le=500, description="maximum epochs (early stopping may end sooner)")
    batch_size: int = Field(64, ge=1, le=4096)
    units: int = Field(64, ge=4, le=512, description="units of the first recurrent layer (the second has half)")
    dropout: float = Field(0.2, ge=0, lt=1)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    patience: int = Field(5, ge=1, le=100, description="early stopping: epochs without a better val_loss")
    validation_fraction: float = Field(0.1, gt=0, lt=0.5, description="of each symbol's samples, after train")
    calibration_fraction: float = Field(0.15, gt=0, lt=0.5, description="after validation: fits the intervals")
    test_fraction: float = Field(0.15, gt=0, lt=0.5, description="last: every reported metric is measured here")
    coverage: Coverage = Field(0.9, description="interval coverage of the plots and the headline metric")
    seed: int = 42

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "data": {"source": "synthetic", "symbols": ["SYNA", "SYNB"], "start": "2016-01-01", "end": "2023-12-31"},
                    "model_types": ["lstm", "gru"],
                    "sequence_length": 60,
                    "forecast_horizon": 5,
                    "epochs": 10,
                    "batch_size": 64,
                }
            ]
        },
    )

    @field_validator("model_types")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _train_block_left(self) -> "ForecastTrainConfig":
        if self.validation_fraction + self.calibration_fraction + self.test_fraction > 0.7:
            raise ValueError("validation_fraction + calibration_fraction + test_fraction must leave at least 30% to train on")
        return self


class ForecastInstance(BarsInstance):
    """Bars of one symbol, oldest first: at least ``sequence_length + 1`` of them (only the last are read)."""



class ForecastPredictOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    coverage: Coverage = Field(0.9, description="nominal coverage of the interval bounds")
    rolling: bool = Field(
        False,
        description="also forecast from every window of the bars (not only the last): the combined trend and "
        "confidence per bar, in one call (what a backtest needs)",
    )



class ForecastPath(Answer):
    model_version: str = Field(description="version(s) behind this path; 'lstm-v1+gru-v2' for the combination")
    horizon: int
    price: list[float] = Field(description="forecast close of each of the next horizon bars")
    lower: list[float] = Field(description="lower interval bound per bar")
    upper: list[float] = Field(description="upper interval bound per bar")
    trend: float = Field(description="forecast change over the horizon as a fraction of the last close (0.02 = +2%)")
    direction: Literal["up", "down", "flat"]
    confidence: float = Field(ge=0, le=1, description="probability that the direction is right; see confidence_method")



class RollingForecasts(Answer):
    """The combined forecast made at the close of each bar (columns, oldest first)."""

    timestamp: list[str] = Field(description="the bar each forecast was made at")
    trend: list[float]
    confidence: list[float]



class ForecastPrediction(Answer):
    symbol: str | None = None
    last_timestamp: datetime = Field(description="the last bar given: the forecast's origin")
    last_close: float
    coverage: float = Field(description="nominal coverage of every lower/upper bound")
    combined: ForecastPath = Field(description="mean of the active models' paths")
    models: dict[str, ForecastPath] = Field(description="each active model's forecast, by line")
    confidence_method: str = Field(description="how confidence is computed", examples=[CONFIDENCE_METHOD])
    interval_method: str = Field(description="how lower/upper are computed", examples=[INTERVAL_METHOD])
    rolling: RollingForecasts | None = Field(None, description="with options.rolling: a forecast per bar")
