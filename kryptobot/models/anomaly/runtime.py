"""The anomaly service's runtime: an LSTM autoencoder over windows of scale-free bar features.

A window whose reconstruction error exceeds its symbol's threshold (a percentile of that
symbol's training windows' errors; see :class:`kryptobot.models.anomaly.model.Calibration`
for symbols the version has not seen) is anomalous; its score is ``error / threshold``. See
:mod:`kryptobot.models.anomaly.data` (inputs, matching rule),
:mod:`kryptobot.models.anomaly.model` (the model) and
:mod:`kryptobot.models.anomaly.training` (training and evaluation) and
:mod:`kryptobot.models.anomaly.events` (the dated market shocks real history is scored against).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from kryptobot.data import get_provider
from kryptobot.errors import InvalidInput
from kryptobot.models.anomaly.events import shock_days
from kryptobot.models.anomaly.model import AnomalyDetector, WindowScores
from kryptobot.models.anomaly.schemas import AnomalyInstance, AnomalyPredictOptions, AnomalyPrediction, AnomalyTrainConfig
from kryptobot.models.anomaly.training import train_detector
from kryptobot.models.anomaly.data import LOOKBACK, min_bars
from kryptobot.promotion import Verdict, always_promote, judge, lookup
from kryptobot.runtime import ModelRuntime, ModelVersion, TrainContext

EXAMPLE_BARS = 200  # 60 windows of the default 20 bars after their 120-bar lookback
#: what the promotion gate reads, in order: (metrics path, score, name, tolerance against the
#: active version). Planted anomalies (synthetic) give an F1, which a few events more or less
#: move by a few points; dated shocks (real history) are few, so the tolerance is one in ten.
PROMOTION_METRICS = (
    ("metrics.detection", "f1", "holdout detection f1 (planted anomalies)", 0.02),
    ("metrics.events.holdout", "recall", "holdout event recall (dated shocks, at the same flag rate)", 0.1),
)
#: the baselines a detector must match: no model (a rolling z-score, the feature magnitude)
#: and an IsolationForest; the best of those present counts
DETECTION_BASELINES = ("zscore", "feature_magnitude", "isolation_forest")


class AnomalyRuntime(ModelRuntime):
    """LSTM autoencoder anomaly detector over OHLCV bars.

    Train with `POST /train` (synthetic data by default: no network), then send bars to
    `POST /predict`: every window of `window` bars gets a reconstruction error, a score
    (error / threshold) and a flag. `options.last_only` scores just the latest window.
    Each symbol is judged against its own history (`calibration` in the answer).
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
        return [train_detector(bars, config, ground_truth(config, bars), dated_events(config), ctx.progress)]

    def promotion(self, candidate: dict, champion: dict | None) -> Verdict:
        """Holdout detection against the best of its baselines, and the active version's:
        F1 on planted anomalies, else recall of dated market shocks (:data:`PROMOTION_METRICS`).

        Only data with ground truth can say whether a detector detects; without any the
        version is promoted, and says so.
        """
        for scope, score, name, tolerance in PROMOTION_METRICS:
            value = lookup(candidate, f"{scope}.autoencoder.{score}")
            if value is None:
                continue
            baselines = [b for base in DETECTION_BASELINES if (b := lookup(candidate, f"{scope}.{base}.{score}")) is not None]
            return judge(
                name, value, max(baselines, default=None),
                None if champion is None else lookup(champion, f"{scope}.autoencoder.{score}"),
                None if champion is None else champion.get("version"), tolerance,
            )
        return always_promote("no ground truth of anomalies in the training data: promoted without a detection check")

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
            # a symbol without a threshold of its own is calibrated on every window it is sent with
            prepared.append(detector.prepare(frame, last_only and not detector.needs_history(inst.symbol)))
        # one compiled call for the whole request, then split back per instance
        errors = detector.reconstruction_errors(np.concatenate([batch for batch, _ in prepared]))
        cuts = np.cumsum([len(batch) for batch, _ in prepared])[:-1]
        out = []
        for inst, (_, ends), err in zip(instances, prepared, np.split(errors, cuts)):
            scored = detector.judge(inst.symbol, ends, err)
            out.append(prediction(inst.symbol, scored.last() if last_only else scored, detector))
        return out

    @classmethod
    def predict_example(cls) -> dict:
        from kryptobot.models.common.examples import example_bars

        return {"instances": [{"symbol": "SYNA", "bars": example_bars(EXAMPLE_BARS)}], "options": {"last_only": False}}


def prediction(symbol: str | None, scored: WindowScores, detector: AnomalyDetector) -> dict:
    errors, scores, flags = scored.errors, scored.scores, scored.flags
    timestamps = [ts.to_pydatetime() for ts in scored.ends]
    return {
        "symbol": symbol,
        "window": detector.window,
        "threshold": scored.threshold,
        "calibration": scored.calibration,
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
    return {symbol: provider.anomalies(symbol, spec.start, spec.end, spec.timeframe) for symbol in bars}


def dated_events(config: AnomalyTrainConfig):
    """The calendar of market shocks, for daily bars of real data (every source but the synthetic market)."""
    return None if config.data.source == "synthetic" or config.data.timeframe != "1d" else shock_days()
