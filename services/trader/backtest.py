"""Backtest: the live decision rules over history, with batch calls to the model services.

Per symbol, one pass computes the technical signals; the model services are asked in
batches (signal/ensemble: named features of every buy signal, computed with the
model's own feature pipeline; anomaly: every window of the range in one call;
forecast: a forecast per bar with ``options.rolling``). Then each mode (technical
only, +signal, +ensemble, +anomaly, +forecast, all) replays the same days with
:func:`services.trader.decisions.decide`. Models are used only on bars after the end
of their training data: the backtest starts there and says so.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kryptobot import plots
from kryptobot.backtest_metrics import performance
from kryptobot.data import get_provider
from kryptobot.data.base import Symbol
from kryptobot.features import FeatureParams, build_features
from kryptobot.errors import InvalidInput
from kryptobot.schemas import Bars
from services.trader.clients import ModelClient
from services.trader.decisions import LAYERS, Layers, ModelOutputs, decide
from services.trader.market import technical_sides
from services.trader.settings import TraderConfig

MODES = {
    "technical": Layers.only(),
    "signal": Layers.only("signal"),
    "ensemble": Layers.only("ensemble"),
    "anomaly": Layers.only("anomaly"),
    "forecast": Layers.only("forecast"),
    "all": Layers.only(*LAYERS),
}
WARMUP_BARS = 320  # features (154 bars) and the forecaster's windows before the first traded day
BATCH = 1000


class BacktestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"symbols": ["SPY", "QQQ"], "modes": ["technical", "all"]}]})

    symbols: list[Symbol] | None = Field(None, description="default: the watchlist")
    start: str | None = Field(None, description="first day (default: the day after the models' training data ends)")
    end: str | None = Field(None, description="last day (default: the last bar)")
    modes: list[str] = Field(default_factory=lambda: list(MODES), description=f"any of {list(MODES)}")
    initial_cash: float | None = Field(None, gt=0)

    @field_validator("modes")
    @classmethod
    def _modes(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in MODES]
        if unknown or not value:
            raise ValueError(f"unknown mode(s) {unknown}; choose from {list(MODES)}" if unknown else "no modes")
        return value



@dataclass
class SymbolHistory:
    bars: pd.DataFrame  # the traded days only
    technical: pd.Series  # 'buy' / 'sell' / 'none' per traded day
    outputs: dict[pd.Timestamp, dict] = field(default_factory=dict)  # per day: the services' answers


async def run_backtest(request: BacktestRequest, config: TraderConfig, clients: dict[str, ModelClient], csv_dir=None) -> dict:
    """The report (metrics per mode vs buy-and-hold) and the equity curves."""
    symbols = request.symbols or config.trader.watchlist
    infos = await _model_infos(clients)
    trained_until = max((pd.Timestamp(i["data_range"]["end"]) for i in infos.values() if i and i.get("data_range")), default=None)
    start = pd.Timestamp(request.start) if request.start else None
    if trained_until is not None and (start is None or start <= trained_until):
        start = trained_until + pd.Timedelta(days=1)
    provider = get_provider(config.trader.data_source, csv_dir=csv_dir)
    feature_params = FeatureParams.from_dict(_pipeline(infos.get("signal")))
    histories = {}
    for symbol in symbols:
        history = await asyncio.to_thread(_history, provider, symbol, start, request.end, feature_params)
        if history is not None:
            histories[symbol] = history
    if not histories:
        raise InvalidInput(f"no bars to backtest between {start} and {request.end}", field="start")
    await _collect_outputs(histories, clients, infos, symbols)
    cash = request.initial_cash or config.trader.initial_cash
    results, curves = {}, {}
    for mode in request.modes:
        curve, trades, exposure = _simulate(histories, config, MODES[mode], cash)
        results[mode] = performance(curve, trades, exposure)
        curves[mode] = curve
    hold_curve = _buy_and_hold(histories, cash, config)
    results["buy_and_hold"] = performance(hold_curve, [], 1.0)
    days = sum(len(h.bars) for h in histories.values())
    return {
        "id": uuid.uuid4().hex[:12],
        "symbols": list(histories),
        "start": str(min(h.bars["timestamp"].iat[0] for h in histories.values()).date()),
        "end": str(max(h.bars["timestamp"].iat[-1] for h in histories.values()).date()),
        "models_trained_until": None if trained_until is None else str(trained_until.date()),
        "model_versions": {name: info.get("version") for name, info in infos.items() if info},
        "bars": days,
        "results": results,
        "curves": {**curves, "buy_and_hold": hold_curve},
    }


def write_reports(report: dict, directory: Path) -> list[str]:
    """backtest_report.json and equity_curve.png (latest run, and under the run's id)."""
    directory.mkdir(parents=True, exist_ok=True)
    curves = report.pop("curves")
    body = json.dumps(report, indent=2, default=str)
    names = []
    for name in ("backtest_report.json", f"backtest_{report['id']}.json"):
        (directory / name).write_text(body)
        names.append(name)
    index = next(iter(curves.values())).index
    series = {mode: (curve / curve.iat[0]).tolist() for mode, curve in curves.items()}
    for name in ("equity_curve.png", f"equity_curve_{report['id']}.png"):
        plots.lines(directory / name, series, "Equity (start = 1): ML layers vs technical vs buy-and-hold", ylabel="equity", x=list(index))
        names.append(name)
    return names


async def _model_infos(clients: dict[str, ModelClient]) -> dict[str, dict | None]:
    async def one(name: str):
        try:
            models = (await clients[name].model())["models"]
        except Exception:  # noqa: BLE001 - a missing service only disables its layer
            return None
        latest = max(models, key=lambda m: m.get("data_range", {}).get("end") or "")
        return {**latest, "version": "+".join(m["version"] for m in models)}

    names = list(clients)
    return dict(zip(names, await asyncio.gather(*(one(n) for n in names))))


def _pipeline(info: dict | None) -> dict:
    params = dict(((info or {}).get("params") or {}).get("feature_pipeline") or {})
    params.pop("version", None)
    return params


def _history(provider, symbol: str, start, end, feature_params: FeatureParams) -> SymbolHistory | None:
    bars = provider.get_bars(symbol, end=end)
    first = int(np.searchsorted(bars["timestamp"].to_numpy(), np.datetime64(start))) if start is not None else WARMUP_BARS
    first = max(first, WARMUP_BARS)
    if first >= len(bars):
        return None
    window = bars.iloc[first - WARMUP_BARS :].reset_index(drop=True)
    features = build_features(window, feature_params)
    default = FeatureParams()
    sides = technical_sides(window, features if feature_params == default else build_features(window, default))
    traded = slice(WARMUP_BARS, None)
    history = SymbolHistory(window.iloc[traded].reset_index(drop=True), sides.iloc[traded].reset_index(drop=True))
    history.full_bars, history.features = window, features  # type: ignore[attr-defined]
    return history


async def _collect_outputs(histories: dict[str, SymbolHistory], clients, infos, symbols) -> None:
    """Fill ``history.outputs`` with every service's answer for the days it matters."""
    tasks = []
    for symbol, h in histories.items():
        buys = h.bars["timestamp"][h.technical == "buy"].tolist()
        tasks.append(_classifiers(symbol, h, buys, clients, infos))
        if infos.get("anomaly"):
            tasks.append(_anomaly(symbol, h, clients["anomaly"]))
        if infos.get("forecast"):
            tasks.append(_forecast(symbol, h, clients["forecast"]))
    await asyncio.gather(*tasks)


async def _classifiers(symbol, h: SymbolHistory, days, clients, infos) -> None:
    if not days:
        return
    full = h.full_bars.set_index("timestamp")  # type: ignore[attr-defined]
    features = h.features.set_axis(full.index)  # type: ignore[attr-defined]
    for name in ("signal", "ensemble"):
        info = infos.get(name)
        if not info:
            continue
        rows = features.loc[days, info["features"]]
        instances = [{"symbol": symbol, "side": "buy", "features": r} for r in rows.to_dict("records")]
        for start in range(0, len(instances), BATCH):
            try:
                preds = (await clients[name].predict({"instances": instances[start : start + BATCH]}))["predictions"]
            except Exception:  # noqa: BLE001 - the layer is then unavailable on those days
                continue
            for day, pred in zip(days[start : start + BATCH], preds):
                out = h.outputs.setdefault(day, {})
                if name == "signal":
                    out["signal"] = pred
                else:
                    out["ensemble"] = pred


async def _anomaly(symbol, h: SymbolHistory, client: ModelClient) -> None:
    body = {"instances": [{"symbol": symbol, "bars": Bars.from_frame(h.full_bars).model_dump(mode="json")}]}  # type: ignore[attr-defined]
    try:
        pred = (await client.predict(body))["predictions"][0]
    except Exception:  # noqa: BLE001
        return
    w = pred["windows"]
    for ts, flag, score in zip(w["timestamp"], w["anomaly"], w["score"]):
        day = pd.Timestamp(ts).tz_localize(None) if pd.Timestamp(ts).tzinfo else pd.Timestamp(ts)
        h.outputs.setdefault(day, {})["anomaly"] = {"predictions": [{"anomaly": flag, "score": score}]}


async def _forecast(symbol, h: SymbolHistory, client: ModelClient) -> None:
    body = {"instances": [{"symbol": symbol, "bars": Bars.from_frame(h.full_bars).model_dump(mode="json")}], "options": {"rolling": True}}  # type: ignore[attr-defined]
    try:
        rolling = (await client.predict(body))["predictions"][0]["rolling"]
    except Exception:  # noqa: BLE001
        return
    for ts, trend, conf in zip(rolling["timestamp"], rolling["trend"], rolling["confidence"]):
        h.outputs.setdefault(pd.Timestamp(ts).tz_localize(None) if pd.Timestamp(ts).tzinfo else pd.Timestamp(ts), {})["forecast"] = {
            "trend": trend, "confidence": conf}


def _outputs(day_outputs: dict, layers: Layers, technical: str, holding: bool) -> ModelOutputs:
    from services.trader.engine import outputs_from

    wanted = {n: v for n, v in day_outputs.items() if getattr(layers, n)}
    needed = [n for n in layers.enabled() if n == "forecast" or (technical == "buy" and not holding)]
    missing = tuple(n for n in needed if n not in wanted)
    return outputs_from(wanted, missing)


def _simulate(histories: dict[str, SymbolHistory], config: TraderConfig, layers: Layers, cash: float):
    """Daily replay: exits then entries at each close, with slippage and commission."""
    t = config.trader
    days = sorted(set().union(*(set(h.bars["timestamp"]) for h in histories.values())))
    by_day = {s: {ts: i for i, ts in enumerate(h.bars["timestamp"])} for s, h in histories.items()}
    positions: dict[str, tuple[float, float]] = {}  # symbol -> (quantity, entry cost per share)
    last_price: dict[str, float] = {}
    equity_curve, trades, exposure = [], [], []
    for day in days:
        for symbol, h in histories.items():
            i = by_day[symbol].get(day)
            if i is None:
                continue
            price = float(h.bars["close"].iat[i])
            last_price[symbol] = price
            holding = symbol in positions
            technical = h.technical.iat[i]
            outputs = _outputs(h.outputs.get(day, {}), layers, technical, holding)
            d = decide(symbol, technical, holding, outputs, config, layers)
            if d.action == "sell" and holding:
                qty, cost = positions.pop(symbol)
                proceeds = qty * price * (1 - t.slippage)
                cash += proceeds - proceeds * t.commission
                trades.append(proceeds * (1 - t.commission) / (qty * cost) - 1)
            elif d.action == "buy" and not holding:
                equity = cash + sum(q * last_price[s] for s, (q, _) in positions.items())
                fill = price * (1 + t.slippage)
                spend = min(equity * d.size_fraction, cash / (1 + t.commission))
                if spend > 0:
                    qty = spend / fill
                    cash -= spend * (1 + t.commission)
                    positions[symbol] = (qty, fill * (1 + t.commission))
        market = sum(q * last_price[s] for s, (q, _) in positions.items())
        equity_curve.append(cash + market)
        exposure.append(market / (cash + market))
    return pd.Series(equity_curve, index=pd.DatetimeIndex(days)), trades, float(np.mean(exposure)) if exposure else 0.0


def _buy_and_hold(histories: dict[str, SymbolHistory], cash: float, config: TraderConfig) -> pd.Series:
    """Equal weight in every symbol on the first day, held to the end."""
    closes = pd.DataFrame({s: h.bars.set_index("timestamp")["close"] for s, h in histories.items()}).sort_index().ffill()
    first = closes.bfill().iloc[0]
    weights = cash / len(closes.columns) * (1 - config.trader.commission) / (first * (1 + config.trader.slippage))
    return (closes.fillna(first) * weights).sum(axis=1)
