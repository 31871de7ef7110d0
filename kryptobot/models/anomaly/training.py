"""Training an anomaly detector, and measuring it honestly.

Each symbol's bars are split in time: *train* (fit the scaler and the autoencoder, set
the threshold), *validation* (early stopping) and a later *holdout* that training never
sees. Windows are cut inside each part, so no window shares a bar with another part.
Where the data has ground truth (the synthetic market's planted anomalies), detection
on the holdout is scored with the rule of
:func:`kryptobot.models.anomaly.data.detection_scores`, next to two baselines fitted
on the same training windows and thresholded at the same percentile: an IsolationForest,
and no model at all (how far the scaled features are from typical).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from kryptobot.errors import TrainingError
from kryptobot.models.common import neural
from kryptobot.models.anomaly.model import (
    AnomalyDetector,
    TrainingReport,
    build_autoencoder,
)
from kryptobot.models.anomaly.data import (
    FEATURES,
    PIPELINE_VERSION,
    bar_features,
    detection_scores,
    event_positions,
    summarize_detection,
)
from kryptobot.models.common.sequences import FeatureScaler, windows
from kryptobot.runtime import data_range_summary, iso_day
from kryptobot.models.anomaly.schemas import AnomalyTrainConfig
from kryptobot.splits import time_ordered_split

MATCHING_RULE = (
    "an event counts as detected if a window ending on its bar or up to match_bars bars later is flagged; "
    "a flag counts as correct if an event lies within the flagged window's last match_bars + 1 bars"
)


@dataclass
class SymbolParts:
    """One symbol's feature rows and its windows cut in time into train / validation / holdout.

    The parts are index arrays over the symbol's windows (window i ends on row
    ``i + window - 1``), separated by ``window - 1`` windows so no two parts share a bar.
    """

    timestamps: pd.Series
    X: np.ndarray
    parts: dict[str, np.ndarray]

    def train_rows(self, window: int) -> np.ndarray:
        """Feature rows read by the training windows: all the scaler may see."""
        return self.X[: self.parts["train"][-1] + window]

    def windows(self, name: str, window: int, scaler: FeatureScaler) -> tuple[np.ndarray, pd.Series]:
        """Scaled windows of part ``name`` and the timestamps of their last bars."""
        idx = self.parts[name]
        ends = self.timestamps.iloc[window - 1:].reset_index(drop=True).iloc[idx].reset_index(drop=True)
        return windows(scaler.transform(self.X), window)[idx], ends


def split_symbol(symbol: str, bars: pd.DataFrame, config: AnomalyTrainConfig) -> SymbolParts:
    X, ts = bar_features(bars)
    n_windows = len(X) - config.window + 1
    fractions = (1 - config.validation_fraction - config.holdout_fraction, config.validation_fraction, config.holdout_fraction)
    try:
        train, val, holdout = time_ordered_split(max(n_windows, 0), fractions, gap=config.window - 1)
    except TrainingError as exc:
        raise TrainingError(
            f"{symbol}: {len(bars)} bars are too few for train/validation/holdout windows of {config.window} bars "
            f"({exc.message}); give a longer date range or a smaller window",
            field="data",
        ) from exc
    return SymbolParts(ts, X, {"train": train, "validation": val, "holdout": holdout})


def train_detector(
    bars: Mapping[str, pd.DataFrame],
    config: AnomalyTrainConfig,
    truth: Mapping[str, pd.DataFrame] | None = None,
    progress: Callable[..., None] = lambda *a, **k: None,
) -> AnomalyDetector:
    """Fit, threshold and evaluate a detector on ``bars`` (validated frames keyed by symbol).

    ``truth`` (optional): each symbol's planted events (a ``timestamp`` column), used only
    to score detection on the holdout part.
    """
    progress(0.05, "building features")
    symbols = {s: split_symbol(s, frame, config) for s, frame in bars.items()}
    scaler = FeatureScaler.fit(np.concatenate([p.train_rows(config.window) for p in symbols.values()]))
    train = np.concatenate([p.windows("train", config.window, scaler)[0] for p in symbols.values()])
    val = np.concatenate([p.windows("validation", config.window, scaler)[0] for p in symbols.values()])

    neural.set_seed(config.seed)
    keras = neural.tf().keras
    model = build_autoencoder(config.window, len(FEATURES), config.units, config.dropout, config.learning_rate)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    fitted = model.fit(
        train, train, validation_data=(val, val), epochs=config.epochs, batch_size=config.batch_size,
        shuffle=True, verbose=0, callbacks=[stop, neural.progress_callback(progress, config.epochs, 0.1, 0.8)],
    )
    history = {k: [float(v) for v in fitted.history[k]] for k in ("loss", "val_loss")}

    progress(0.82, "setting the threshold")
    detector = AnomalyDetector(model, scaler, config.window, config.score_bars, np.inf, {})
    train_errors = detector.reconstruction_errors(train)
    detector.threshold = float(np.percentile(train_errors, config.threshold_percentile))

    progress(0.88, "measuring detection on the holdout")
    detection = evaluate_detection(detector, symbols, train, config, truth) if truth is not None else None
    results = {
        "threshold": detector.threshold,
        "threshold_percentile": config.threshold_percentile,
        "window": config.window,
        "score_bars": config.score_bars,
        "training_samples": int(len(train)),
        "validation_samples": int(len(val)),
        "final_loss": history["loss"][-1],
        "final_val_loss": history["val_loss"][-1],
        "best_val_loss": min(history["val_loss"]),
        "epochs_run": len(history["loss"]),
        "training_flag_rate": float(np.mean(train_errors > detector.threshold)),
        "detection": detection,
    }
    if detection is None:
        results["detection_note"] = "the data source has no ground truth of anomalies (only 'synthetic' has)"
    detector.info = {
        "params": {
            **config.model_dump(mode="json", exclude={"data", "activate"}),
            "feature_pipeline": {"version": PIPELINE_VERSION, "features": list(FEATURES)},
        },
        "features": list(FEATURES),
        "data_range": data_range(config, symbols),
        "metrics": results,
    }
    detector.report = TrainingReport(results, history, train_errors, price_marks(detector, bars))
    return detector


def evaluate_detection(detector: AnomalyDetector, symbols: Mapping[str, SymbolParts], train: np.ndarray,
                       config: AnomalyTrainConfig, truth: Mapping[str, pd.DataFrame]) -> dict:
    """Holdout precision / recall / F1 of the autoencoder next to two baselines.

    Every detector is thresholded at ``threshold_percentile`` of its own scores on the
    same training windows, and scores the same bars of each window (the last
    ``score_bars``), so they differ only in how they judge those bars.
    """
    scorers = {"autoencoder": detector.reconstruction_errors, **baseline_scorers(train, config)}
    thresholds = {name: np.percentile(score(train), config.threshold_percentile) for name, score in scorers.items()}
    counts: dict[str, list[dict]] = {name: [] for name in scorers}
    for symbol, parts in symbols.items():
        batch, ends = parts.windows("holdout", config.window, detector.scaler)
        events = event_positions(ends, truth[symbol]["timestamp"]) if symbol in truth else np.array([], int)
        for name, score in scorers.items():
            counts[name].append(detection_scores(score(batch) > thresholds[name], events, config.match_bars))
    return {
        "matching_rule": MATCHING_RULE,
        "match_bars": config.match_bars,
        "split": "holdout: the last holdout_fraction of each symbol's windows, never trained on",
        "baselines": {
            "isolation_forest": "scikit-learn IsolationForest (200 trees) on the same scaled bars",
            "feature_magnitude": "no model: mean squared scaled feature of the same bars (how far from typical)",
        },
        **{name: summarize_detection(c, config.match_bars) for name, c in counts.items()},
    }


def baseline_scorers(train: np.ndarray, config: AnomalyTrainConfig) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Anomaly scores (higher = more anomalous) of the baselines, fitted on ``train`` windows."""
    from sklearn.ensemble import IsolationForest

    bars = config.score_bars or config.window

    def scored(batch: np.ndarray) -> np.ndarray:
        return batch[:, -bars:]

    forest = IsolationForest(n_estimators=200, random_state=config.seed, n_jobs=1)
    forest.fit(scored(train).reshape(len(train), -1))
    return {
        "isolation_forest": lambda b: -forest.score_samples(scored(b).reshape(len(b), -1)),
        "feature_magnitude": lambda b: np.mean(scored(b) ** 2, axis=(1, 2)),
    }


def price_marks(detector: AnomalyDetector, bars: Mapping[str, pd.DataFrame]) -> dict:
    """For each symbol's plot: bar timestamps, closes, and the ends of flagged windows."""
    out = {}
    for symbol, frame in bars.items():
        scores = detector.score(frame)
        out[symbol] = (frame["timestamp"], frame["close"], scores.ends[scores.flags])
    return out


def data_range(config: AnomalyTrainConfig, symbols: Mapping[str, SymbolParts]) -> dict:
    """First and last bar of each symbol, and where its validation and holdout windows begin."""

    per_symbol = {}
    for s, p in symbols.items():
        ends = p.timestamps.iloc[config.window - 1:].reset_index(drop=True)
        per_symbol[s] = {
            "start": iso_day(p.timestamps.iloc[0]),
            "validation_windows_end_from": iso_day(ends.iloc[p.parts["validation"][0]]),
            "holdout_windows_end_from": iso_day(ends.iloc[p.parts["holdout"][0]]),
            "end": iso_day(p.timestamps.iloc[-1]),
        }
    return data_range_summary(config.data.source, per_symbol)
