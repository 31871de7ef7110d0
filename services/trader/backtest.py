"""Backtest: the live decision rules over history, with batch calls to the model services.

Per symbol, one pass computes the technical signals; the model services are asked in
batches (signal/ensemble: named features of every buy signal, computed with the
model's own feature pipeline; anomaly: every window of the range in one call;
forecast: a forecast per bar with ``options.rolling``). Then each mode (technical
only, +signal, +ensemble, +anomaly, +forecast, all) replays the same days with
:func:`services.trader.decisions.decide`. Models are used only on bars after the end
of their training data: the backtest starts there and says so.

Fills: at the close of the decision bar, plus slippage, minus commission (as the live
paper broker does).
"""
from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kryptobot import plots
from kryptobot.backtest_metrics import performance
from kryptobot.data import get_provider
from kryptobot.data.base import UniqueSymbols
from kryptobot.errors import InvalidInput, KryptoError
from kryptobot.features import FeatureParams, build_features
from kryptobot.schemas import Bars
from services.trader.clients import ModelClient
from services.trader.decisions import LAYERS, Holding, Layers, ModelOutputs, buy_quantity, decide, outputs_from
from services.trader.market import strategy_signals
from services.trader.settings import StrategySettings, TraderConfig

MODES = {
    "technical": Layers.only(),
    "signal": Layers.only("signal"),
    "ensemble": Layers.only("ensemble"),
    "anomaly": Layers.only("anomaly"),
    "forecast": Layers.only("forecast"),
    "all": Layers.only(*LAYERS),
}
QUIET_RULES = ("no_entry_signal", "hold_position")  # every bar has one: counting them says nothing
BACKTEST_TIMEOUT_SECONDS = 300.0  # one whole-history batch per service and symbol
WARMUP_BARS = 320  # features (154 bars) and the forecaster's windows before the first traded day


class BacktestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"symbols": ["SPY", "QQQ"], "modes": ["technical", "all"]}]})

    symbols: UniqueSymbols | None = Field(None, min_length=1, max_length=100, description="default: the watchlist")
    start: date | None = Field(None, description="first day (default, and at the earliest: the day after the models' training data ends)")
    end: date | None = Field(None, description="last day (default: the last bar)")
    modes: list[str] = Field(default_factory=lambda: list(MODES), description=f"any of {list(MODES)}")
    initial_cash: float | None = Field(None, gt=0)

    @field_validator("modes")
    @classmethod
    def _modes(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in MODES]
        if unknown or not value:
            raise ValueError(f"unknown mode(s) {unknown}; choose from {list(MODES)}" if unknown else "no modes")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _range(self) -> "BacktestRequest":
        if self.start and self.end and self.start > self.end:
            raise InvalidInput(f"start {self.start} is after end {self.end}", field="start")
        return self


@dataclass
class SymbolHistory:
    window: pd.DataFrame  # warm-up bars + traded days
    features: pd.DataFrame  # the classifiers' features, row-aligned with ``window``
    signals: pd.DataFrame  # per traded day: ``side`` of the technical strategy and ``atr``
    outputs: dict[pd.Timestamp, dict] = field(default_factory=dict)  # per day: each service's prediction

    @property
    def bars(self) -> pd.DataFrame:
        """The traded days."""
        return self.window.iloc[WARMUP_BARS:].reset_index(drop=True)


async def run_backtest(request: BacktestRequest, config: TraderConfig, clients: dict[str, ModelClient],
                       csv_dir=None, max_batch: int = 1000, request_id: str | None = None) -> dict:
    """The report (metrics per mode vs buy-and-hold) and the equity curves.

    ``max_batch``: instances per /predict call (the services' ``KRYPTOBOT_MAX_BATCH``);
    ``request_id`` is sent to the services with every call.
    """
    symbols = request.symbols or config.trader.watchlist
    infos = await _model_infos(clients, request_id)
    trained_until = max((pd.Timestamp(i["data_range"]["end"]).tz_localize(None) for i in infos.values() if i and i.get("data_range")),
                        default=None)
    start = pd.Timestamp(request.start) if request.start else None
    note = None
    if trained_until is not None and (start is None or start <= trained_until):
        if start is not None:
            note = f"start moved from {start.date()} to after the models' training data (ends {trained_until.date()})"
        start = (trained_until + pd.Timedelta(days=1)).normalize()
    provider = get_provider(config.trader.data_source, csv_dir=csv_dir)
    feature_params = FeatureParams.from_dict(_pipeline(infos.get("signal")))
    end = None if request.end is None else pd.Timestamp(request.end)
    loaded = await asyncio.gather(
        *(asyncio.to_thread(_history, provider, s, start, end, feature_params, config.trader.strategy) for s in symbols))
    histories = {s: h for s, h in zip(symbols, loaded) if h is not None}
    if not histories:
        raise InvalidInput(f"no bars to backtest between {start} and {request.end}", field="start")
    await _collect_outputs(histories, clients, infos, max_batch, request_id)
    cash = request.initial_cash or config.trader.initial_cash
    traded = {s: h.bars for s, h in histories.items()}
    results, curves = await asyncio.to_thread(_replay, histories, traded, config, request.modes, cash)  # CPU: off the event loop
    return {
        "id": uuid.uuid4().hex[:12],
        "symbols": list(histories),
        "start": str(min(b["timestamp"].iat[0] for b in traded.values()).date()),
        "end": str(max(b["timestamp"].iat[-1] for b in traded.values()).date()),
        "models_trained_until": None if trained_until is None else str(trained_until.date()),
        "note": note,
        "layers_available": [name for name in LAYERS if infos.get(name)],
        "model_versions": {name: info.get("version") for name, info in infos.items() if info},
        "bars": sum(len(b) for b in traded.values()),
        "model_outputs": _output_summary(histories),
        "results": results,
        "curves": curves,
    }


def _replay(histories, traded, config: TraderConfig, modes: list[str], cash: float) -> tuple[dict, dict]:
    results, curves = {}, {}
    for mode in modes:
        run = _simulate(histories, traded, config, MODES[mode], cash)
        results[mode] = {**performance(run.equity, run.trades, run.exposure), "degraded_decisions": run.degraded, "rules": run.rules}
        curves[mode] = run.equity
    curves["buy_and_hold"] = _buy_and_hold(traded, cash, config)
    results["buy_and_hold"] = performance(curves["buy_and_hold"], [], 1.0)
    return results, curves


def _output_summary(histories: dict[str, SymbolHistory]) -> dict:
    """What each service answered on the traded days (not the warm-up before them), i.e.
    why a layer fired or not: the share of anomalous windows, and quantiles of the score
    each other rule compares with its threshold (signal probability, ensemble score,
    forecast confidence)."""
    scores: dict[str, list[float]] = {"signal": [], "ensemble": [], "anomaly": [], "forecast": []}
    for h in histories.values():
        for day in h.bars["timestamp"]:
            o = outputs_from(h.outputs.get(day, {}))
            for name, value in (("signal", o.signal_probability), ("ensemble", o.ensemble_score),
                                ("anomaly", o.anomaly), ("forecast", o.forecast_confidence)):
                if value is not None:
                    scores[name].append(float(value))
    summary = {}
    for name, v in scores.items():
        if not v:
            continue
        if name == "anomaly":
            summary[name] = {"answers": len(v), "anomaly_rate": float(np.mean(v))}
        else:
            p10, p50, p90, top = np.quantile(v, [0.1, 0.5, 0.9, 1.0])
            summary[name] = {"answers": len(v), "p10": float(p10), "p50": float(p50), "p90": float(p90), "max": float(top)}
    return summary


def write_reports(report: dict, directory: Path) -> list[str]:
    """backtest_report.json and equity_curve.png (latest run, and under the run's id)."""
    directory.mkdir(parents=True, exist_ok=True)
    curves = report.pop("curves")
    body = json.dumps(report, indent=2, default=str)
    names = []
    for name in ("backtest_report.json", f"backtest_{report['id']}.json"):
        _atomic_write(directory / name, body)
        names.append(name)
    index = next(iter(curves.values())).index
    series = {mode: (curve / curve.iat[0]).tolist() for mode, curve in curves.items()}
    for name in ("equity_curve.png", f"equity_curve_{report['id']}.png"):
        plots.lines(directory / name, series, "Equity (start = 1): ML layers vs technical vs buy-and-hold", ylabel="equity", x=list(index))
        names.append(name)
    return names


def _atomic_write(path: Path, text: str) -> None:
    # a reader of /reports/<name> never sees half a report
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")  # concurrent backtests each write their own
    tmp.write_text(text)
    tmp.replace(path)


async def _model_infos(clients: dict[str, ModelClient], request_id: str | None = None) -> dict[str, dict | None]:
    """GET /model of each service (None: down or untrained, its layer is unavailable)."""
    async def one(name: str):
        try:
            models = (await clients[name].model(request_id))["models"]
        except KryptoError:
            return None
        latest = max(models, key=lambda m: (m.get("data_range") or {}).get("end") or "")
        return {**latest, "version": "+".join(m["version"] for m in models)}

    names = list(clients)
    return dict(zip(names, await asyncio.gather(*(one(n) for n in names))))


def _pipeline(info: dict | None) -> dict:
    params = dict(((info or {}).get("params") or {}).get("feature_pipeline") or {})
    params.pop("version", None)
    return params


def _history(provider, symbol: str, start, end, feature_params: FeatureParams, strategy: StrategySettings) -> SymbolHistory | None:
    bars = provider.get_bars(symbol, end=end)
    first = int(np.searchsorted(bars["timestamp"].to_numpy(), np.datetime64(start))) if start is not None else WARMUP_BARS
    first = max(first, WARMUP_BARS)
    if first >= len(bars):
        return None
    window = bars.iloc[first - WARMUP_BARS :].reset_index(drop=True)
    features = build_features(window, feature_params)  # the classifiers' inputs, with their own pipeline
    signals = strategy_signals(window, strategy).iloc[WARMUP_BARS:].reset_index(drop=True)
    return SymbolHistory(window, features, signals)


async def _collect_outputs(histories: dict[str, SymbolHistory], clients, infos, max_batch: int, request_id: str | None) -> None:
    """Fill ``history.outputs`` with every service's answer for the days it matters."""
    tasks = []
    for symbol, h in histories.items():
        buys = h.bars["timestamp"][h.signals["side"] == "buy"].tolist()
        for name in ("signal", "ensemble"):
            if infos.get(name) and buys:
                tasks.append(_classifier(name, symbol, h, buys, clients[name], infos[name]["features"], max_batch, request_id))
        if infos.get("anomaly"):
            tasks.append(_anomaly(symbol, h, clients["anomaly"], request_id))
        if infos.get("forecast"):
            tasks.append(_forecast(symbol, h, clients["forecast"], request_id))
    await asyncio.gather(*tasks)


async def _classifier(name: str, symbol: str, h: SymbolHistory, days: list, client: ModelClient, columns: list[str],
                      max_batch: int, request_id: str | None) -> None:
    rows = h.features.set_axis(h.window["timestamp"]).loc[days, columns]
    instances = [{"symbol": symbol, "side": "buy", "features": r} for r in rows.to_dict("records")]
    for start in range(0, len(instances), max_batch):
        try:
            preds = (await client.predict({"instances": instances[start : start + max_batch]}, request_id))["predictions"]
        except KryptoError:  # the layer is then unavailable (degraded) on those days
            continue
        for day, pred in zip(days[start : start + max_batch], preds):
            h.outputs.setdefault(day, {})[name] = pred


def _day(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_convert(None) if ts.tzinfo else ts


async def _anomaly(symbol: str, h: SymbolHistory, client: ModelClient, request_id: str | None) -> None:
    body = {"instances": [{"symbol": symbol, "bars": Bars.from_frame(h.window).model_dump(mode="json")}]}
    try:
        w = (await client.predict(body, request_id))["predictions"][0]["windows"]
    except KryptoError:
        return
    for ts, flag, score in zip(w["timestamp"], w["anomaly"], w["score"]):
        h.outputs.setdefault(_day(ts), {})["anomaly"] = {"anomaly": flag, "score": score}


async def _forecast(symbol: str, h: SymbolHistory, client: ModelClient, request_id: str | None) -> None:
    body = {"instances": [{"symbol": symbol, "bars": Bars.from_frame(h.window).model_dump(mode="json")}], "options": {"rolling": True}}
    try:
        rolling = (await client.predict(body, request_id))["predictions"][0]["rolling"]
    except KryptoError:
        return
    for ts, trend, conf in zip(rolling["timestamp"], rolling["trend"], rolling["confidence"]):
        h.outputs.setdefault(_day(ts), {})["forecast"] = {"trend": trend, "confidence": conf}


def _outputs(day_outputs: dict, layers: Layers, technical: str, holding: bool) -> ModelOutputs:
    """What the live engine would have had: the services it asks for this decision."""
    wanted = {n: v for n, v in day_outputs.items() if getattr(layers, n)}
    needed = [n for n in layers.enabled() if n == "forecast" or (technical == "buy" and not holding)]
    return outputs_from(wanted, tuple(n for n in needed if n not in wanted))


@dataclass
class Run:
    equity: pd.Series
    trades: list[float]  # return of each closed trade, net of costs
    exposure: float  # mean fraction of equity invested
    degraded: int  # decisions taken without a service that should have answered
    rules: dict[str, int]  # how often each rule fired on an entry candidate or a held position


def _simulate(histories: dict[str, SymbolHistory], traded: dict[str, pd.DataFrame], config: TraderConfig, layers: Layers, cash: float) -> Run:
    """Daily replay: each symbol's decision at the close, with slippage and commission."""
    t = config.trader
    days = sorted(set().union(*(set(b["timestamp"]) for b in traded.values())))
    # plain lists: pandas indexing per bar would cost more than the rules themselves
    rows = {s: dict(zip(b["timestamp"], range(len(b)))) for s, b in traded.items()}
    closes = {s: b["close"].astype(float).tolist() for s, b in traded.items()}
    sides = {s: h.signals["side"].tolist() for s, h in histories.items()}
    atrs = {s: h.signals["atr"].tolist() for s, h in histories.items()}
    positions: dict[str, tuple[float, float, int, Holding]] = {}  # symbol -> (quantity, cost per share incl. costs, entry row, holding)
    last_price: dict[str, float] = {}
    equity_curve, trades, exposure, degraded, fired = [], [], [], 0, Counter()
    for day in days:
        for symbol, h in histories.items():
            i = rows[symbol].get(day)
            if i is None:
                continue
            price = last_price[symbol] = closes[symbol][i]
            technical, atr = sides[symbol][i], atrs[symbol][i]
            position = positions.get(symbol)
            holding = None if position is None else replace(position[3], bars_held=i - position[2])
            outputs = _outputs(h.outputs.get(day, {}), layers, technical, holding is not None)
            d = decide(symbol, technical, holding, price, atr, outputs, config, layers)
            degraded += d.degraded
            fired.update(r.split(":")[0] for r in d.rules if r not in QUIET_RULES)
            if d.action == "sell" and position is not None:
                qty, cost, _, _ = positions.pop(symbol)
                proceeds = qty * price * (1 - t.slippage) * (1 - t.commission)
                cash += proceeds
                trades.append(proceeds / (qty * cost) - 1)
            elif d.action == "buy" and position is None:
                equity = cash + sum(q * last_price[s] for s, (q, *_) in positions.items())
                fill = price * (1 + t.slippage)
                qty = buy_quantity(equity, cash, d.size_fraction, price, t.slippage, t.commission)
                if qty > 0:
                    cash -= qty * fill * (1 + t.commission)
                    positions[symbol] = (qty, fill * (1 + t.commission), i, Holding(fill, d.stop, d.target))
        market = sum(q * last_price[s] for s, (q, *_) in positions.items())
        equity_curve.append(cash + market)
        exposure.append(market / (cash + market))
    mean_exposure = float(np.mean(exposure)) if exposure else 0.0
    return Run(pd.Series(equity_curve, index=pd.DatetimeIndex(days)), trades, mean_exposure, degraded, dict(sorted(fired.items())))


def _buy_and_hold(traded: dict[str, pd.DataFrame], cash: float, config: TraderConfig) -> pd.Series:
    """Equal weight in every symbol on the first day, held to the end (same costs on entry)."""
    closes = pd.DataFrame({s: b.set_index("timestamp")["close"] for s, b in traded.items()}).sort_index().ffill()
    first = closes.bfill().iloc[0]
    shares = cash / len(closes.columns) * (1 - config.trader.commission) / (first * (1 + config.trader.slippage))
    return (closes.fillna(first) * shares).sum(axis=1)
