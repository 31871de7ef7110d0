"""Backtest replay: the live decision rules over history, given every model's answers.

Per symbol, one pass computes the technical signals; the model outputs per day are
collected beforehand (by the trader: from the model services, or, in a walk-forward,
from the models each fold trained, see :mod:`kryptobot.trading.walkforward`). Then each
mode (technical only, +signal, +ensemble, +anomaly, +forecast, all) replays the same days
with :func:`kryptobot.trading.decisions.decide`.

Fills, as an order would fill in the market:

* an order decided at a bar's close fills at the symbol's next bar's open, plus slippage
  (against us), minus commission; an entry is worth its ``size_fraction`` of the equity
  at the decision, priced at that open and clipped to the cash left then;
* a stop or a target touched inside a bar (its low / high) fills at the barrier, or at the
  open when the bar gapped through it, the stop first when both are inside one bar: the
  rule of the signal models' labels (:func:`kryptobot.trading.decisions.barrier_hit`);
* the time limit, ``max_holding_bars`` after the entry's decision bar, closes at that
  bar's close, as the labels' time limit.

An order left at the last bar never fills; a position open at the end is valued at the
last close and is not a trade.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
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
from kryptobot.trading.decisions import LAYERS, Bar, Holding, Layers, ModelOutputs, buy_quantity, decide, outputs_from
from kryptobot.trading.market import strategy_signals
from kryptobot.trading.metrics import TRADING_DAYS, mean_difference, performance
from kryptobot.trading.settings import StrategySettings, TraderConfig
from kryptobot.trading.walkforward import WalkForwardSpec

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
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"symbols": ["SPY", "QQQ"], "modes": ["technical", "all"]},
        {"symbols": ["SPY", "QQQ"], "modes": ["technical", "signal", "ensemble"],
         "walk_forward": {"train_bars": 756, "retrain_every": 126, "training": {"signal": {"model": {"n_estimators": 50}}}}},
    ]})

    symbols: UniqueSymbols | None = Field(None, min_length=1, max_length=100, description="default: the watchlist")
    start: date | None = Field(None, description="first day (default, and at the earliest: the day after the models' "
                                                  "training data ends; walk-forward: after the first training window)")
    end: date | None = Field(None, description="last day (default: the last bar)")
    modes: list[str] = Field(default_factory=lambda: list(MODES), description=f"any of {list(MODES)}")
    initial_cash: float | None = Field(None, ge=1, le=1e12, description="default: the trader's initial_cash")  # beyond: NaN equity curves
    walk_forward: WalkForwardSpec | None = Field(
        None, description="retrain every layer the modes use before each fold, on the bars before it only (default: "
                          "replay the active models of the services)")

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

    def layers(self) -> list[str]:
        """The ML layers the requested modes use."""
        return [n for n in LAYERS if any(getattr(MODES[m], n) for m in self.modes)]



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

    def between(self, first, last) -> "SymbolHistory | None":
        """The traded days from ``first`` to ``last`` with their warm-up bars, the features and
        signals as computed on the whole window (None: no traded day in the range)."""
        days = self.window["timestamp"].to_numpy()[WARMUP_BARS:]
        lo, hi = np.searchsorted(days, np.datetime64(first)), np.searchsorted(days, np.datetime64(last), side="right")
        if lo >= hi:
            return None
        rows = slice(lo, hi + WARMUP_BARS)
        return SymbolHistory(self.window.iloc[rows].reset_index(drop=True), self.features.iloc[rows].reset_index(drop=True),
                             self.signals.iloc[lo:hi].reset_index(drop=True))



def symbol_history(provider, symbol: str, start, end, feature_params: FeatureParams, strategy: StrategySettings,
                   timeframe: str = "1d") -> SymbolHistory | None:
    """The bars from ``start`` to ``end`` with ``WARMUP_BARS`` before them, their features
    and technical signals (None: no bar in the range)."""
    bars = provider.get_bars(symbol, end=end, timeframe=timeframe)
    first = int(np.searchsorted(bars["timestamp"].to_numpy(), np.datetime64(start))) if start is not None else WARMUP_BARS
    first = max(first, WARMUP_BARS)
    if first >= len(bars):
        return None
    window = bars.iloc[first - WARMUP_BARS :].reset_index(drop=True)
    features = build_features(window, feature_params)  # the classifiers' inputs, with their own pipeline
    signals = strategy_signals(window, strategy).iloc[WARMUP_BARS:].reset_index(drop=True)
    return SymbolHistory(window, features, signals)



# ---- the replay ----------------------------------------------------------------------

@dataclass(frozen=True)
class Trade:
    """A closed trade, net of slippage and both commissions."""

    symbol: str
    decided: pd.Timestamp  # the close that decided the entry (the labels' t0)
    entry: pd.Timestamp  # the open it filled at
    exit: pd.Timestamp
    entry_price: float  # fills, slippage included
    exit_price: float
    quantity: float
    pnl: float
    ret: float  # pnl over the entry's cost
    rule: str  # the exit rule

    def to_json(self) -> dict:
        body = asdict(self)
        for key in ("decided", "entry", "exit"):
            body[key] = body[key].isoformat()
        return body


@dataclass
class Run:
    equity: pd.Series
    trades: list[Trade]
    exposure: float  # mean fraction of equity invested
    degraded: int  # decisions taken without a service that should have answered
    rules: dict[str, int]  # how often each rule fired on an entry candidate or a held position

    @property
    def returns(self) -> list[float]:
        return [t.ret for t in self.trades]


@dataclass
class Replay:
    """Every mode's run over the same days, and equal-weight buy-and-hold."""

    runs: dict[str, Run]
    buy_and_hold: pd.Series
    periods_per_year: float = TRADING_DAYS

    def curves(self) -> dict[str, pd.Series]:
        return {**{mode: run.equity for mode, run in self.runs.items()}, "buy_and_hold": self.buy_and_hold}

    def results(self) -> dict:
        """Per mode: its performance, how it compares with buy-and-hold and, for an ML mode,
        whether it picked better trades than the technical strategy alone."""
        held = performance(self.buy_and_hold, [], 1.0, self.periods_per_year)
        technical = self.runs.get("technical")
        out = {}
        for mode, run in self.runs.items():
            stats = performance(run.equity, run.returns, run.exposure, self.periods_per_year, [t.pnl for t in run.trades])
            stats["excess_return_vs_buy_and_hold"] = stats["total_return"] - held["total_return"]
            if technical is not None and mode != "technical":
                # mean trade return, not total return: a filter that trades less is not better for it
                stats["vs_technical"] = mean_difference(run.returns, technical.returns)
            out[mode] = {**stats, "degraded_decisions": run.degraded, "rules": run.rules}
        out["buy_and_hold"] = held
        return out


def replay(histories: dict[str, SymbolHistory], traded: dict[str, pd.DataFrame], config: TraderConfig, modes: list[str],
           cash: float, periods_per_year: float = TRADING_DAYS, switches: dict[pd.Timestamp, TraderConfig] | None = None) -> Replay:
    """Every mode over the same days. ``switches``: the settings in force from a day on
    (a walk-forward's thresholds resolved from each fold's own versions)."""
    tape = Tape.of(histories, traded)
    runs = {mode: _simulate(histories, traded, config, MODES[mode], cash, tape, switches) for mode in modes}
    return Replay(runs, _buy_and_hold(traded, cash, config), periods_per_year)


def _outputs(day_outputs: dict, layers: Layers, technical: str, holding: bool) -> ModelOutputs:
    """What the live engine would have had: the services it asks for this decision."""
    wanted = {n: v for n, v in day_outputs.items() if getattr(layers, n)}
    needed = [n for n in layers.enabled() if n == "forecast" or (technical == "buy" and not holding)]
    return outputs_from(wanted, tuple(n for n in needed if n not in wanted))


@dataclass
class Tape:
    """The replay's inputs as plain lists, built once for every mode (pandas indexing per
    bar would cost more than the rules themselves)."""

    days: list[pd.Timestamp]  # every bar time of any symbol, in order
    rows: dict[str, list[int]]  # per symbol and day: its row in ``traded`` (-1: no bar that day)
    stamps: dict[str, list[pd.Timestamp]]
    prices: dict[str, tuple[list[float], list[float], list[float], list[float]]]  # open, high, low, close
    sides: dict[str, list[str]]
    atrs: dict[str, list[float]]
    outputs: dict[str, list[dict]]  # per symbol and row: each layer's reading
    no_forecast: dict[str, list[bool]]  # per symbol and row: the forecast did not answer

    @classmethod
    def of(cls, histories: dict[str, SymbolHistory], traded: dict[str, pd.DataFrame]) -> "Tape":
        stamps = {s: list(pd.DatetimeIndex(b["timestamp"])) for s, b in traded.items()}
        days = sorted(set().union(*stamps.values()))
        position = {day: k for k, day in enumerate(days)}
        rows = {}
        for s, ts in stamps.items():
            rows[s] = [-1] * len(days)
            for i, day in enumerate(ts):
                rows[s][position[day]] = i
        outputs = {s: [histories[s].outputs.get(day, {}) for day in ts] for s, ts in stamps.items()}
        return cls(
            days, rows, stamps,
            {s: tuple(b[c].astype(float).tolist() for c in ("open", "high", "low", "close")) for s, b in traded.items()},
            {s: histories[s].signals["side"].tolist() for s in traded},
            {s: histories[s].signals["atr"].tolist() for s in traded},
            outputs,
            {s: ["forecast" not in o for o in out] for s, out in outputs.items()},
        )


@dataclass
class _Position:
    quantity: float
    cost: float  # per share: the fill plus its commission
    decided: int  # row of the entry's decision bar
    entered: pd.Timestamp
    holding: Holding


@dataclass
class _Order:
    """An order decided at a close, for the symbol's next open."""

    action: str  # buy / sell
    row: int  # the decision bar
    fraction: float = 0.0
    equity: float = 0.0  # at the decision
    stop: float | None = None
    target: float | None = None
    rule: str = ""


def _simulate(histories: dict[str, SymbolHistory], traded: dict[str, pd.DataFrame], config: TraderConfig, layers: Layers,
              cash: float, tape: Tape | None = None, switches: dict[pd.Timestamp, TraderConfig] | None = None) -> Run:
    """The replay of one mode: each day, the open fills the orders of the previous closes,
    then each symbol is decided at its close (with ``switches[day]`` from that day on)."""
    tape = tape or Tape.of(histories, traded)
    switches = switches or {}
    t = config.trader
    slip, comm = t.slippage, t.commission
    symbols = list(traded)
    positions: dict[str, _Position] = {}
    orders: dict[str, _Order] = {}
    last_close: dict[str, float] = {}
    trades: list[Trade] = []
    equity_curve, exposure, degraded, fired = [], [], 0, Counter()

    def close(symbol: str, i: int, price: float, rule: str) -> float:
        p = positions.pop(symbol)
        fill = price * (1 - slip)
        proceeds = p.quantity * fill * (1 - comm)
        paid = p.quantity * p.cost
        trades.append(Trade(symbol, tape.stamps[symbol][p.decided], p.entered, tape.stamps[symbol][i], p.holding.entry_price,
                            fill, p.quantity, proceeds - paid, proceeds / paid - 1, rule))
        return proceeds

    for k, day in enumerate(tape.days):
        config = switches.get(day, config)
        # the open: sells first, so their cash pays for the buys
        for symbol in sorted(orders, key=lambda s: orders[s].action != "sell"):
            i = tape.rows[symbol][k]
            if i < 0:
                continue  # no bar today: the order waits for the symbol's next one
            order = orders.pop(symbol)
            opening = tape.prices[symbol][0][i]
            if order.action == "sell":
                cash += close(symbol, i, opening, order.rule)
                continue
            quantity = buy_quantity(order.equity, cash, order.fraction, opening, slip, comm)
            if quantity > 0:
                fill = opening * (1 + slip)
                cash -= quantity * fill * (1 + comm)
                positions[symbol] = _Position(quantity, fill * (1 + comm), order.row, day, Holding(fill, order.stop, order.target))
        # the close: every symbol with a bar today is decided once
        entries = []
        for symbol in symbols:
            i = tape.rows[symbol][k]
            if i < 0:
                continue
            prices = tape.prices[symbol]
            c = last_close[symbol] = prices[3][i]
            technical = tape.sides[symbol][i]
            position = positions.get(symbol)
            if position is None and technical != "buy":
                # decide() holds a flat symbol without a technical buy whatever the models say:
                # the one shortcut of the replay (a test checks it against decide() on every bar)
                degraded += layers.forecast and tape.no_forecast[symbol][i]
                continue
            holding = None if position is None else Holding(
                position.holding.entry_price, position.holding.stop, position.holding.target, i - position.decided)
            outputs = _outputs(tape.outputs[symbol][i], layers, technical, holding is not None)
            d = decide(symbol, technical, holding, c, tape.atrs[symbol][i], outputs, config, layers,
                       Bar(prices[0][i], prices[1][i], prices[2][i], c))
            degraded += d.degraded
            fired.update(r.split(":")[0] for r in d.rules if r not in QUIET_RULES)
            if d.action == "sell" and position is not None:
                if d.fill_price is not None:  # a barrier inside this bar, or the time limit at its close
                    cash += close(symbol, i, d.fill_price, d.rules[0])
                else:
                    orders[symbol] = _Order("sell", i, rule=d.rules[0])
            elif d.action == "buy" and position is None:
                orders[symbol] = _Order("buy", i, d.size_fraction, 0.0, d.stop, d.target)
                entries.append(orders[symbol])
        market = sum(p.quantity * last_close[s] for s, p in positions.items()) if positions else 0.0
        for order in entries:  # sized on the equity at this close, every position marked at it
            order.equity = cash + market
        equity_curve.append(cash + market)
        exposure.append(market / (cash + market))
    mean_exposure = float(np.mean(exposure)) if exposure else 0.0
    return Run(pd.Series(equity_curve, index=pd.DatetimeIndex(tape.days)), trades, mean_exposure, degraded, dict(sorted(fired.items())))



def _buy_and_hold(traded: dict[str, pd.DataFrame], cash: float, config: TraderConfig) -> pd.Series:
    """Equal weight in every symbol, bought as the modes buy (decided at its first close,
    filled at the next open with the same costs), held to the end."""
    t = config.trader
    days = pd.DatetimeIndex(sorted(set().union(*(set(b["timestamp"]) for b in traded.values()))))
    share = cash / len(traded)
    total = pd.Series(0.0, index=days)
    for bars in traded.values():
        closes = bars.set_index("timestamp")["close"].astype(float).reindex(days).ffill()
        value = pd.Series(share, index=days)
        if len(bars) > 1:
            shares = share * (1 - t.commission) / (float(bars["open"].iat[1]) * (1 + t.slippage))
            held = days >= bars["timestamp"].iat[1]
            value[held] = shares * closes[held]
        total += value
    return total



# ---- reports -------------------------------------------------------------------------

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
    """backtest_report.json and equity_curve.png (latest run, and under the run's id).

    The report's ``curves`` (mode -> equity Series) become JSON in place: ``{"timestamp":
    [...], mode: [equity at each close], ...}``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    curves = report.pop("curves")
    index = next(iter(curves.values())).index
    report["curves"] = {"timestamp": [ts.isoformat() for ts in index],
                        **{mode: [round(float(v), 2) for v in curve.to_numpy()] for mode, curve in curves.items()}}
    body = json.dumps(report, indent=2, default=str)
    names = []
    for name in ("backtest_report.json", f"backtest_{report['id']}.json"):
        atomic_write_text(directory / name, body)  # a reader of /reports/<name> never sees half a report
        names.append(name)
    folds = [pd.Timestamp(f["test"]["start"]) for f in report.get("folds") or []]
    title = "Walk-forward (out of sample)" if folds else "Backtest"
    notes = {mode: _note(stats) for mode, stats in report["results"].items()}
    for name in ("equity_curve.png", f"equity_curve_{report['id']}.png"):
        plots.equity_curves(directory / name, curves, f"{title}: each mode vs buy-and-hold", markers=folds[1:],
                            marker_label="retrained", notes=notes)
        names.append(name)
    return names


def _note(stats: dict) -> str:
    sharpe = "-" if stats.get("sharpe") is None else f"{stats['sharpe']:.2f}"
    trades = f", {stats['trades']} trades" if "rules" in stats else ""
    return f"return {stats['total_return']:+.1%}, Sharpe {sharpe}, max drawdown {stats['max_drawdown']:.1%}{trades}"
