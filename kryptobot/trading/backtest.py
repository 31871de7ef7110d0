"""Backtest replay: the live decision rules over history, given every model's answers.

Per symbol, one pass computes the technical signals; the model outputs per day are
collected beforehand (by the trader, from the model services). Then each mode (technical
only, +signal, +ensemble, +anomaly, +forecast, all) replays the same days with
:func:`kryptobot.trading.decisions.decide`.

Fills: at the close of the decision bar, plus slippage, minus commission (as the live
paper broker does).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kryptobot import plots
from kryptobot.data.base import UniqueSymbols
from kryptobot.errors import InvalidInput
from kryptobot.features import FeatureParams, build_features
from kryptobot.files import atomic_write_text
from kryptobot.trading.decisions import LAYERS, Holding, Layers, ModelOutputs, buy_quantity, decide, outputs_from
from kryptobot.trading.market import strategy_signals
from kryptobot.trading.metrics import performance
from kryptobot.trading.settings import StrategySettings, TraderConfig


MODES = {
    "technical": Layers.only(),
    "signal": Layers.only("signal"),
    "ensemble": Layers.only("ensemble"),
    "anomaly": Layers.only("anomaly"),
    "forecast": Layers.only("forecast"),
    "all": Layers.only(*LAYERS),
}



QUIET_RULES = ("no_entry_signal", "hold_position")  # every bar has one: counting them says nothing



WARMUP_BARS = 320  # features (154 bars) and the forecaster's windows before the first traded day



class BacktestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"symbols": ["SPY", "QQQ"], "modes": ["technical", "all"]}]})

    symbols: UniqueSymbols | None = Field(None, min_length=1, max_length=100, description="default: the watchlist")
    start: date | None = Field(None, description="first day (default, and at the earliest: the day after the models' training data ends)")
    end: date | None = Field(None, description="last day (default: the last bar)")
    modes: list[str] = Field(default_factory=lambda: list(MODES), description=f"any of {list(MODES)}")
    initial_cash: float | None = Field(None, ge=1, le=1e12, description="default: the trader's initial_cash")  # beyond: NaN equity curves

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
    outputs: dict[pd.Timestamp, dict[str, ModelOutputs]] = field(default_factory=dict)  # per day: each layer's reading

    @property
    def bars(self) -> pd.DataFrame:
        """The traded days."""
        return self.window.iloc[WARMUP_BARS:].reset_index(drop=True)



def replay(histories, traded, config: TraderConfig, modes: list[str], cash: float) -> tuple[dict, dict]:
    results, curves = {}, {}
    for mode in modes:
        run = _simulate(histories, traded, config, MODES[mode], cash)
        results[mode] = {**performance(run.equity, run.trades, run.exposure), "degraded_decisions": run.degraded, "rules": run.rules}
        curves[mode] = run.equity
    curves["buy_and_hold"] = _buy_and_hold(traded, cash, config)
    results["buy_and_hold"] = performance(curves["buy_and_hold"], [], 1.0)
    return results, curves



def output_summary(histories: dict[str, SymbolHistory]) -> dict:
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
        atomic_write_text(directory / name, body)  # a reader of /reports/<name> never sees half a report
        names.append(name)
    index = next(iter(curves.values())).index
    series = {mode: (curve / curve.iat[0]).tolist() for mode, curve in curves.items()}
    for name in ("equity_curve.png", f"equity_curve_{report['id']}.png"):
        plots.lines(directory / name, series, "Equity (start = 1): ML layers vs technical vs buy-and-hold", ylabel="equity", x=list(index))
        names.append(name)
    return names




def symbol_history(provider, symbol: str, start, end, feature_params: FeatureParams, strategy: StrategySettings) -> SymbolHistory | None:
    bars = provider.get_bars(symbol, end=end)
    first = int(np.searchsorted(bars["timestamp"].to_numpy(), np.datetime64(start))) if start is not None else WARMUP_BARS
    first = max(first, WARMUP_BARS)
    if first >= len(bars):
        return None
    window = bars.iloc[first - WARMUP_BARS :].reset_index(drop=True)
    features = build_features(window, feature_params)  # the classifiers' inputs, with their own pipeline
    signals = strategy_signals(window, strategy).iloc[WARMUP_BARS:].reset_index(drop=True)
    return SymbolHistory(window, features, signals)



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
