"""One trained anomaly detector: the LSTM autoencoder, its scaler, window and per-symbol thresholds.

Serving runs the autoencoder through :class:`kryptobot.models.common.neural.CompiledModel`
(one traced ``tf.function``), never ``model.predict`` per request. TensorFlow is imported
only when a detector is built or loaded.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from kryptobot import plots
from kryptobot.errors import IntegrityError
from kryptobot.models.common import neural
from kryptobot.models.anomaly.data import (
    FEATURES,
    LOOKBACK,
    PIPELINE_VERSION,
    bar_features,
    min_bars,
    window_errors,
)
from kryptobot.models.common.sequences import FeatureScaler, windows
from kryptobot.runtime import ModelVersion

MODEL_FILE = "autoencoder.keras"
PIPELINE_FILE = "pipeline.json"


def build_autoencoder(window: int, n_features: int, units: int, dropout: float, learning_rate: float):
    """Encoder LSTM -> bottleneck repeated over the window -> decoder LSTM -> per-bar dense."""
    keras = neural.tf().keras
    inputs = keras.Input((window, n_features))
    x = keras.layers.LSTM(units)(inputs)
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.RepeatVector(window)(x)
    x = keras.layers.LSTM(units, return_sequences=True)(x)
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.TimeDistributed(keras.layers.Dense(n_features))(x)
    model = keras.Model(inputs, outputs, name="lstm_autoencoder")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model


@dataclass(frozen=True)
class Calibration:
    """Which reconstruction error is anomalous for which symbol.

    Errors are not comparable across symbols (one reconstructs worse than another even
    in calm times), so each symbol is judged against its own history: its threshold is
    ``percentile`` of its own training windows' errors. A symbol the version has not
    seen is judged against the same percentile of the windows it is sent with, when there
    are at least ``min_windows`` of them ("instance"; the trader sends a year and more);
    otherwise, and for a trained symbol with too few training windows, against the
    percentile of every training window of every symbol ("pooled").
    """

    pooled: float
    symbols: Mapping[str, float]
    percentile: float
    min_windows: int

    @classmethod
    def fit(cls, errors: Mapping[str, np.ndarray], percentile: float, min_windows: int) -> "Calibration":
        """From each symbol's training-window errors."""
        pooled = float(np.percentile(np.concatenate(list(errors.values())), percentile))
        symbols = {s: float(np.percentile(e, percentile)) for s, e in errors.items() if len(e) >= min_windows}
        return cls(pooled, symbols, percentile, min_windows)

    def knows(self, symbol: str | None) -> bool:
        return symbol in self.symbols

    def threshold(self, symbol: str | None, instance_errors: np.ndarray | None = None) -> tuple[float, str]:
        """``(threshold, calibration)`` for ``symbol``; ``instance_errors``: every window of what it was sent with."""
        if symbol in self.symbols:
            return self.symbols[symbol], "symbol"
        if instance_errors is not None and len(instance_errors) >= self.min_windows:
            return float(np.percentile(instance_errors, self.percentile)), "instance"
        return self.pooled, "pooled"

    def to_dict(self) -> dict:
        return {"pooled": self.pooled, "symbols": dict(self.symbols), "percentile": self.percentile, "min_windows": self.min_windows}

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        return cls(float(data["pooled"]), {s: float(t) for s, t in data["symbols"].items()}, float(data["percentile"]),
                   int(data["min_windows"]))


@dataclass
class WindowScores:
    """Scores of one bar series' windows (each named by the timestamp of its last bar)."""

    ends: pd.Series
    errors: np.ndarray
    threshold: float
    calibration: str

    @property
    def flags(self) -> np.ndarray:
        return self.errors > self.threshold

    @property
    def scores(self) -> np.ndarray:
        return self.errors / self.threshold

    def last(self) -> "WindowScores":
        return WindowScores(self.ends.iloc[-1:].reset_index(drop=True), self.errors[-1:], self.threshold, self.calibration)


@dataclass
class TrainingReport:
    """What ``save`` turns into report files; kept only on a freshly trained detector."""

    results: dict
    history: dict[str, list[float]]
    training_errors: np.ndarray
    price_marks: dict[str, tuple[pd.Series, np.ndarray, pd.Series]] = field(default_factory=dict)


class AnomalyDetector(ModelVersion):
    """A fitted autoencoder and the pipeline that feeds and judges it."""

    line = "anomaly"

    def __init__(self, keras_model, scaler: FeatureScaler, window: int, score_bars: int | None, calibration: Calibration,
                 info: dict, report: TrainingReport | None = None):
        self.keras_model = keras_model
        self.scaler = scaler
        self.window = window
        self.score_bars = score_bars
        self.calibration = calibration
        self.info = info
        self.report = report
        self._compiled = neural.CompiledModel(keras_model, (window, len(FEATURES)))

    @property
    def threshold(self) -> float:
        """The pooled threshold (every training window of every symbol)."""
        return self.calibration.pooled

    # -- scoring ---------------------------------------------------------------------
    def reconstruction_errors(self, batch: np.ndarray) -> np.ndarray:
        """Errors of scaled windows ``(n, window, features)``; one compiled call."""
        if len(batch) == 0:
            return np.zeros(0)
        return window_errors(batch, self._compiled(batch), self.score_bars)

    def needs_history(self, symbol: str | None) -> bool:
        """Whether judging ``symbol`` needs every window it is sent with, not only the latest."""
        return not self.calibration.knows(symbol)

    def prepare(self, bars: pd.DataFrame, last_only: bool = False) -> tuple[np.ndarray, pd.Series]:
        """Scaled windows of validated ``bars`` and their end timestamps (needs ``min_bars(window)`` bars)."""
        if last_only:
            bars = bars.iloc[-min_bars(self.window):]
        X, ts = bar_features(bars)
        return windows(self.scaler.transform(X), self.window), ts.iloc[self.window - 1:].reset_index(drop=True)

    def judge(self, symbol: str | None, ends: pd.Series, errors: np.ndarray) -> WindowScores:
        """The windows' errors against ``symbol``'s threshold (``errors``: every window of the instance)."""
        threshold, source = self.calibration.threshold(symbol, errors)
        return WindowScores(ends, errors, threshold, source)

    def score(self, bars: pd.DataFrame, symbol: str | None = None) -> WindowScores:
        batch, ends = self.prepare(bars)
        return self.judge(symbol, ends, self.reconstruction_errors(batch))

    # -- persistence -----------------------------------------------------------------
    def save(self, artifacts: Path, reports: Path) -> None:
        self.keras_model.save(artifacts / MODEL_FILE)
        (artifacts / PIPELINE_FILE).write_text(json.dumps({
            "pipeline_version": PIPELINE_VERSION,
            "features": list(FEATURES),
            "lookback": LOOKBACK,
            "window": self.window,
            "score_bars": self.score_bars,
            "calibration": self.calibration.to_dict(),
            "scaler": self.scaler.to_dict(),
        }, indent=2))
        if self.report is not None:
            self._write_reports(reports, self.report)

    def _write_reports(self, reports: Path, report: TrainingReport) -> None:
        (reports / "training_results.json").write_text(json.dumps(report.results, indent=2, default=str))
        # log scale: the errors are heavy-tailed (the shocks are the point), a linear axis is one bar
        plots.histogram(
            reports / "reconstruction_error_distribution.png", report.training_errors,
            "Reconstruction error of training windows (all symbols)", threshold=self.threshold,
            xlabel="mean squared error (log scale); line: the pooled threshold", log_scale=True,
        )
        plots.lines(reports / "training_history.png", report.history, "Autoencoder training", "epoch", "MSE")
        for symbol, (ts, close, marks) in report.price_marks.items():
            marked = close.loc[ts.isin(marks)]
            plots.price_with_marks(
                reports / f"{symbol}_anomalies.png", ts, close, marks, marked,
                f"{symbol}: windows flagged anomalous (marked at the window's last bar)",
            )

    @classmethod
    def load(cls, artifacts: Path, metadata: dict) -> "AnomalyDetector":
        pipeline = json.loads((artifacts / PIPELINE_FILE).read_text())
        if pipeline["pipeline_version"] != PIPELINE_VERSION:
            # its scaler and thresholds belong to other features: scoring would be silently wrong
            raise IntegrityError(
                f"{metadata.get('version', 'this version')} was trained on feature pipeline "
                f"v{pipeline['pipeline_version']}, this code computes v{PIPELINE_VERSION}: train a new version"
            )
        keras_model = neural.tf().keras.models.load_model(artifacts / MODEL_FILE, compile=False)
        return cls(keras_model, FeatureScaler.from_dict(pipeline["scaler"]), pipeline["window"],
                   pipeline["score_bars"], Calibration.from_dict(pipeline["calibration"]), metadata)

    def metadata(self) -> dict:
        return self.info

    def warmup(self) -> None:
        self._compiled.warmup()
        # an unseen symbol is scored over every window it is sent with (the trader sends
        # hundreds): compile the largest batch too, or its first request pays for it
        self._compiled(np.zeros((neural.MAX_BUCKET, self.window, len(FEATURES)), dtype=np.float32))
