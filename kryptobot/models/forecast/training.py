"""Training forecasters, and measuring them honestly.

Each symbol's samples are cut in time into four blocks, ``horizon`` samples apart so no
two blocks share a target bar: *train* (fit the scaler and the network), *validation*
(early stopping), *calibration* (conformal interval quantiles and the confidence
slope) and *test* (every reported number: errors next to the naive last-value forecast,
interval coverage, direction accuracy). The blocks of all symbols are pooled.

Several model types trained in one job share the blocks, the scaler and the target
scale, so their evaluations are comparable and the combined plot can be drawn.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from kryptobot.evaluation import interval_coverage, regression_metrics
from kryptobot.models.common import neural
from kryptobot.models.common.sequences import FeatureScaler, windows
from kryptobot.models.forecast.data import (
    BLOCKS,
    INPUTS,
    SymbolSamples,
    symbol_samples,
)
from kryptobot.models.forecast.model import (
    COVERAGE_LEVELS,
    PIPELINE_VERSION,
    ForecastModel,
    Pipeline,
    PricePath,
    TrainingReport,
    build_network,
    combine,
    coverage_key,
    fit_calibration,
    hits,
)
from kryptobot.models.forecast.schemas import ForecastTrainConfig
from kryptobot.runtime import data_range_summary, iso_day
from kryptobot.settings import ForecastingSettings
from kryptobot.thresholds import FORECAST_GRID, FORECAST_NEVER, OBJECTIVE, sweep


@dataclass(frozen=True)
class Plan:
    """The request's choices with the settings file's defaults filled in."""

    model_types: tuple[str, ...]
    sequence_length: int
    horizon: int

    @classmethod
    def resolve(cls, config: ForecastTrainConfig, defaults: ForecastingSettings) -> "Plan":
        return cls(
            tuple(config.model_types or dict.fromkeys(defaults.model_types)),
            config.sequence_length or defaults.sequence_length,
            config.forecast_horizon or defaults.forecast_horizon,
        )


@dataclass
class Block:
    """One block pooled over symbols: scaled windows, targets, window sigma."""

    X: np.ndarray
    y: np.ndarray
    sigma: np.ndarray


def train_forecasters(
    bars: Mapping[str, pd.DataFrame],
    config: ForecastTrainConfig,
    defaults: ForecastingSettings | None = None,
    progress: Callable[..., None] = lambda *a, **k: None,
) -> list[ForecastModel]:
    """Fit, calibrate and evaluate one forecaster per model type on ``bars`` (validated frames by symbol).

    When several types are trained, the last one's reports also get ``combined_forecast.png``
    (it needs every model of the job).
    """
    plan = Plan.resolve(config, defaults or ForecastingSettings())
    features = INPUTS[config.inputs]
    progress(0.05, "building windows")
    fractions = (
        1 - config.validation_fraction - config.calibration_fraction - config.test_fraction,
        config.validation_fraction, config.calibration_fraction, config.test_fraction,
    )
    symbols = {s: symbol_samples(s, f, features, plan.sequence_length, plan.horizon, fractions) for s, f in bars.items()}
    scaler = FeatureScaler.fit(np.concatenate([p.train_rows() for p in symbols.values()]))
    blocks = {name: Block(*(np.concatenate(a) for a in zip(*(p.block(name, scaler) for p in symbols.values()))))
              for name in BLOCKS}
    train = blocks["train"]
    base = Pipeline(
        model_type="", inputs=config.inputs, features=list(features), sequence_length=plan.sequence_length,
        horizon=plan.horizon, scaler=scaler.to_dict(),
        # RMS, not std: the scaled target keeps 0 as "no change", the naive forecast
        target_scale=np.maximum(np.sqrt(np.mean(train.y**2, axis=0)), 1e-12).tolist(),
        sigma_floor=float(0.1 * np.median(train.sigma)) or 1e-8,
    )
    models = []
    span = 0.85 / len(plan.model_types)
    for i, kind in enumerate(plan.model_types):
        progress(0.1 + i * span, f"training {kind}", force=True, model_type=kind)
        models.append(fit_forecaster(kind, base, blocks, symbols, config, progress, (0.1 + i * span, 0.1 + (i + 0.9) * span)))
    if len(models) > 1:
        models[-1].report.combined_plot = forecast_plot(models, next(iter(symbols.values())), config.coverage)
    return models


def fit_forecaster(kind: str, base: Pipeline, blocks: Mapping[str, Block], symbols: Mapping[str, SymbolSamples],
                   config: ForecastTrainConfig, progress: Callable[..., None], span: tuple[float, float]) -> ForecastModel:
    neural.set_seed(config.seed)
    keras = neural.tf().keras
    train, val = blocks["train"], blocks["validation"]
    scale = np.asarray(base.target_scale)
    network = build_network(kind, base.sequence_length, len(base.features), base.horizon, config.units,
                            config.dropout, config.learning_rate)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    fitted = network.fit(
        train.X, train.y / scale, validation_data=(val.X, val.y / scale), epochs=config.epochs,
        batch_size=config.batch_size, shuffle=True, verbose=0,
        callbacks=[stop, neural.progress_callback(progress, config.epochs, *span)],
    )
    history = {k: [float(v) for v in fitted.history[k]] for k in ("loss", "val_loss")}

    progress(span[1], f"calibrating {kind} intervals", force=True)
    # The pipeline is completed (calibration) before the model leaves this function.
    model = ForecastModel(network, Pipeline(**{**base.__dict__, "model_type": kind}), {})
    cal = blocks["calibration"]
    model.pipeline.quantiles, model.pipeline.confidence_slope = fit_calibration(
        model.predict_returns(cal.X), cal.y, model.effective_sigma(cal.sigma)
    )
    test = blocks["test"]
    pred = model.predict_returns(test.X)
    results = evaluate(model, pred, test, blocks["train"], config.coverage)
    results.update(
        model_type=kind, inputs=config.inputs, sequence_length=base.sequence_length, horizon=base.horizon,
        samples={name: int(len(b.y)) for name, b in blocks.items()}, gap_between_blocks=base.horizon,
        epochs_run=len(history["loss"]), best_val_loss=min(history["val_loss"]), final_loss=history["loss"][-1],
    )
    model.info = {
        "params": {
            **config.model_dump(mode="json", exclude={"data", "activate", "model_types", "sequence_length", "forecast_horizon"}),
            "model_type": kind, "sequence_length": base.sequence_length, "forecast_horizon": base.horizon,
            "coverage_levels": list(COVERAGE_LEVELS), "pipeline_version": PIPELINE_VERSION,
        },
        "features": list(base.features),
        "data_range": data_range(config, symbols),
        "metrics": results,
    }
    first = next(iter(symbols.values()))
    n_first = len(first.blocks["test"])
    model.report = TrainingReport(
        results=results,
        history=history,
        actual_vs_predicted={
            "symbol": first.symbol,
            "x": first.timestamps.iloc[first.end_bar(first.blocks["test"])].tolist(),
            "actual": test.y[:n_first, -1].tolist(),
            "predicted": pred[:n_first, -1].tolist(),
        },
        forecast_plot=forecast_plot([model], first, config.coverage),
    )
    return model


def evaluate(model: ForecastModel, pred: np.ndarray, test: Block, train: Block, coverage: float) -> dict:
    """Test-block errors vs the naive forecast, interval coverage per level, direction accuracy."""
    y = test.y
    naive = np.zeros_like(y)
    out = {
        "target": "cumulative log return log(close[t+k] / close[t]) for k = 1..horizon; errors pooled over steps",
        "baseline": "naive last value: no change (0) at every step",
        **regression_metrics(y, pred, naive),
        "test_loss": float(np.mean(((pred - y) / np.asarray(model.pipeline.target_scale)) ** 2)),
        "per_step": [
            {"step": k + 1, **{key: m[key] for key in ("rmse", "skill")}, "naive_rmse": m["naive"]["rmse"]}
            for k, m in enumerate(regression_metrics(y[:, k], pred[:, k], naive[:, k]) for k in range(y.shape[1]))
        ],
    }
    levels = {}
    for level in COVERAGE_LEVELS:
        f = model.intervals(pred, test.sigma, level)
        levels[coverage_key(level)] = {
            "nominal": level,
            "test_coverage": interval_coverage(y, f.lower, f.upper),
            "per_step": [interval_coverage(y[:, k], f.lower[:, k], f.upper[:, k]) for k in range(y.shape[1])],
            "mean_width_log_return": float(np.mean(f.upper - f.lower)),
        }
    out["interval_coverage"] = levels
    out["coverage"] = {"nominal": coverage, "test_coverage": levels[coverage_key(coverage)]["test_coverage"]}
    out["direction"] = direction_metrics(model, pred, test, train)
    out["confidence_sweep"] = confidence_sweep(model, pred, test)
    return out


def confidence_sweep(model: ForecastModel, pred: np.ndarray, test: Block) -> dict:
    """:func:`kryptobot.thresholds.sweep` of the calibrated direction confidence on the test
    block: what a forecast counted as confident at each threshold got right, and the log
    return of following its direction over the horizon."""
    confidence = model.intervals(pred, test.sigma, COVERAGE_LEVELS[0]).confidence
    followed = np.sign(pred[:, -1]) * test.y[:, -1]
    result = sweep(confidence, followed, hits(pred[:, -1], test.y[:, -1]), FORECAST_GRID, fallback=FORECAST_NEVER)
    return {
        "score": "calibrated direction confidence; a forecast counts as confident when confidence >= threshold",
        "return": "log return over the horizon in the forecast's direction (sign of the forecast times the realised return)",
        "objective": OBJECTIVE,
        **result,
    }


def direction_metrics(model: ForecastModel, pred: np.ndarray, test: Block, train: Block) -> dict:
    hit = hits(pred[:, -1], test.y[:, -1])
    confidence = model.intervals(pred, test.sigma, COVERAGE_LEVELS[0]).confidence
    majority_up = np.mean(train.y[:, -1] > 0) >= 0.5
    return {
        "accuracy": float(hit.mean()),
        "baseline_accuracy": float(np.mean((test.y[:, -1] > 0) == majority_up)),
        "baseline": f"always '{'up' if majority_up else 'down'}', the training block's majority direction",
        "confidence_slope": model.pipeline.confidence_slope,
        "mean_confidence": float(confidence.mean()),
        "brier": float(np.mean((confidence - hit) ** 2)),
        "brier_coin_flip": float(np.mean((0.5 - hit) ** 2)),
    }


def origin_paths(models: Sequence[ForecastModel], samples: SymbolSamples, index: int, coverage: float) -> list[PricePath]:
    """Each model's price forecast from sample ``index`` of one symbol (training-time plots)."""
    scaler = FeatureScaler.from_dict(models[0].pipeline.scaler)  # shared by the models of one job
    batch = windows(scaler.transform(samples.X), samples.sequence_length)[index][None]
    last_close = samples.close[samples.end_bar(index)]
    return [PricePath.from_forecast(m.forecast(batch, samples.sigma[[index]], coverage), 0, last_close) for m in models]


def forecast_plot(models: Sequence[ForecastModel], samples: SymbolSamples, coverage: float) -> dict:
    """``plots.forecast_band`` arguments: the last test sample of ``samples``, forecast and actual."""
    index = int(samples.blocks["test"][-1])
    origin = int(samples.end_bar(index))
    horizon = models[0].horizon
    paths = origin_paths(models, samples, index, coverage)
    shown = {m.line: p.price.tolist() for m, p in zip(models, paths)}
    band = paths[0] if len(paths) == 1 else combine(paths, samples.close[origin])
    if len(paths) > 1:
        shown["combined (mean)"] = band.price.tolist()
    shown["actual"] = samples.close[origin + 1: origin + 1 + horizon].tolist()
    history = slice(max(0, origin - max(10 * horizon, 30)), origin + 1)  # short, so the forecast stays legible
    name = " + ".join(m.line.upper() for m in models)
    return {
        "history_x": samples.timestamps.iloc[history].tolist(),
        "history": samples.close[history].tolist(),
        "future_x": samples.timestamps.iloc[origin + 1: origin + 1 + horizon].tolist(),
        "paths": shown,
        "lower": band.lower.tolist(),
        "upper": band.upper.tolist(),
        "title": f"{samples.symbol}: {name} forecast from the last test-block bar",
        "band_label": f"{coverage:.0%} conformal interval" + (" (union)" if len(models) > 1 else ""),
    }


def data_range(config: ForecastTrainConfig, symbols: Mapping[str, SymbolSamples]) -> dict:
    """First and last bar of each symbol and the first forecast origin of each later block."""

    per_symbol = {}
    for s, p in symbols.items():
        per_symbol[s] = {
            "start": iso_day(p.timestamps.iloc[0]),
            **{f"{name}_origins_from": iso_day(p.timestamps.iloc[p.end_bar(p.blocks[name][0])]) for name in BLOCKS[1:]},
            "end": iso_day(p.timestamps.iloc[-1]),
        }
    return data_range_summary(config.data.source, per_symbol)
