"""The anomaly service's runtime: an LSTM autoencoder over windows of scale-free bar features.

A window whose reconstruction error exceeds the version's threshold (a percentile of
the training windows' errors) is anomalous; its score is ``error / threshold``. See
:mod:`kryptobot.models.anomaly.data` (inputs, matching rule),
:mod:`kryptobot.models.anomaly.model` (the model) and
:mod:`kryptobot.models.anomaly.training` (training and evaluation).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from kryptobot.data import get_provider
from kryptobot.errors import InvalidInput
from kryptobot.models.anomaly.model import AnomalyDetector
from kryptobot.models.anomaly.schemas import AnomalyInstance, AnomalyPredictOptions, AnomalyPrediction, AnomalyTrainConfig
from kryptobot.models.anomaly.training import train_detector
from kryptobot.models.anomaly.data import LOOKBACK, min_bars
from kryptobot.runtime import ModelRuntime, ModelVersion, TrainContext

EXAMPLE_BARS = 100


class AnomalyRuntime(ModelRuntime):
    """LSTM autoencoder anomaly detector over OHLCV bars.

    Train with `POST /train` (synthetic data by default: no network), then send bars to
    `POST /predict`: every window of `window` bars gets a reconstruction error, a score
    (error / threshold) and a flag. `options.last_only` scores just the latest window.
    """

    name = "anomaly"
    lines = ("anomaly",)
    version_classes = {"anomaly": AnomalyDetector}
    TrainConfig = AnomalyTrainConfig
    Instance = AnomalyInstance
    Prediction = AnomalyPrediction
    PredictOptions = AnomalyPredictOptions

    def train(self, config: AnomalyTrainConfig, ctx: TrainContext) -> list[ModelVersion]:
        ctx.progress(0.02, "loading data")
        bars = ctx.load_bars(config.data)
        return [train_detector(bars, config, ground_truth(config, bars), ctx.progress)]

    def predict(self, models: Mapping[str, ModelVersion], instances: list[AnomalyInstance],
                options: AnomalyPredictOptions | None = None) -> list[dict]:
        detector: AnomalyDetector = models["anomaly"]  # type: ignore[assignment]
        last_only = bool(options and options.last_only)
        prepared = []
        for i, inst in enumerate(instances):
            field = f"instances[{i}].bars"
            frame = inst.bars.to_frame(field)
            if len(frame) < min_bars(detector.window):
                raise InvalidInput(
                    f"{len(frame)} bars are too few: one window of {detector.window} bars needs {min_bars(detector.window)} "
                    f"(the window, {LOOKBACK} before it that set its scales, and one reference close)",
                    field=field,
                )
            prepared.append(detector.prepare(frame, last_only))
        # one compiled call for the whole request, then split back per instance
        errors = detector.reconstruction_errors(np.concatenate([batch for batch, _ in prepared]))
        cuts = np.cumsum([len(batch) for batch, _ in prepared])[:-1]
        return [
            prediction(inst.symbol, ends, err, detector)
            for inst, (_, ends), err in zip(instances, prepared, np.split(errors, cuts))
        ]

    @classmethod
    def predict_example(cls) -> dict:
        from kryptobot.models.common.examples import example_bars

        return {"instances": [{"symbol": "SYNA", "bars": example_bars(EXAMPLE_BARS)}], "options": {"last_only": False}}


def prediction(symbol: str | None, ends, errors: np.ndarray, detector: AnomalyDetector) -> dict:
    scores = errors / detector.threshold
    flags = errors > detector.threshold
    timestamps = [ts.to_pydatetime() for ts in ends]
    return {
        "symbol": symbol,
        "window": detector.window,
        "threshold": detector.threshold,
        "anomaly": bool(flags[-1]),
        "score": float(scores[-1]),
        "anomalies": [t for t, f in zip(timestamps, flags) if f],
        "windows": {"timestamp": timestamps, "error": errors.tolist(), "score": scores.tolist(), "anomaly": flags.tolist()},
    }


def ground_truth(config: AnomalyTrainConfig, bars: Mapping) -> dict | None:
    """The planted anomalies of each symbol, where the data source knows them (synthetic)."""
    if config.data.source != "synthetic":
        return None
    spec = config.data
    provider = get_provider(spec.source, seed=spec.seed, predictability=spec.predictability)
    return {symbol: provider.anomalies(symbol, spec.start, spec.end) for symbol in bars}
