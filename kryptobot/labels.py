"""Meta-labelling: did a technical signal succeed?

A primary technical strategy (:func:`primary_signals`) proposes trades; each is
labelled by the triple-barrier method (:func:`triple_barrier`): enter at the close of
the signal bar ``t0``, take profit ``tp_mult`` ATRs away in the signal's direction,
stop ``sl_mult`` ATRs against it, and give up after ``max_holding`` bars. The meta
model learns P(label = 1 | features at t0, side), i.e. whether to act on a signal.

Label = 1 when the take-profit barrier is touched first; 0 when the stop is touched
first (or both in the same bar: from daily bars the order inside a bar is unknown, so
the conservative answer is the stop); at the time limit, 1 iff the trade is in profit.
Barriers scale with ATR, so on a martingale the base rate is ~50% and no volatility
feature can predict the label: anything a model finds beyond that is real signal.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Mapping

import numpy as np
import pandas as pd
import talib

from kryptobot.data.base import validate_bars
from kryptobot.errors import InvalidInput, TrainingError
from kryptobot.features import FEATURE_NAMES, FeatureParams, build_features, min_bars

PRIMARY_RULES = ("macd_cross", "rsi_exit", "bb_reentry")
SIDE_COLUMN = "side"
MIN_EVENTS = 50


@dataclass(frozen=True)
class LabelParams:
    """Triple-barrier distances (in ATRs at t0), time limit (bars), and the primary strategy.

    Primary rules (each votes +1 buy / -1 sell on a bar; the sign of the sum is the
    signal, a tie is no signal):

    * ``macd_cross``: the MACD line crosses above (buy) / below (sell) its signal line;
    * ``rsi_exit``: RSI rises back above ``rsi_oversold`` (buy) / falls back below
      ``rsi_overbought`` (sell);
    * ``bb_reentry``: the close comes back inside the Bollinger bands from below (buy) /
      above (sell).
    """

    tp_mult: float = 2.0
    sl_mult: float = 2.0
    max_holding: int = 10
    rsi_oversold: float = 30.0
    rsi_overbought: float = 70.0
    rules: tuple[str, ...] = PRIMARY_RULES

    def __post_init__(self):
        for name in ("tp_mult", "sl_mult"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise InvalidInput(f"{name} must be a positive number, got {value!r}", field=name)
        if isinstance(self.max_holding, bool) or not isinstance(self.max_holding, int) or self.max_holding < 1:
            raise InvalidInput(f"max_holding must be a positive integer, got {self.max_holding!r}", field="max_holding")
        if not 0 < self.rsi_oversold < self.rsi_overbought < 100:
            raise InvalidInput("need 0 < rsi_oversold < rsi_overbought < 100", field="rsi_oversold")
        object.__setattr__(self, "rules", tuple(self.rules))  # lists from JSON -> hashable
        unknown = [r for r in self.rules if r not in PRIMARY_RULES]
        if unknown or not self.rules:
            raise InvalidInput(f"rules must be a non-empty subset of {list(PRIMARY_RULES)}, got {list(self.rules)}", field="rules")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rules"] = list(self.rules)
        return d

    @classmethod
    def from_dict(cls, data: Mapping) -> "LabelParams":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(f"unknown label parameter(s) {unknown}", field="label_params")
        return cls(**dict(data))


def _crossed_up(prev: np.ndarray, cur: np.ndarray, level) -> np.ndarray:
    # NaN compares False, so warm-up rows never fire.
    return (prev < level) & (cur >= level)


def _crossed_down(prev: np.ndarray, cur: np.ndarray, level) -> np.ndarray:
    return (prev > level) & (cur <= level)


def primary_signals(bars: pd.DataFrame, features: pd.DataFrame, params: LabelParams = LabelParams()) -> pd.DataFrame:
    """Bars where the primary strategy fires: columns ``index`` (row position), ``timestamp``, ``side``.

    ``features`` is ``build_features(bars)`` (row-aligned with ``bars``). A signal on bar
    t uses bars up to t only. On a daily random walk the default rules fire on roughly
    one bar in six.
    """
    if len(features) != len(bars):
        raise ValueError(f"features ({len(features)} rows) must be row-aligned with bars ({len(bars)} rows)")
    f = {name: features[name].to_numpy(dtype=np.float64) for name in ("rsi", "macd", "macd_signal", "bb_upper", "bb_lower")}

    def prev(a: np.ndarray) -> np.ndarray:
        out = np.full_like(a, np.nan)
        out[1:] = a[:-1]
        return out

    votes = np.zeros(len(bars), dtype=np.int64)
    if "macd_cross" in params.rules:
        spread = f["macd"] - f["macd_signal"]  # same sign as the unscaled spread: close > 0
        votes += _crossed_up(prev(spread), spread, 0.0).astype(np.int64)
        votes -= _crossed_down(prev(spread), spread, 0.0).astype(np.int64)
    if "rsi_exit" in params.rules:
        rsi = f["rsi"]
        votes += _crossed_up(prev(rsi), rsi, params.rsi_oversold).astype(np.int64)
        votes -= _crossed_down(prev(rsi), rsi, params.rsi_overbought).astype(np.int64)
    if "bb_reentry" in params.rules:
        # bb_lower > 0 <=> close below the lower band; bb_upper < 0 <=> above the upper.
        votes += _crossed_down(prev(f["bb_lower"]), f["bb_lower"], 0.0).astype(np.int64)
        votes -= _crossed_up(prev(f["bb_upper"]), f["bb_upper"], 0.0).astype(np.int64)
    rows = np.flatnonzero(votes != 0)
    return pd.DataFrame(
        {
            "index": rows,
            "timestamp": pd.to_datetime(bars["timestamp"]).to_numpy()[rows],
            SIDE_COLUMN: np.sign(votes[rows]).astype(np.int64),
        }
    )


def atr_abs(bars: pd.DataFrame, period: int) -> np.ndarray:
    """TA-Lib ATR in price units, row-aligned with ``bars`` (NaN during its lookback)."""
    return talib.ATR(
        bars["high"].to_numpy(dtype=np.float64),
        bars["low"].to_numpy(dtype=np.float64),
        bars["close"].to_numpy(dtype=np.float64),
        timeperiod=period,
    )


def triple_barrier(bars: pd.DataFrame, events: pd.DataFrame, atr_abs: np.ndarray, params: LabelParams = LabelParams()) -> pd.DataFrame:
    """Label each event; returns one row per labelled event, in ``events`` order.

    ``bars``: validated bars (``validate_bars``), row positions as in ``events["index"]``.
    ``atr_abs``: ATR in price units, row-aligned with ``bars``.

    Columns: ``index`` (t0 row), ``t0``, ``t1`` (timestamp when the label became known:
    the bar of the first barrier touch, else the time limit ``t0 + max_holding`` bars),
    ``side``, ``ret`` (side-adjusted return from the t0 close to the exit: the barrier
    price, or the bar's open if it gapped through; the close at the time limit),
    ``label`` (0/1) and ``barrier`` ("tp", "sl" or "time").

    Dropped: events whose time limit lies past the last bar (dropping only the
    unresolved ones would keep a biased sample of early barrier touches), and events
    with no finite ATR at t0.
    """
    n = len(bars)
    h = params.max_holding
    idx = events["index"].to_numpy(dtype=np.int64)
    side = events[SIDE_COLUMN].to_numpy(dtype=np.int64)
    atr = np.asarray(atr_abs, dtype=np.float64)
    if len(atr) != n:
        raise ValueError(f"atr_abs ({len(atr)}) must be row-aligned with bars ({n})")
    keep = (idx + h <= n - 1) & (idx >= 0)
    keep[keep] &= np.isfinite(atr[idx[keep]]) & (atr[idx[keep]] > 0)
    idx, side = idx[keep], side[keep]

    open_ = bars["open"].to_numpy(dtype=np.float64)
    high = bars["high"].to_numpy(dtype=np.float64)
    low = bars["low"].to_numpy(dtype=np.float64)
    close = bars["close"].to_numpy(dtype=np.float64)
    ts = pd.to_datetime(bars["timestamp"]).to_numpy()

    entry = close[idx]
    tp_price = entry + side * params.tp_mult * atr[idx]
    sl_price = entry - side * params.sl_mult * atr[idx]
    path = idx[:, None] + np.arange(1, h + 1)[None, :]  # bars t0+1 .. t0+h, one row per event
    is_long = (side == 1)[:, None]
    tp_hit = np.where(is_long, high[path] >= tp_price[:, None], low[path] <= tp_price[:, None])
    sl_hit = np.where(is_long, low[path] <= sl_price[:, None], high[path] >= sl_price[:, None])
    any_hit = tp_hit | sl_hit
    touched = any_hit.any(axis=1)
    first = np.where(touched, any_hit.argmax(axis=1), h - 1)  # column of the deciding bar
    rows = np.arange(len(idx))
    exit_row = path[rows, first]
    # Both barriers inside one bar: the order is unknown, count the stop (conservative).
    stopped = touched & sl_hit[rows, first]
    took_profit = touched & ~stopped

    # Fill at the barrier, or at the open when the bar gapped through it.
    gap_open = open_[exit_row]
    sl_fill = np.where(side == 1, np.minimum(gap_open, sl_price), np.maximum(gap_open, sl_price))
    tp_fill = np.where(side == 1, np.maximum(gap_open, tp_price), np.minimum(gap_open, tp_price))
    exit_price = np.where(stopped, sl_fill, np.where(took_profit, tp_fill, close[exit_row]))
    ret = side * (exit_price / entry - 1.0)
    label = np.where(touched, took_profit, ret > 0).astype(np.int64)
    return pd.DataFrame(
        {
            "index": idx,
            "t0": ts[idx],
            "t1": ts[exit_row],
            SIDE_COLUMN: side,
            "ret": ret,
            "label": label,
            "barrier": np.where(stopped, "sl", np.where(took_profit, "tp", "time")),
        }
    )


@dataclass
class MetaDataset:
    """Meta-labelled events of one or more symbols, sorted by ``t0`` (ties by symbol).

    ``X`` has columns ``FEATURE_NAMES + ["side"]`` (side as +1.0 / -1.0). ``t1`` is when
    each label became known: use it to purge training sets (``kryptobot.splits``).
    """

    X: pd.DataFrame
    y: np.ndarray
    t0: pd.DatetimeIndex
    t1: pd.DatetimeIndex
    symbol: np.ndarray
    ret: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, indices) -> "MetaDataset":
        indices = np.asarray(indices)
        return MetaDataset(
            X=self.X.iloc[indices].reset_index(drop=True),
            y=self.y[indices],
            t0=self.t0[indices],
            t1=self.t1[indices],
            symbol=self.symbol[indices],
            ret=self.ret[indices],
        )


def _symbol_events(symbol: str, bars: pd.DataFrame, fp: FeatureParams, lp: LabelParams) -> pd.DataFrame:
    clean = validate_bars(bars, field=f"bars[{symbol}]")
    features = build_features(clean, fp)
    events = primary_signals(clean, features, lp)
    labelled = triple_barrier(clean, events, atr_abs(clean, fp.atr_period), lp)
    at_t0 = features.iloc[labelled["index"].to_numpy()].reset_index(drop=True)
    out = pd.concat([at_t0, labelled.reset_index(drop=True)], axis=1)
    out["symbol"] = symbol
    return out.loc[at_t0.notna().all(axis=1).to_numpy()]


def build_meta_dataset(
    bars_by_symbol: Mapping[str, pd.DataFrame],
    feature_params: FeatureParams = FeatureParams(),
    label_params: LabelParams = LabelParams(),
) -> MetaDataset:
    """Features at t0 + side -> triple-barrier label, for every primary signal of every symbol.

    Events inside the feature warm-up or whose horizon runs past the data are dropped.
    Raises TrainingError (field "data") if fewer than ``MIN_EVENTS`` events remain,
    DataError naming ``bars[SYMBOL]`` for malformed bars.
    """
    if isinstance(bars_by_symbol, pd.DataFrame) or not isinstance(bars_by_symbol, Mapping):
        raise TypeError("bars_by_symbol must map symbol -> bars DataFrame")
    frames = [_symbol_events(sym, bars, feature_params, label_params) for sym, bars in bars_by_symbol.items()]
    events = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(events) < MIN_EVENTS:
        raise TrainingError(
            f"only {len(events)} labelled signal events in the data, need at least {MIN_EVENTS}: use more "
            f"bars or more symbols (a symbol's first {min_bars(feature_params)} bars are feature warm-up and "
            f"its last {label_params.max_holding} the label horizon)",
            field="data",
        )
    # Sort by time, ties by symbol, so the order does not depend on the mapping's order.
    events = events.sort_values(["t0", "symbol"], kind="mergesort").reset_index(drop=True)
    X = events[FEATURE_NAMES].astype("float64")
    X[SIDE_COLUMN] = events[SIDE_COLUMN].astype("float64")
    return MetaDataset(
        X=X,
        y=events["label"].to_numpy(dtype=np.int64),
        t0=pd.DatetimeIndex(events["t0"]),
        t1=pd.DatetimeIndex(events["t1"]),
        symbol=events["symbol"].to_numpy(dtype=object),
        ret=events["ret"].to_numpy(dtype=np.float64),
    )
