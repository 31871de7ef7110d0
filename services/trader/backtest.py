"""Backtests for the trader: the calls that collect every bar's model outputs, then the
replay of :mod:`kryptobot.trading.backtest`.

Per symbol, the model services are asked in batches (signal/ensemble: named features of
every buy signal, computed with the model's own feature pipeline; anomaly: every window
of the range in one call; forecast: a forecast per bar with ``options.rolling``).

* A plain backtest (:func:`run_backtest`) asks the services over HTTP, so it scores
  their active models, which are used only on bars after the end of their training data:
  the backtest starts there and says so.
* A walk-forward backtest (:func:`walk_forward`) trains every layer the modes use before
  each fold on the bars before it (:mod:`kryptobot.trading.walkforward`), and sends the
  same calls to those versions in the fold's process (:class:`InProcessClient`). Folds
  run in parallel where :mod:`kryptobot.parallel` says (this machine's processes, or the
  Ray cluster at ``KRYPTOBOT_RAY_ADDRESS``): :func:`run_fold` is a top-level function of
  plain values, so either can ship it.
"""
from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ValidationError

from kryptobot import parallel
from kryptobot.data import DataSpec, get_provider
from kryptobot.data.timeframes import periods_per_year
from kryptobot.errors import InvalidInput, KryptoError
from kryptobot.features import FeatureParams
from kryptobot.labels import LabelParams
from kryptobot.models.anomaly.schemas import AnomalyTrainConfig
from kryptobot.models.ensemble.schemas import EnsembleTrainConfig
from kryptobot.models.forecast.schemas import ForecastTrainConfig
from kryptobot.models.signal.schemas import SignalTrainConfig
from kryptobot.schemas import Bars
from kryptobot.settings import Settings
from kryptobot.trading import walkforward as wf
from kryptobot.trading.backtest import (
    WARMUP_BARS,
    BacktestRequest,
    Replay,
    SymbolHistory,
    output_summary,
    replay,
    symbol_history,
    write_reports,
)
from kryptobot.trading.decisions import LAYERS, outputs_from
from kryptobot.trading.settings import StrategySettings, TraderConfig
from services.framework.schemas import ModelInfo
from services.trader import wire
from services.trader.clients import ModelClient
from services.trader.thresholds import resolve_thresholds
from services.trader.inprocess import InProcessClient

BACKTEST_TIMEOUT_SECONDS = 300.0  # one whole-history batch per service and symbol
RUN_REPORT_RE = re.compile(r"^backtest_(?P<id>[0-9a-f]{12})\.json$")  # one run's report (not the latest's copy)
_ONE_AT_A_TIME = threading.Lock()
#: each layer's ``POST /train`` body schema: a walk-forward's training overrides are checked against it
TRAIN_CONFIGS: dict[str, type[BaseModel]] = {
    "signal": SignalTrainConfig, "ensemble": EnsembleTrainConfig, "anomaly": AnomalyTrainConfig, "forecast": ForecastTrainConfig,
}


async def run_backtest(request: BacktestRequest, config: TraderConfig, clients: dict[str, ModelClient],
                       csv_dir=None, max_batch: int = 1000, request_id: str | None = None, market_data_dir=None) -> dict:
    """The report (metrics per mode vs buy-and-hold) and the equity curves.

    ``max_batch``: instances per /predict call (the services' ``KRYPTOBOT_MAX_BATCH``);
    ``request_id`` is sent to the services with every call; ``csv_dir`` and
    ``market_data_dir``: where the ``csv`` and ``local`` sources read.
    """
    symbols = request.symbols or config.trader.watchlist
    infos = await _model_infos(clients, request_id)
    trained_until = max((pd.Timestamp(i.data_range["end"]).tz_localize(None) for i in infos.values() if i and i.data_range),
                        default=None)
    start = pd.Timestamp(request.start) if request.start else None
    note = None
    if trained_until is not None and (start is None or start <= trained_until):
        if start is not None:
            note = f"start moved from {start.date()} to after the models' training data (ends {trained_until.date()})"
        start = (trained_until + pd.Timedelta(days=1)).normalize()
    provider = get_provider(config.trader.data_source, csv_dir=csv_dir, market_data_dir=market_data_dir)
    feature_params = FeatureParams.from_dict(_pipeline(infos.get("signal")))
    end = None if request.end is None else pd.Timestamp(request.end)
    loaded = await asyncio.gather(
        *(asyncio.to_thread(symbol_history, provider, s, start, end, feature_params, config.trader.strategy, config.trader.timeframe)
          for s in symbols))
    histories = {s: h for s, h in zip(symbols, loaded) if h is not None}
    if not histories:
        raise InvalidInput(f"no bars to backtest between {start} and {request.end}", field="start")
    await _collect_outputs(histories, clients, infos, max_batch, request_id)
    cash = request.initial_cash or config.trader.initial_cash
    traded = {s: h.bars for s, h in histories.items()}
    ppy = _periods_per_year(provider, config.trader.timeframe)
    # "auto" thresholds from the active versions' sweeps, as a live cycle resolves them
    config, thresholds = resolve_thresholds(config, {name: [info] if info else None for name, info in infos.items()})
    result = await asyncio.to_thread(replay, histories, traded, config, request.modes, cash, ppy)  # CPU: off the event loop
    return {
        "id": uuid.uuid4().hex[:12],
        "kind": "plain",
        "thresholds": thresholds,
        "symbols": list(histories),
        "start": str(min(b["timestamp"].iat[0] for b in traded.values()).date()),
        "end": str(max(b["timestamp"].iat[-1] for b in traded.values()).date()),
        "models_trained_until": None if trained_until is None else str(trained_until.date()),
        "note": note,
        "layers_available": [name for name in LAYERS if infos.get(name)],
        "model_versions": {name: info.version for name, info in infos.items() if info},
        "bars": sum(len(b) for b in traded.values()),
        "model_outputs": output_summary(histories),
        **_results(result),
    }


def _results(result: Replay) -> dict:
    results = result.results()
    return {"results": results, "summary": verdicts(results), "curves": result.curves()}


def verdicts(results: dict) -> list[str]:
    """One plain sentence per ML mode: did its layer pick better trades than the technical
    strategy alone (the mean trade return, net of costs, with the 95% interval of the
    difference)?"""
    lines = []
    for mode, stats in results.items():
        versus = stats.get("vs_technical")
        if mode in ("technical", "buy_and_hold") or "vs_technical" not in stats:
            continue
        if versus is None:
            lines.append(f"{mode}: too few trades ({stats['trades']}) to compare with the technical strategy")
            continue
        low, high = versus["ci95"]
        says = {"better": "helps: it picks better trades than", "worse": "hurts: it picks worse trades than",
                "no evidence": "no evidence that it helps or hurts against"}[versus["verdict"]]
        lines.append(f"{mode}: {says} the technical strategy (mean trade return {versus['difference']:+.2%} vs technical, "
                     f"95% interval [{low:+.2%}, {high:+.2%}], {stats['trades']} trades)")
    return lines


def _periods_per_year(provider, timeframe: str) -> float:
    return periods_per_year(timeframe, getattr(provider, "calendar", "exchange"))


async def _model_infos(clients: dict, request_id: str | None = None) -> dict[str, ModelInfo | None]:
    """GET /model of each service (None: down or untrained, its layer is unavailable): the
    line trained on the latest data, with ``version`` naming every active line."""
    async def one(name: str) -> ModelInfo | None:
        try:
            models = (await clients[name].model(request_id)).models
        except KryptoError:
            return None
        latest = max(models, key=lambda m: (m.data_range or {}).get("end") or "")
        return latest.model_copy(update={"version": "+".join(m.version for m in models)})

    names = list(clients)
    return dict(zip(names, await asyncio.gather(*(one(n) for n in names))))


def _pipeline(info: ModelInfo | None) -> dict:
    params = dict(((info.params if info else None) or {}).get("feature_pipeline") or {})
    params.pop("version", None)
    return params


async def _collect_outputs(histories: dict[str, SymbolHistory], clients, infos, max_batch: int, request_id: str | None) -> None:
    """Fill ``history.outputs`` with every service's answer for the days it matters."""
    tasks = []
    for symbol, h in histories.items():
        buys = h.bars["timestamp"][h.signals["side"] == "buy"].tolist()
        for name in ("signal", "ensemble"):
            if infos.get(name) and buys:
                tasks.append(_classifier(name, symbol, h, buys, clients[name], infos[name].features, max_batch, request_id))
        if infos.get("anomaly"):
            tasks.append(_anomaly(symbol, h, clients["anomaly"], request_id))
        if infos.get("forecast"):
            tasks.append(_forecast(symbol, h, clients["forecast"], request_id))
    await asyncio.gather(*tasks)


async def _classifier(name: str, symbol: str, h: SymbolHistory, days: list, client: ModelClient, columns: list[str],
                      max_batch: int, request_id: str | None) -> None:
    rows = h.features.set_axis(h.window["timestamp"]).loc[days, columns]
    instances = [wire.classifier_body(symbol, features=r) for r in rows.to_dict("records")]
    reading = wire.signal_reading if name == "signal" else wire.ensemble_reading
    for start in range(0, len(instances), max_batch):
        try:
            preds = (await client.predict(wire.predict_body(instances[start : start + max_batch]), request_id)).predictions
        except KryptoError:  # the layer is then unavailable (degraded) on those days
            continue
        for day, pred in zip(days[start : start + max_batch], preds):
            h.outputs.setdefault(day, {})[name] = reading(pred)


def _day(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_convert(None) if ts.tzinfo else ts


async def _anomaly(symbol: str, h: SymbolHistory, client: ModelClient, request_id: str | None) -> None:
    body = wire.anomaly_body(symbol, Bars.from_frame(h.window), last_only=False)
    try:
        w = (await client.predict(body, request_id)).predictions[0].windows
    except KryptoError:
        return
    for ts, flag, score in zip(w.timestamp, w.anomaly, w.score):
        h.outputs.setdefault(_day(ts), {})["anomaly"] = wire.anomaly_reading(flag, score)


async def _forecast(symbol: str, h: SymbolHistory, client: ModelClient, request_id: str | None) -> None:
    body = wire.forecast_body(symbol, Bars.from_frame(h.window), rolling=True)
    try:
        rolling = (await client.predict(body, request_id)).predictions[0].rolling
    except KryptoError:
        return
    if rolling is None:
        return
    for ts, trend, conf in zip(rolling.timestamp, rolling.trend, rolling.confidence):
        h.outputs.setdefault(_day(ts), {})["forecast"] = wire.forecast_reading(trend, conf)


# ---- walk-forward --------------------------------------------------------------------

def market_spec(config: TraderConfig, symbols: list[str] | None) -> DataSpec:
    """The market the trader trades: its data source and the symbols asked for (or its watchlist)."""
    return DataSpec(source=config.trader.data_source, symbols=symbols or config.trader.watchlist, timeframe=config.trader.timeframe)


def training_configs(spec: wf.WalkForwardSpec, layers: list[str]) -> dict[str, dict]:
    """Each layer's training body without its data, checked now against the layer's own
    ``POST /train`` schema (a typo is a 422 naming it, not a failed fold minutes later)."""
    out = {}
    for name in layers:
        body = spec.training.get(name, {})
        try:
            TRAIN_CONFIGS[name].model_validate(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise InvalidInput(f"walk_forward.training.{name}: {where}: {err['msg']}",
                               field=f"walk_forward.training.{name}" + (f".{where}" if where else "")) from exc
        out[name] = body
    return out


def walk_forward(request: BacktestRequest, config: TraderConfig, settings: Settings, market: DataSpec | None = None,
                 max_batch: int = 1000) -> dict:
    """A walk-forward backtest of ``request`` (its ``walk_forward`` spec) on ``market``
    (default: the trader's data source and the request's symbols): the report, with the
    folds, and the stitched equity curves. Blocking: minutes for years of data.

    ``settings``: the directories of the data (csv, market-data store) and of the seed's
    settings files the training code reads; each fold's versions are stored under a
    temporary directory of their own, removed at the end (the report keeps their hashes).
    """
    spec = request.walk_forward or wf.WalkForwardSpec()
    market = market or market_spec(config, request.symbols)
    if request.symbols:
        market = market.model_copy(update={"symbols": request.symbols})
    layers = request.layers()
    training = training_configs(spec, layers)
    strategy = config.trader.strategy
    embargo = spec.embargo(strategy.max_holding_bars)
    provider = get_provider(market.source, csv_dir=settings.csv_dir, market_data_dir=settings.market_data_dir,
                            seed=market.seed, predictability=market.predictability)
    end = None if request.end is None else pd.Timestamp(request.end) + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    calendar = pd.DatetimeIndex(sorted(set().union(
        *(set(provider.get_bars(s, end=end, timeframe=market.timeframe)["timestamp"]) for s in market.symbols))))
    folds, note = wf.plan_folds(calendar, request.start, request.end, spec, embargo, WARMUP_BARS)
    first, last = folds[0].first, folds[-1].last
    histories = {s: h for s in market.symbols
                 if (h := symbol_history(provider, s, first, last, FeatureParams(), strategy, market.timeframe)) is not None}
    if not histories:
        raise InvalidInput(f"no symbol has bars to backtest between {first.date()} and {last.date()}", field="symbols")
    started = time.perf_counter()
    store = Path(tempfile.mkdtemp(prefix="kryptobot-walkforward-"))
    try:
        # absolute paths: a fold may run in a process whose working directory is not this one's
        tasks = [FoldTask(fold, market.model_dump(mode="json", exclude={"start", "end"}), (first.isoformat(), last.isoformat()),
                          tuple(layers), training, strategy.model_dump(mode="json"),
                          {"models_dir": str(store / f"fold-{fold.index}"), "config_dir": str(settings.config_dir.resolve()),
                           "csv_dir": None if settings.csv_dir is None else str(settings.csv_dir.resolve()),
                           "market_data_dir": str(settings.market_data_dir.resolve())},
                          max_batch) for fold in folds]
        pool = parallel.workers(settings.ray_address)
        # one walk-forward at a time: a second one waits rather than doubling the processes
        with _ONE_AT_A_TIME:
            scored = (pool.map(run_fold, tasks, spec.n_jobs) if layers
                      else [{"outputs": {}, "layers": {}, "seconds": 0.0, "worker": None} for _ in tasks])  # technical only
    finally:
        shutil.rmtree(store, ignore_errors=True)
    wall = time.perf_counter() - started
    switches, thresholds = {}, []
    for fold, fold_outputs in zip(folds, scored):
        for symbol, days in fold_outputs["outputs"].items():
            if symbol in histories:
                histories[symbol].outputs.update(days)
        # "auto" thresholds from the fold's own versions, as a live cycle resolves them from the active ones
        infos = fold_outputs.get("infos", {})
        switches[fold.first], resolved = resolve_thresholds(config, {n: [infos[n]] if n in infos else None for n in LAYERS})
        thresholds.append(resolved)
    cash = request.initial_cash or config.trader.initial_cash
    traded = {s: h.bars for s, h in histories.items()}
    result = replay(histories, traded, switches[folds[0].first], request.modes, cash, _periods_per_year(provider, market.timeframe),
                    switches)
    per_fold = wf.fold_results(folds, result.runs, cash)
    return {
        "id": uuid.uuid4().hex[:12],
        "kind": "walk_forward",
        "symbols": list(histories),
        "start": str(first.date()),
        "end": str(last.date()),
        "models_trained_until": folds[-1].train_end.isoformat(),
        "note": note,
        "layers_available": [n for n in layers if any("versions" in f["layers"].get(n, {}) for f in scored)],
        "model_versions": {n: f"retrained for each of the {len(folds)} folds: see folds[].layers.{n}" for n in layers},
        "bars": sum(len(b) for b in traded.values()),
        "model_outputs": output_summary(histories),
        "walk_forward": {**spec.model_dump(), "embargo_bars": embargo, "n_jobs": pool.count(spec.n_jobs, len(folds)),
                         "folds": len(folds), "ran_on": pool.summary()},
        "folds": [{**fold.summary(), "layers": s["layers"], "thresholds": t, **r, "seconds": s["seconds"], "worker": s["worker"]}
                  for fold, s, r, t in zip(folds, scored, per_fold, thresholds)],
        "timing": {"wall_seconds": wall, "fold_seconds_mean": sum(s["seconds"] for s in scored) / len(scored),
                   "fold_seconds": [s["seconds"] for s in scored]},
        **_results(result),
    }


@dataclass(frozen=True)
class FoldTask:
    """Everything a fold needs, as plain values: any joblib backend can ship it."""

    fold: wf.Fold
    market: dict  # the DataSpec of the traded market, without dates
    history: tuple[str, str]  # first and last traded day of the whole backtest
    layers: tuple[str, ...]
    training: dict  # layer -> training body without data
    strategy: dict  # StrategySettings
    settings: dict  # models (the fold's own store), config, csv and market-data directories
    max_batch: int


def run_fold(task: FoldTask) -> dict:
    """Train the fold's layers on its training window, then score its days with them.

    Returns the fold's outputs per symbol and day, and per layer its versions (hashes),
    what its training measured, and its out-of-sample metrics on the fold's days; a layer
    that fails to train is reported with the error and is unavailable in this fold (its
    decisions are then ``degraded``, as with a service that is down), and where the fold
    ran (:func:`kryptobot.parallel.worker_info`). The fold's store is removed at the end:
    on a cluster it lies on the node that ran the fold.
    """
    try:
        return _run_fold(task)
    finally:
        shutil.rmtree(task.settings["models_dir"], ignore_errors=True)


def _run_fold(task: FoldTask) -> dict:
    started = time.perf_counter()
    fold = task.fold
    settings = Settings(**task.settings)
    market = DataSpec(**task.market)
    data = market.model_copy(update={"start": fold.train_start, "end": fold.train_end}).model_dump(mode="json")
    clients, layers = {}, {}
    for name in task.layers:
        began = time.perf_counter()
        try:
            runtime, versions = wf.train_layer(name, settings, Path(settings.models_dir), {**task.training[name], "data": data})
        except Exception as exc:  # noqa: BLE001 - as a training job reports whatever went wrong, the fold does
            message = exc.message if isinstance(exc, KryptoError) else str(exc)
            layers[name] = {"error": f"{type(exc).__name__}: {message}", "train_seconds": time.perf_counter() - began}
            continue
        clients[name] = InProcessClient(name, runtime, versions)
        layers[name] = {"versions": {line: wf.version_summary(m) for line, m in versions.items()},
                        "train_seconds": time.perf_counter() - began}
    scored = time.perf_counter()
    infos = asyncio.run(_model_infos(clients)) if clients else {}
    strategy = StrategySettings.model_validate(task.strategy)
    provider = get_provider(market.source, csv_dir=settings.csv_dir, market_data_dir=settings.market_data_dir,
                            seed=market.seed, predictability=market.predictability)
    feature_params = FeatureParams.from_dict(_pipeline(infos.get("signal")))
    full, parts = {}, {}
    for symbol in market.symbols:
        h = symbol_history(provider, symbol, pd.Timestamp(task.history[0]), pd.Timestamp(task.history[1]), feature_params, strategy,
                           market.timeframe)
        part = h.between(fold.first, fold.last) if h is not None else None
        if part is not None:
            full[symbol], parts[symbol] = h, part
    asyncio.run(_collect_outputs(parts, clients, infos, task.max_batch, None))
    outputs = {s: {day: o for day, o in p.outputs.items() if fold.first <= day <= fold.last} for s, p in parts.items()}
    for name, info in infos.items():
        layers[name]["out_of_sample"] = _layer_oos(name, info, full, outputs)
    return {"outputs": outputs, "layers": layers, "infos": {n: i for n, i in infos.items() if i is not None},
            "score_seconds": time.perf_counter() - scored, "seconds": time.perf_counter() - started,
            "worker": parallel.worker_info()}


def _layer_oos(name: str, info: ModelInfo, histories: dict[str, SymbolHistory], outputs: dict) -> dict | None:
    """One layer's answers on the fold's days against what followed, pooled over the symbols."""
    answers = {s: {day: outputs_from(o) for day, o in outputs.get(s, {}).items() if name in o} for s in histories}
    if name in ("signal", "ensemble"):
        params = (info.params or {}).get("labels") or {}
        labels = LabelParams(**{k: params[k] for k in ("tp_mult", "sl_mult", "max_holding") if k in params})
        atr_period = FeatureParams.from_dict(_pipeline(info)).atr_period
        field = "signal_probability" if name == "signal" else "ensemble_score"
        parts = [wf.classifier_outcomes(h.window, {d: getattr(o, field) for d, o in answers[s].items()}, labels, atr_period)
                 for s, h in histories.items()]
        data = info.data_range or {}
        base_rate = data["positive_outcomes"] / data["samples"] if data.get("samples") and "positive_outcomes" in data else None
        return wf.classifier_oos(*(np.concatenate(column) for column in zip(*parts)), train_base_rate=base_rate)
    if name == "forecast":
        horizon = int((info.params or {}).get("forecast_horizon", 5))
        parts = [wf.forecast_outcomes(h.window, {d: o.forecast_trend for d, o in answers[s].items()}, horizon)
                 for s, h in histories.items()]
        return wf.forecast_oos(*(np.concatenate(column) for column in zip(*parts)), horizon=horizon)
    readings = [o for a in answers.values() for o in a.values()]
    return wf.anomaly_oos([o.anomaly for o in readings], [o.anomaly_score for o in readings])


def save_reports(report: dict, directory: Path, keep: int) -> list[str]:
    """Write the run's reports (:func:`~kryptobot.trading.backtest.write_reports`), then keep
    the reports of the newest ``keep`` runs only; the names written."""
    names = write_reports(report, directory)
    prune_reports(directory, keep)
    return names


def prune_reports(directory: Path, keep: int) -> list[str]:
    """Delete ``backtest_<id>.json`` and ``equity_curve_<id>.png`` of every run but the newest
    ``keep`` (by the report's modification time); ``backtest_report.json`` and
    ``equity_curve.png``, the latest run's copies, stay. The ids deleted, oldest first."""
    runs = sorted(((path.stat().st_mtime_ns, match["id"]) for path in directory.iterdir()
                   if (match := RUN_REPORT_RE.match(path.name))), reverse=True)
    gone = [run_id for _, run_id in runs[keep:]]
    for run_id in gone:
        for name in (f"backtest_{run_id}.json", f"equity_curve_{run_id}.png"):
            (directory / name).unlink(missing_ok=True)  # a run's reports may be read while they go: a 404 then
    return gone[::-1]
