"""The forecast service's runtime: LSTM and GRU price forecasters, each its own version line.

Given the recent bars of a symbol, each active model forecasts the cumulative log returns
of the next ``horizon`` bars; they are mapped to a price path from the last close, with
split-conformal interval bounds and a calibrated directional confidence. The combined
forecast averages the active models' paths. See :mod:`kryptobot.models.forecast.data`
(inputs, targets), :mod:`kryptobot.models.forecast.model` (the model, intervals,
confidence, combination) and :mod:`kryptobot.models.forecast.training` (training and
evaluation).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from kryptobot.errors import InvalidInput
from kryptobot.models.common.sequences import log_ratio_features, windows
from kryptobot.models.forecast.data import RETURN_COLUMN, recent_features, window_sigma
from kryptobot.models.forecast.model import ForecastModel, PricePath, combine
from kryptobot.models.forecast.schemas import (
    CONFIDENCE_METHOD,
    INTERVAL_METHOD,
    MODEL_TYPES,
    ForecastInstance,
    ForecastPredictOptions,
    ForecastPrediction,
    ForecastTrainConfig,
)
from kryptobot.models.forecast.training import train_forecasters
from kryptobot.promotion import Verdict, judge_metadata
from kryptobot.runtime import ModelRuntime, ModelVersion, TrainContext
from kryptobot.settings import ForecastingSettings, load_settings_file

#: promotion tolerance against the active version's test-block skill (1 - MSE / MSE of the
#: naive forecast): a retrain within a point of skill of its predecessor may replace it
SKILL_TOLERANCE = 0.01


class ForecastRuntime(ModelRuntime):
    """LSTM and GRU price forecasters with calibrated intervals.

    Train with `POST /train` (`model_types`: lstm and/or gru; each becomes its own version
    line, `lstm-v<n>` / `gru-v<n>`), then send recent bars to `POST /predict`: each
    active model's price path over the horizon with interval bounds at
    `options.coverage`, its trend and confidence, and their combination.
    """

    name = "forecast"
    lines = MODEL_TYPES
    version_classes = {kind: ForecastModel for kind in MODEL_TYPES}
    TrainConfig = ForecastTrainConfig
    Instance = ForecastInstance
    Prediction = ForecastPrediction
    PredictOptions = ForecastPredictOptions
    report_example = "combined_forecast.png"

    def train(self, config: ForecastTrainConfig, ctx: TrainContext) -> list[ModelVersion]:
        defaults = load_settings_file(ForecastingSettings, ctx.settings.config_dir)
        ctx.progress(0.02, "loading data")
        return list(train_forecasters(ctx.load_bars(config.data), config, defaults, ctx.progress))

    def promotion(self, candidate: dict, champion: dict | None) -> Verdict:
        """Test-block skill against the naive last-value forecast (skill 0 by definition; a
        negative skill never promotes) and the line's active version."""
        return judge_metadata(candidate, champion, "skill", "metrics.skill", None, SKILL_TOLERANCE, baseline_value=0.0)

    def predict(self, models: Mapping[str, ModelVersion], instances: list[ForecastInstance],
                options: ForecastPredictOptions | None = None) -> list[dict]:
        active: dict[str, ForecastModel] = {line: models[line] for line in MODEL_TYPES if line in models}  # type: ignore[misc]
        options = options or ForecastPredictOptions()
        coverage = options.coverage
        needed = max(m.min_bars for m in active.values())
        frames = []
        for i, inst in enumerate(instances):
            field = f"instances[{i}].bars"
            frame = inst.bars.to_frame(field)
            if len(frame) < needed:
                raise InvalidInput(
                    f"{len(frame)} bars are too few: the active models read windows of "
                    f"{needed - 1} returns, which need {needed} bars (sequence_length + 1)",
                    field=field,
                )
            frames.append(frame)
        rows = [recent_features(f, needed - 1) for f in frames]
        last_close = np.array([f["close"].iat[-1] for f in frames])
        per_model: dict[str, list[PricePath]] = {}
        for line, model in active.items():
            windows, sigma = zip(*(model.prepare(r) for r in rows))
            forecasts = model.forecast(np.stack(windows), np.array(sigma), coverage)  # one compiled call per model
            per_model[line] = [PricePath.from_forecast(forecasts, j, c) for j, c in enumerate(last_close)]
        versions = {line: m.stored_metadata["version"] if m.stored_metadata else line for line, m in active.items()}
        out = []
        for j, (inst, frame) in enumerate(zip(instances, frames)):
            paths = {line: per_model[line][j] for line in active}
            out.append({
                "symbol": inst.symbol,
                "last_timestamp": frame["timestamp"].iat[-1].isoformat(),  # the framework sends these dicts as JSON as-is
                "last_close": float(last_close[j]),
                "coverage": coverage,
                "combined": path_json(combine(list(paths.values()), last_close[j]), "+".join(versions.values()), last_close[j]),
                "models": {line: path_json(p, versions[line], last_close[j]) for line, p in paths.items()},
                "confidence_method": CONFIDENCE_METHOD,
                "interval_method": INTERVAL_METHOD,
                "rolling": rolling_forecasts(active, frame, coverage) if options.rolling else None,
            })
        return out

    @classmethod
    def predict_example(cls) -> dict:
        from kryptobot.models.common.examples import example_bars
        from kryptobot.settings import Settings

        # enough bars for the configured window, with room for a model trained on a longer one
        length = load_settings_file(ForecastingSettings, Settings().config_dir).sequence_length
        return {"instances": [{"symbol": "SYNA", "bars": example_bars(2 * length + 1)}], "options": {"coverage": 0.9}}


def rolling_forecasts(active: Mapping[str, "ForecastModel"], frame, coverage: float) -> dict:
    """The combined trend and confidence of a forecast made at every bar with a full window.

    Same arithmetic as the single forecast (mean price path, confidence pooled over the
    models for the combined direction), vectorised over windows.
    """
    X, _ = log_ratio_features(frame)
    length = max(m.sequence_length for m in active.values())
    n = len(X) - length + 1  # windows of the longest model; shorter ones read the same ends
    finals, confidences = [], []
    for model in active.values():
        L = model.sequence_length
        W = windows(X[:, model.columns], L)[-n:]
        sigma = window_sigma(X[:, RETURN_COLUMN], L)[-n:]
        f = model.forecast(model.scaler.transform(W), sigma, coverage)
        finals.append(np.exp(f.mean[:, min(m.horizon for m in active.values()) - 1]))
        confidences.append(f.confidence)
    finals, confidences = np.array(finals), np.array(confidences)
    combined = finals.mean(axis=0)
    agrees = np.sign(finals - 1.0) == np.sign(combined - 1.0)[None, :]
    pooled = np.where(agrees, confidences, 1.0 - confidences).mean(axis=0)
    stamps = frame["timestamp"].iloc[-n:]
    return {
        "timestamp": [t.isoformat() for t in stamps],
        "trend": (combined - 1.0).tolist(),
        "confidence": pooled.tolist(),
    }


def path_json(path: PricePath, version: str, last_close: float) -> dict:
    trend = path.trend(last_close)
    return {
        "model_version": version,
        "horizon": len(path.price),
        "price": path.price.tolist(),
        "lower": path.lower.tolist(),
        "upper": path.upper.tolist(),
        "trend": trend,
        "direction": "up" if trend > 0 else "down" if trend < 0 else "flat",
        "confidence": path.confidence,
    }
