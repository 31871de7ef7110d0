"""Walk-forward backtests: retrain every layer before each fold, on the bars before it only.

FreqAI's ``train_period_days`` / ``backtest_period_days`` in bars: the traded days are cut
into folds of ``retrain_every`` bars; before each fold every ML layer is trained on the
``train_bars`` bars that end ``embargo_bars`` before the fold's first day, through the
training code the model services run (``ModelRuntime.train``, reached by the runtime's
path as the services' job processes reach it), and the fold's days are scored by those
versions only. The folds' model outputs then stitch into one replay per mode, so a
position opened in one fold is judged by the next fold's models, as a live bot's would be
after a retraining.

No look-ahead: a fold's training data ends before the embargo, and every label a training
run builds is resolved inside its data (the meta-labels and the forecasts' targets drop
samples whose horizon runs past the data's end). The embargo defaults to the strategy's
time limit, the labels' horizon, as the services' own walk-forward evaluations use.

This module plans the folds, trains a fold's layers and measures each layer on the fold's
days; the trader (``services.trader.backtest``) scores the days with the same calls a
plain backtest makes and runs the folds in parallel where :mod:`kryptobot.parallel` says
(this machine's processes, or a Ray cluster).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kryptobot.errors import InvalidInput
from kryptobot.jobs import import_runtime
from kryptobot.labels import LabelParams, atr_abs, triple_barrier
from kryptobot.runtime import ModelRuntime, ModelVersion, TrainContext
from kryptobot.settings import Settings
from kryptobot.store import ModelStore
from kryptobot.trading.decisions import LAYERS

#: each layer's runtime, imported by path (the trading domain never imports model code:
#: it reaches the models through the runtime contract, as the services' job processes do)
RUNTIMES = {name: f"kryptobot.models.{name}.runtime:{name.title()}Runtime" for name in LAYERS}


class WalkForwardSpec(BaseModel):
    """How often and on what each fold's models are trained (bars of the traded market)."""

    model_config = ConfigDict(extra="forbid")

    train_bars: int = Field(756, ge=200, le=20_000, description="training window: the bars before each fold (756: 3 years of daily stock bars)")
    retrain_every: int = Field(63, ge=5, le=5_000, description="fold length: the models are retrained every this many bars (63: a quarter)")
    embargo_bars: int | None = Field(None, ge=0, le=1_000, description="bars between a fold's training data and its first day "
                                                                       "(default: the strategy's max_holding_bars, the labels' horizon)")
    training: dict[str, dict] = Field(default_factory=dict, description="per layer, POST /train fields (all but data) in place of "
                                                                        "the defaults, e.g. {\"signal\": {\"model\": {\"n_estimators\": 50}}}")
    n_jobs: int | None = Field(None, ge=1, le=256, description="folds trained at once, each in its own process (default: one per "
                                                                "core, of this machine or of the Ray cluster at KRYPTOBOT_RAY_ADDRESS)")

    @field_validator("training")
    @classmethod
    def _training(cls, value: dict[str, dict]) -> dict[str, dict]:
        unknown = [k for k in value if k not in LAYERS]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown}; choose from {list(LAYERS)}")
        with_data = [k for k, v in value.items() if "data" in v]
        if with_data:
            raise ValueError(f"training.{with_data[0]}.data is set by each fold (the bars before it)")
        return value

    def embargo(self, max_holding_bars: int) -> int:
        return self.embargo_bars if self.embargo_bars is not None else max_holding_bars


@dataclass(frozen=True)
class Fold:
    index: int
    train_start: date  # the fold's training data, days inclusive
    train_end: date
    first: pd.Timestamp  # its first and last traded bar
    last: pd.Timestamp
    bars: int

    def summary(self) -> dict:
        return {"index": self.index, "train": {"start": self.train_start.isoformat(), "end": self.train_end.isoformat()},
                "test": {"start": self.first.isoformat(), "end": self.last.isoformat(), "bars": self.bars}}


def plan_folds(days: pd.DatetimeIndex, start, end, spec: WalkForwardSpec, embargo: int, warmup: int) -> tuple[list[Fold], str | None]:
    """Folds over ``days`` (every bar time of the market, oldest first) from ``start`` to
    ``end``, and a note when the start had to move: the first fold needs ``train_bars +
    embargo`` bars before it, and ``warmup`` bars for the inputs of its first decision.

    Raises InvalidInput naming ``walk_forward.train_bars`` when no fold fits.
    """
    days = pd.DatetimeIndex(days)
    earliest = max(spec.train_bars + embargo, warmup)
    first = int(days.searchsorted(pd.Timestamp(start))) if start is not None else earliest
    last = int(days.searchsorted(pd.Timestamp(end) + pd.Timedelta(days=1))) - 1 if end is not None else len(days) - 1
    note = None
    if first < earliest:
        if start is not None:
            note = (f"start moved from {pd.Timestamp(start).date()} to {days[min(earliest, len(days) - 1)].date()}: the first fold "
                    f"trains on {spec.train_bars} bars ending {embargo} bars before it")
        first = earliest
    if first > last:
        raise InvalidInput(
            f"no fold fits: {len(days)} bars up to {days[-1].date() if len(days) else end}, and a fold needs {earliest} bars "
            f"before it ({spec.train_bars} to train on, an embargo of {embargo}, at least {warmup} of warm-up)",
            field="walk_forward.train_bars",
        )
    folds = []
    for k, lo in enumerate(range(first, last + 1, spec.retrain_every)):
        hi = min(lo + spec.retrain_every, last + 1) - 1
        train_end = days[lo - embargo - 1].date()
        # days are the data's unit: with intraday bars the training data must end the day before the fold
        train_end = min(train_end, days[lo].date() - timedelta(days=1))
        folds.append(Fold(k, days[lo - embargo - spec.train_bars].date(), train_end, days[lo], days[hi], hi - lo + 1))
    return folds, note


# ---- a fold's models -----------------------------------------------------------------

def train_layer(name: str, settings: Settings, store_root: Path, config: dict) -> tuple[ModelRuntime, dict[str, ModelVersion]]:
    """Train one layer with its service's own training code, store the versions (hashed)
    and load them back as the service would serve them: ``(runtime, {line: version})``."""
    runtime = import_runtime(RUNTIMES[name])(settings)
    store = ModelStore(store_root, runtime.name)
    trained = runtime.train(runtime.TrainConfig.model_validate(config), TrainContext(settings=settings, store=store, runtime=runtime))
    loaded = {}
    for model in trained:
        loaded[model.line] = runtime.load_version(store, store.save(model))
    return runtime, loaded


def version_summary(model: ModelVersion) -> dict:
    """What identifies a fold's version and what its training measured out of sample."""
    meta = model.stored_metadata or {}
    digest = hashlib.sha256(json.dumps(meta.get("artifacts", {}), sort_keys=True).encode()).hexdigest()[:16]
    data = meta.get("data_range") or {}
    return {"version": meta.get("version"), "artifacts_sha256": digest,
            "data_range": {"start": data.get("start"), "end": data.get("end")},
            "training_metrics": headline(meta.get("metrics") or {}, meta.get("line"))}


def headline(metrics: dict, line: str | None = None) -> dict:
    """The scalar metrics of a training report and its baseline (not its plots' data); a
    report that nests its model's metrics under the line's name (the ensemble's) is read there."""
    if isinstance(metrics.get(line), dict):
        metrics = metrics[line]
    out = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for key in ("baseline", "naive"):
        if isinstance(metrics.get(key), dict):
            out[key] = {k: v for k, v in metrics[key].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return out


# ---- each layer on a fold's days -------------------------------------------------------

def classifier_outcomes(window: pd.DataFrame, scores: dict[pd.Timestamp, float], labels: LabelParams,
                        atr_period: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probability, label, return) of each technical buy a classifier scored in one
    symbol's bars, labelled by the triple barrier it learned; buys whose time limit lies
    past the data are left out, as in training."""
    if not scores:
        return np.array([]), np.array([], dtype=np.int64), np.array([])
    stamps = window["timestamp"]
    rows = np.flatnonzero(stamps.isin(list(scores)).to_numpy())
    events = pd.DataFrame({"index": rows, "side": np.ones(len(rows), dtype=np.int64)})
    labelled = triple_barrier(window, events, atr_abs(window, atr_period), labels)
    p = np.array([scores[stamps.iat[i]] for i in labelled["index"]], dtype=float)
    return p, labelled["label"].to_numpy(), labelled["ret"].to_numpy(dtype=float)


def classifier_oos(p: np.ndarray, y: np.ndarray, ret: np.ndarray, train_base_rate: float | None) -> dict | None:
    """The metrics of the probabilities against the outcomes, next to the naive baselines,
    and the mean return of the buys it would take (p >= 0.5) next to all of them."""
    from kryptobot.evaluation import classification_metrics

    if len(y) < 2:
        return None
    out = classification_metrics(y, p, train_base_rate=train_base_rate)
    taken = p >= 0.5
    out["mean_return_taken"] = float(ret[taken].mean()) if taken.any() else None
    out["mean_return_all"] = float(ret.mean())
    return out


def forecast_outcomes(window: pd.DataFrame, trends: dict[pd.Timestamp, float], horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(forecast trend, the return that followed over ``horizon`` bars) of each forecast
    day in one symbol's bars that has its outcome in the data."""
    close = window["close"].to_numpy(dtype=float)
    index = {ts: i for i, ts in enumerate(window["timestamp"])}
    pairs = [(trend, close[index[day] + horizon] / close[index[day]] - 1) for day, trend in trends.items()
             if day in index and index[day] + horizon < len(close)]
    predicted, realised = (np.array(pairs, dtype=float).T if pairs else (np.array([]), np.array([])))
    return predicted, realised


def forecast_oos(predicted: np.ndarray, realised: np.ndarray, horizon: int) -> dict | None:
    """MSE skill against the naive "no change" forecast, and the share of directions right
    next to always saying "up"."""
    from kryptobot.evaluation import regression_metrics

    if len(realised) < 2:
        return None
    out = regression_metrics(realised, predicted, np.zeros_like(realised))
    moved = realised != 0
    out["direction_accuracy"] = float(np.mean(np.sign(predicted[moved]) == np.sign(realised[moved]))) if moved.any() else None
    out["baseline"] = {"direction_accuracy": float(np.mean(realised[moved] > 0)) if moved.any() else None}
    out["horizon"] = horizon
    return out


def anomaly_oos(flags: list[bool], scores: list[float]) -> dict | None:
    """How often the detector flagged the fold's days (its threshold promises a rate)."""
    if not flags:
        return None
    return {"n": len(flags), "flag_rate": float(np.mean(flags)), "mean_score": float(np.mean(scores))}


# ---- the stitched replay, fold by fold ------------------------------------------------

def fold_results(folds: list[Fold], runs: dict, cash: float) -> list[dict]:
    """Per fold and mode: the equity curve's return over the fold's days and the trades
    decided in it (``runs``: mode -> a backtest ``Run``)."""
    out = []
    for fold in folds:
        per_mode, trades = {}, {}
        for mode, run in runs.items():
            equity = run.equity
            inside = equity[(equity.index >= fold.first) & (equity.index <= fold.last)]
            before = equity[equity.index < fold.first]
            opening = float(before.iat[-1]) if len(before) else cash
            taken = [t for t in run.trades if fold.first <= t.decided <= fold.last]
            returns = [t.ret for t in taken]
            per_mode[mode] = {"return": float(inside.iat[-1] / opening - 1) if len(inside) else 0.0, "trades": len(taken),
                              "mean_trade_return": float(np.mean(returns)) if returns else None}
            trades[mode] = [t.to_json() for t in taken]
        out.append({"results": per_mode, "trades": trades})
    return out
