"""Training an anomaly detector, and measuring it honestly.

Each symbol's bars are split in time: *train* (fit the scaler and the autoencoder, set
the symbol's threshold), *validation* (early stopping) and a later *holdout* that
training never sees (the last ``holdout_fraction`` of the windows, or every window
ending on or after ``holdout_start``). Windows are cut inside each part, so no window
shares a bar with another part.

Detection is scored with the rule of :func:`kryptobot.models.anomaly.data.detection_scores`
against whatever ground truth the data has:

* the synthetic market's planted anomalies (``detection``), on the holdout;
* dated market shocks (:mod:`kryptobot.models.anomaly.events`) on real history
  (``events``): on the holdout (the honest figure), and on every window of the whole
  history (in-sample: most of those windows were trained on, and the thresholds set on
  them), which is reported separately and labelled so.

The autoencoder is shown next to the baselines of :mod:`kryptobot.models.anomaly.baselines`
(a rolling z-score of absolute log returns, an IsolationForest, feature magnitude), each
flagging as many windows per symbol as the autoencoder does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from kryptobot.errors import TrainingError
from kryptobot.models.anomaly import baselines
from kryptobot.models.anomaly.data import (
    FEATURES,
    LOOKBACK,
    PIPELINE_VERSION,
    bar_features,
    detection_scores,
    locate_events,
    summarize_detection,
    window_end_bars,
)
from kryptobot.models.anomaly.events import SOURCE as EVENTS_SOURCE, describe
from kryptobot.models.anomaly.model import AnomalyDetector, Calibration, TrainingReport, build_autoencoder
from kryptobot.models.anomaly.schemas import AnomalyTrainConfig
from kryptobot.models.common import neural
from kryptobot.models.common.sequences import FeatureScaler, windows
from kryptobot.runtime import data_range_summary, iso_day
from kryptobot.splits import time_ordered_split

MATCHING_RULE = (
    "an event counts as detected if a window ending on its bar or up to match_bars bars later is flagged "
    "(delay: bars from the event to the first such flag); "
    "a flag counts as correct if an event lies within the flagged window's last match_bars + 1 bars"
)
FLAG_RATE_RULE = (
    "the autoencoder flags windows above each symbol's threshold; every baseline flags, on each symbol's scored "
    "windows, as many windows as the autoencoder flagged there (its highest scores): the same flag rate"
)
DETECTORS = ("autoencoder", "zscore", "isolation_forest", "feature_magnitude")
FEATURE_PIPELINE = {"version": PIPELINE_VERSION, "features": list(FEATURES), "lookback": LOOKBACK}


@dataclass
class SymbolParts:
    """One symbol's bars, feature rows and windows cut in time into train / validation / holdout.

    The parts are index arrays over the symbol's windows (window i ends on feature row
    ``i + window - 1``), separated by ``window - 1`` windows so no two parts share a bar.
    """

    bars: pd.DataFrame
    timestamps: pd.Series
    X: np.ndarray
    parts: dict[str, np.ndarray]

    def train_rows(self, window: int) -> np.ndarray:
        """Feature rows read by the training windows: all the scaler may see."""
        return self.X[: self.parts["train"][-1] + window]

    def ends(self, window: int) -> pd.Series:
        """The timestamp of every window's last bar."""
        return self.timestamps.iloc[window - 1:].reset_index(drop=True)

    def windows(self, name: str, window: int, scaler: FeatureScaler) -> tuple[np.ndarray, pd.Series]:
        """Scaled windows of part ``name`` and the timestamps of their last bars."""
        idx = self.parts[name]
        return windows(scaler.transform(self.X), window)[idx], self.ends(window).iloc[idx].reset_index(drop=True)


def split_symbol(symbol: str, bars: pd.DataFrame, config: AnomalyTrainConfig) -> SymbolParts:
    X, ts = bar_features(bars)
    n_windows = max(len(X) - config.window + 1, 0)
    gap = config.window - 1
    try:
        if config.holdout_start is None:
            fractions = (1 - config.validation_fraction - config.holdout_fraction, config.validation_fraction,
                         config.holdout_fraction)
            train, val, holdout = time_ordered_split(n_windows, fractions, gap=gap)
        else:
            ends = ts.iloc[config.window - 1:].reset_index(drop=True)
            train, val, holdout = split_at(ends, pd.Timestamp(config.holdout_start), config.validation_fraction, gap)
    except TrainingError as exc:
        raise TrainingError(
            f"{symbol}: {len(bars)} bars are too few for train/validation/holdout windows of {config.window} bars "
            f"({exc.message}); give a longer date range, a smaller window or another holdout_start",
            field=exc.field or "data",
        ) from exc
    return SymbolParts(bars, ts, X, {"train": train, "validation": val, "holdout": holdout})


def split_at(ends: pd.Series, holdout_start: pd.Timestamp, validation_fraction: float,
             gap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows ending before ``holdout_start`` -> train then validation (its last fraction); the rest -> holdout."""
    first_holdout = int(np.searchsorted(ends.to_numpy(), holdout_start.to_datetime64()))
    before = first_holdout - gap
    n_val = int(before * validation_fraction)
    n_train = before - gap - n_val
    if first_holdout >= len(ends):
        raise TrainingError(f"no window ends on or after holdout_start {holdout_start.date()}", field="holdout_start")
    if min(n_train, n_val) < 1:
        raise TrainingError(f"{max(before, 0)} windows end before holdout_start {holdout_start.date()}, too few to train "
                            "and validate on", field="holdout_start")
    return np.arange(n_train), np.arange(n_train + gap, before), np.arange(first_holdout, len(ends))


def train_detector(
    bars: Mapping[str, pd.DataFrame],
    config: AnomalyTrainConfig,
    truth: Mapping[str, pd.DataFrame] | None = None,
    events: pd.DatetimeIndex | None = None,
    progress: Callable[..., None] = lambda *a, **k: None,
) -> AnomalyDetector:
    """Fit, calibrate and evaluate a detector on ``bars`` (validated frames keyed by symbol).

    ``truth`` (optional): each symbol's planted events (a ``timestamp`` column), scored on
    the holdout. ``events`` (optional): dated market shocks, the same for every symbol
    (:func:`kryptobot.models.anomaly.events.shock_days`), scored on the holdout and,
    separately, in-sample on the whole history.
    """
    progress(0.05, "building features")
    symbols = {s: split_symbol(s, frame, config) for s, frame in bars.items()}
    scaler = FeatureScaler.fit(np.concatenate([p.train_rows(config.window) for p in symbols.values()]))
    scaled = {s: windows(scaler.transform(p.X), config.window) for s, p in symbols.items()}
    train = np.concatenate([scaled[s][p.parts["train"]] for s, p in symbols.items()])
    val = np.concatenate([scaled[s][p.parts["validation"]] for s, p in symbols.items()])

    neural.set_seed(config.seed)
    keras = neural.tf().keras
    model = build_autoencoder(config.window, len(FEATURES), config.units, config.dropout, config.learning_rate)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    fitted = model.fit(
        train, train, validation_data=(val, val), epochs=config.epochs, batch_size=config.batch_size,
        shuffle=True, verbose=0, callbacks=[stop, neural.progress_callback(progress, config.epochs, 0.1, 0.8)],
    )
    history = {k: [float(v) for v in fitted.history[k]] for k in ("loss", "val_loss")}

    progress(0.82, "setting each symbol's threshold")
    detector = AnomalyDetector(model, scaler, config.window, config.score_bars,
                               Calibration(np.inf, {}, config.threshold_percentile, config.calibration_min_windows), {})
    errors = {s: detector.reconstruction_errors(batch) for s, batch in scaled.items()}  # every window, once
    train_errors = {s: errors[s][p.parts["train"]] for s, p in symbols.items()}
    detector.calibration = Calibration.fit(train_errors, config.threshold_percentile, config.calibration_min_windows)
    flags = {s: e > detector.calibration.threshold(s)[0] for s, e in errors.items()}

    progress(0.88, "measuring detection")
    scores = {"autoencoder": errors, **baseline_scores(symbols, scaled, train, config)}
    results = {
        "threshold": detector.threshold,
        "threshold_percentile": config.threshold_percentile,
        "calibration": {
            "rule": "each symbol's threshold is threshold_percentile of its own training windows' errors "
                    f"(pooled over all symbols for one with fewer than {config.calibration_min_windows})",
            "pooled_threshold": detector.threshold,
            "symbol_thresholds": dict(detector.calibration.symbols),
            "pooled_symbols": [s for s in symbols if not detector.calibration.knows(s)],
        },
        "feature_pipeline": FEATURE_PIPELINE,
        "window": config.window,
        "score_bars": config.score_bars,
        "training_samples": int(len(train)),
        "validation_samples": int(len(val)),
        "final_loss": history["loss"][-1],
        "final_val_loss": history["val_loss"][-1],
        "best_val_loss": min(history["val_loss"]),
        "epochs_run": len(history["loss"]),
        "training_flag_rate": float(np.mean(np.concatenate([flags[s][p.parts["train"]] for s, p in symbols.items()]))),
        "detection": None if truth is None else planted_detection(symbols, scores, flags, truth, config),
    }
    if truth is None:
        results["detection_note"] = "the data source has no planted anomalies (only 'synthetic' has)"
    results["events"] = None if events is None else dated_event_detection(symbols, scores, flags, events, config)
    if results["events"] is None:
        results["events_note"] = (
            "no dated market shock falls in the scored range" if events is not None
            else "dated market shocks are scored on daily bars of real history only (not on the synthetic market)"
        )
    detector.info = {
        "params": {
            **config.model_dump(mode="json", exclude={"data", "activate"}),
            "feature_pipeline": FEATURE_PIPELINE,
        },
        "features": list(FEATURES),
        "data_range": data_range(config, symbols),
        "metrics": results,
    }
    marks = {s: (bars[s]["timestamp"], bars[s]["close"], p.ends(config.window)[flags[s]]) for s, p in symbols.items()}
    detector.report = TrainingReport(results, history, np.concatenate(list(train_errors.values())), marks)
    return detector


def baseline_scores(symbols: Mapping[str, SymbolParts], scaled: Mapping[str, np.ndarray], train: np.ndarray,
                    config: AnomalyTrainConfig) -> dict[str, dict[str, np.ndarray]]:
    """Every baseline's score of every window of every symbol (``zscore`` at LOOKBACK, plus ``zscore_<n>``)."""
    fitted = baselines.window_scorers(train, config.score_bars, config.window, config.seed)
    out = {name: {s: score(scaled[s]) for s in symbols} for name, score in fitted.items()}
    first_end = window_end_bars(config.window)
    for lookback in sorted({LOOKBACK, *baselines.ZSCORE_LOOKBACKS}):
        out[f"zscore_{lookback}"] = {s: baselines.abs_return_zscore(p.bars, lookback)[first_end:] for s, p in symbols.items()}
    out["zscore"] = out[f"zscore_{LOOKBACK}"]
    return out


def compare(symbols: Mapping[str, SymbolParts], scores: Mapping[str, Mapping[str, np.ndarray]],
            flags: Mapping[str, np.ndarray], part: str | None, events: Callable[[str], object],
            config: AnomalyTrainConfig) -> tuple[dict[str, dict], dict]:
    """Detection of every scorer on ``part`` of each symbol's windows (None: all of them), at the AE's flag rate.

    Returns the pooled summaries by scorer and, per event day, the symbols where it was
    scoreable and where each scorer detected it.
    """
    counts: dict[str, list[dict]] = {name: [] for name in scores}
    per_event: dict[pd.Timestamp, dict[str, list[str]]] = {}
    for s, p in symbols.items():
        idx = np.arange(len(flags[s])) if part is None else p.parts[part]
        pos, days = locate_events(p.ends(config.window).iloc[idx].reset_index(drop=True), events(s))
        own = flags[s][idx]
        for name, by_symbol in scores.items():
            chosen = own if name == "autoencoder" else baselines.flags_like(by_symbol[s][idx], int(own.sum()))
            c = detection_scores(chosen, pos, config.match_bars)
            counts[name].append(c)
            for day, delay in zip(days, c["delays"]):
                row = per_event.setdefault(day, {"symbols": []})
                if name == "autoencoder":
                    row["symbols"].append(s)
                if delay is not None:
                    row.setdefault(name, []).append(s)
    return {name: summarize_detection(c, config.match_bars) for name, c in counts.items()}, per_event


def planted_detection(symbols, scores, flags, truth: Mapping[str, pd.DataFrame], config: AnomalyTrainConfig) -> dict:
    """Holdout precision / recall / F1 / delay against planted anomalies, next to the baselines."""
    empty = pd.Series([], dtype="datetime64[ns]")
    summary, _ = compare(symbols, scores, flags, "holdout",
                         lambda s: truth[s]["timestamp"] if s in truth else empty, config)
    return {
        "matching_rule": MATCHING_RULE,
        "flag_rate_rule": FLAG_RATE_RULE,
        "match_bars": config.match_bars,
        "split": "holdout: never trained on",
        "baselines": _descriptions(),
        **{name: summary[name] for name in DETECTORS},
    }


def dated_event_detection(symbols, scores, flags, events: pd.DatetimeIndex, config: AnomalyTrainConfig) -> dict | None:
    """Event recall, flag rate and delay against dated market shocks: holdout and, apart, in-sample whole history."""
    scopes = {
        "holdout": ("holdout", "holdout: the windows training never saw (the honest figure)"),
        "whole_history_in_sample": (None, (
            "IN-SAMPLE: every window of each symbol's history, including the windows the autoencoder was trained on "
            "and the thresholds were set on; not a measure of skill, shown because a user scoring a whole history sees it"
        )),
    }
    out = {}
    for key, (part, label) in scopes.items():
        summary, per_event = compare(symbols, scores, flags, part, lambda s: events, config)
        if summary["autoencoder"]["events"] == 0:
            out[key] = {"split": label, "events": 0, "note": "no dated shock falls in this part"}
            continue
        out[key] = {
            "split": label,
            "events": summary["autoencoder"]["events"],
            **{name: summary[name] for name in DETECTORS},
            "zscore_lookbacks": {
                name.split("_")[1]: {k: summary[name][k] for k in ("recall", "detected_events", "events", "flag_rate")}
                for name in summary if name.startswith("zscore_")
            },
            "per_event": {iso_day(day): {"what": describe(day), **row} for day, row in sorted(per_event.items())},
        }
    if all(v["events"] == 0 for v in out.values()):
        return None
    return {
        "source": EVENTS_SOURCE,
        "matching_rule": MATCHING_RULE,
        "flag_rate_rule": FLAG_RATE_RULE,
        "match_bars": config.match_bars,
        "baselines": _descriptions(),
        **out,
        "not_scoreable": not_scoreable(symbols, events, config),
    }


def event_table(events: dict) -> str:
    """``results["events"]`` as a few lines of text: recall, flag rate, precision and delay per detector and part."""
    lines = [f"dated market shocks, match_bars {events['match_bars']} (baselines at the autoencoder's flag rate)"]
    for key in ("holdout", "whole_history_in_sample"):
        part = events[key]
        if part["events"] == 0:
            lines.append(f"{key}: {part['note']}")
            continue
        lines.append(f"{key} ({part['split']}): {part['events']} (symbol, shock day) pairs")
        for name in DETECTORS:
            r = part[name]
            delay = r["delay_bars"]["mean"]
            lines.append(f"  {name:<18} recall {r['recall']:.3f} ({r['detected_events']}/{r['events']})  flag rate "
                         f"{r['flag_rate']:.4f}  precision {r['precision']:.3f}  mean delay "
                         f"{'-' if delay is None else f'{delay:.2f}'} bars")
        lines.append("  z-score recall by lookback: " + ", ".join(
            f"{k}: {v['recall']:.3f}" for k, v in part["zscore_lookbacks"].items()))
    return "\n".join(lines)


def not_scoreable(symbols: Mapping[str, SymbolParts], events: pd.DatetimeIndex, config: AnomalyTrainConfig) -> dict:
    """Calendar days inside a symbol's bars that no window ends on (the first bars only set the scales)."""
    out: dict[str, list[str]] = {}
    for s, p in symbols.items():
        first, last = p.bars["timestamp"].iloc[0], p.bars["timestamp"].iloc[-1]
        _, located = locate_events(p.ends(config.window), events)
        for day in events[(events >= first) & (events <= last)].difference(located):
            out.setdefault(iso_day(day), []).append(s)
    return out


def _descriptions() -> dict:
    return {**baselines.DESCRIPTIONS, "zscore": baselines.DESCRIPTIONS["zscore"].format(lookback=LOOKBACK)}


def data_range(config: AnomalyTrainConfig, symbols: Mapping[str, SymbolParts]) -> dict:
    """First and last bar of each symbol, and where its validation and holdout windows begin."""

    per_symbol = {}
    for s, p in symbols.items():
        ends = p.ends(config.window)
        per_symbol[s] = {
            "start": iso_day(p.timestamps.iloc[0]),
            "validation_windows_end_from": iso_day(ends.iloc[p.parts["validation"][0]]),
            "holdout_windows_end_from": iso_day(ends.iloc[p.parts["holdout"][0]]),
            "end": iso_day(p.timestamps.iloc[-1]),
        }
    return data_range_summary(config.data.source, per_symbol)
