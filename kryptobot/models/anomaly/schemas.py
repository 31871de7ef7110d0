"""The anomaly service's wire contract: the training config and the prediction it answers.

Importable without TensorFlow: the trader parses the service's answers with these.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kryptobot.schemas import Answer, BarsInstance, TrainConfigBase


class AnomalyInstance(BarsInstance):
    """Bars of one symbol, oldest first: at least ``window + 121`` of them (141 for the default window).

    Give the ``symbol``: a symbol the version was trained on is judged against its own
    training history (see ``AnomalyPrediction.calibration``).
    """



class AnomalyPredictOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    last_only: bool = Field(False, description="score only the most recent window (what a trader polls each bar)")



class WindowColumns(Answer):
    """One entry per scored window, oldest first, in columns."""

    timestamp: list[datetime] = Field(description="timestamp of the window's last bar")
    error: list[float] = Field(description="mean squared reconstruction error")
    score: list[float] = Field(description="error / the instance's threshold; above 1 is anomalous")
    anomaly: list[bool]



Calibration = Literal["symbol", "instance", "pooled"]


class AnomalyPrediction(Answer):
    symbol: str | None = None
    window: int = Field(description="bars per window")
    threshold: float = Field(description="reconstruction error above which a window of this instance is anomalous")
    calibration: Calibration = Field(
        description="where the threshold comes from: 'symbol' (this symbol's training windows), 'instance' (a symbol "
                    "the version was not trained on: the same percentile of this instance's own windows, when it sent "
                    "at least calibration_min_windows of them), or 'pooled' (every training window of every symbol)"
    )
    anomaly: bool = Field(description="the most recent window is anomalous")
    score: float = Field(description="the most recent window's error / threshold")
    anomalies: list[datetime] = Field(description="last-bar timestamps of the anomalous windows")
    windows: WindowColumns


class AnomalyTrainConfig(TrainConfigBase):
    """LSTM autoencoder hyper-parameters and the evaluation split."""

    epochs: int = Field(20, ge=1, le=500, description="maximum epochs (early stopping may end sooner)")
    batch_size: int = Field(64, ge=1, le=4096)
    window: int = Field(20, ge=5, le=250, description="bars per window")
    score_bars: int | None = Field(
        1, ge=1, le=250, description="a window's error is taken over its last score_bars bars (null: all of them)"
    )
    threshold_percentile: float = Field(
        98.0, ge=50, lt=100, description="each symbol's threshold = this percentile of its own training windows' errors"
    )
    calibration_min_windows: int = Field(
        250, ge=20, le=10_000,
        description="fewest windows a threshold is set from: a trained symbol with fewer training windows, or an unseen "
                    "symbol's instance with fewer windows, falls back to the pooled threshold",
    )
    units: int = Field(64, ge=4, le=512, description="LSTM units of encoder and decoder")
    dropout: float = Field(0.2, ge=0, lt=1)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    patience: int = Field(3, ge=1, le=100, description="early stopping: epochs without a better val_loss")
    validation_fraction: float = Field(0.15, gt=0, lt=0.5, description="of each symbol's bars, after the train part")
    holdout_fraction: float = Field(
        0.25, gt=0, lt=0.6, description="of each symbol's bars, last: never trained on, used to measure detection"
    )
    holdout_start: date | None = Field(
        None,
        description="instead of holdout_fraction: windows ending on or after this day are the holdout (fit on earlier "
                    "years, score later ones); validation_fraction is then of the windows before it",
    )
    match_bars: int = Field(
        3, ge=0, le=50, description="detection tolerance (bars) when scoring against ground truth (planted anomalies or dated shocks)"
    )
    seed: int = 42

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "data": {"source": "synthetic", "symbols": ["SYNA", "SYNB"], "start": "2018-01-01", "end": "2023-12-31"},
                    "epochs": 10,
                    "batch_size": 64,
                    "window": 20,
                    "threshold_percentile": 98.0,
                }
            ]
        },
    )

    @model_validator(mode="after")
    def _train_part_left(self) -> "AnomalyTrainConfig":
        if self.score_bars is not None and self.score_bars > self.window:
            raise ValueError(f"score_bars ({self.score_bars}) cannot exceed window ({self.window})")
        if self.validation_fraction + self.holdout_fraction > 0.7:
            raise ValueError("validation_fraction + holdout_fraction must leave at least 30% of the bars to train on")
        return self
