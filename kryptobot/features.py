"""The feature pipeline: one function for training and serving, built on TA-Lib.

Every feature is scale-free, so one model can serve many symbols whatever their price
or volume level:

=================  ==============================================================
``rsi``            RSI(rsi_period), 0..100
``macd``           MACD line (EMA fast - EMA slow) / close
``macd_signal``    MACD signal line (EMA of the MACD line) / close
``bb_upper``       upper Bollinger band / close - 1 (negative: close above the band)
``bb_lower``       lower Bollinger band / close - 1 (positive: close below the band)
``volume_ratio``   volume / SMA(volume, volume_window); 1.0 where that SMA is 0
``price_change``   close / close ``price_change_period`` bars earlier - 1
``atr``            ATR(atr_period) / close
``trend_strength`` ADX(trend_period), 0..100
=================  ==============================================================

Row ``t`` of :func:`build_features` uses ``bars[: t + 1]`` only (no look-ahead).

Warm-up: RSI, MACD, ATR and ADX are recursive (Wilder / exponential smoothing), so a
value depends on where the series *started* until the seed has decayed. Computed from
only TA-Lib's minimum (34 bars for the defaults) the latest ADX differs from the
full-history value by up to ~1.6 standard deviations, which would make serving
(a short window of recent bars) disagree with training (the whole history). So a row
counts as defined only once every seed's remaining weight is below
``SEED_TOLERANCE``; earlier rows are NaN, and :func:`min_bars` (154 for the
defaults) is the number of bars a caller must supply to get one defined row. With
that many bars, served features match the training-time ones to ~1e-3 of a standard
deviation.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Mapping

import numpy as np
import pandas as pd
import talib
from talib import abstract as talib_abstract

from kryptobot.data.base import validate_bars
from kryptobot.errors import InvalidInput

FEATURE_NAMES = [
    "rsi",
    "macd",
    "macd_signal",
    "bb_upper",
    "bb_lower",
    "volume_ratio",
    "price_change",
    "atr",
    "trend_strength",
]
# Bump when the meaning of any feature changes: stored models record the version they
# were trained with, and must not be fed features computed differently.
PIPELINE_VERSION = "ta-1"
# Largest weight the arbitrary start of a recursive indicator may still carry in a
# defined row (see the module docstring).
SEED_TOLERANCE = 1e-3


@dataclass(frozen=True)
class FeatureParams:
    """Indicator periods (in bars). Stored with each model; serving must use the same."""

    rsi_period: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bb_period: int = 20
    bb_std: float = 2.0
    volume_window: int = 20
    atr_period: int = 14
    trend_period: int = 14
    price_change_period: int = 1

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "bb_std":
                if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                    raise InvalidInput(f"bb_std must be a positive number, got {value!r}", field="bb_std")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{f.name} must be a positive integer, got {value!r}", field=f.name)
        # TA-Lib's smallest allowed periods; below them it returns all-NaN silently.
        for name in ("rsi_period", "macd_fast", "macd_slow", "macd_signal", "bb_period", "volume_window", "trend_period"):
            if getattr(self, name) < 2:
                raise InvalidInput(f"{name} must be at least 2", field=name)
        if self.macd_fast >= self.macd_slow:
            raise InvalidInput("macd_fast must be shorter than macd_slow", field="macd_fast")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "FeatureParams":
        """Inverse of ``to_dict``; unknown keys are an error (a newer pipeline's params)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(f"unknown feature parameter(s) {unknown}", field="feature_params")
        return cls(**dict(data))


def _settle_bars(alpha: float, stages: int) -> int:
    """Bars after the first output until a seed's weight drops below SEED_TOLERANCE.

    One exponential smoothing with factor ``alpha`` leaves ``(1-alpha)^m`` of its seed
    after ``m`` bars; a smoothing of an already smoothed series (ADX, MACD signal)
    leaves about ``(1 + m*alpha) (1-alpha)^m``.
    """
    m = 0
    while True:
        decay = (1.0 - alpha) ** m
        weight = decay * (1.0 + m * alpha) if stages == 2 else decay
        if weight < SEED_TOLERANCE:
            return m
        m += 1


@lru_cache(maxsize=64)  # called on every serving request; params are frozen, hence hashable
def min_bars(params: FeatureParams = FeatureParams()) -> int:
    """Bars needed for the last row of :func:`build_features` to be defined (154 by default).

    TA-Lib's own lookback (how many bars an indicator needs before its first value,
    asked from TA-Lib itself so it follows the installed version) plus the settling
    time of each recursive indicator (module docstring).
    """
    p = params
    needs = [
        talib_abstract.Function("RSI", timeperiod=p.rsi_period).lookback + _settle_bars(1.0 / p.rsi_period, 1),
        talib_abstract.Function(
            "MACD", fastperiod=p.macd_fast, slowperiod=p.macd_slow, signalperiod=p.macd_signal
        ).lookback
        + _settle_bars(2.0 / (p.macd_slow + 1), 2),
        talib_abstract.Function("BBANDS", timeperiod=p.bb_period).lookback,
        talib_abstract.Function("SMA", timeperiod=p.volume_window).lookback,
        talib_abstract.Function("ROCP", timeperiod=p.price_change_period).lookback,
        talib_abstract.Function("ATR", timeperiod=p.atr_period).lookback + _settle_bars(1.0 / p.atr_period, 1),
        talib_abstract.Function("ADX", timeperiod=p.trend_period).lookback + _settle_bars(1.0 / p.trend_period, 2),
    ]
    return max(needs) + 1


def build_features(bars: pd.DataFrame, params: FeatureParams = FeatureParams(), field: str = "bars") -> pd.DataFrame:
    """Features for every bar: columns ``FEATURE_NAMES``, index = ``bars.index``.

    Rows before ``min_bars(params) - 1`` are NaN (warm-up), whole rows at a time.
    Raises DataError naming ``field`` for malformed bars (see ``validate_bars``).
    """
    out = _compute(validate_bars(bars, field=field), params)
    out.index = bars.index
    return out


def _compute(clean: pd.DataFrame, p: FeatureParams) -> pd.DataFrame:
    """build_features on bars that already passed validate_bars (RangeIndex result)."""
    if len(clean) == 0:
        return pd.DataFrame({name: pd.Series(dtype="float64") for name in FEATURE_NAMES})
    out = pd.DataFrame(_feature_arrays(clean, p), columns=FEATURE_NAMES)
    out = out.replace([np.inf, -np.inf], np.nan)
    out.iloc[: max(min_bars(p) - 1, 0)] = np.nan
    return out


def _feature_arrays(clean: pd.DataFrame | Mapping[str, np.ndarray], p: FeatureParams) -> dict[str, np.ndarray]:
    """Every feature as an array over the bars (the one computation of them, for training
    and serving alike); warm-up rows and infinities are left to the caller. ``clean``: a
    validated frame, or its ``high``, ``low``, ``close``, ``volume`` columns as arrays."""
    # Prices are divided by the first close before TA-Lib sees them: every feature is
    # invariant to that, and it keeps sub-cent assets away from the fixed "is this
    # zero" thresholds of older TA-Lib C builds (1e-8), which are not scale-free.
    close = np.asarray(clean["close"], dtype=np.float64)
    scale = close[0]
    high = np.asarray(clean["high"], dtype=np.float64) / scale
    low = np.asarray(clean["low"], dtype=np.float64) / scale
    close = close / scale
    volume = np.asarray(clean["volume"], dtype=np.float64)

    macd, macd_signal, _ = talib.MACD(close, fastperiod=p.macd_fast, slowperiod=p.macd_slow, signalperiod=p.macd_signal)
    upper, _, lower = talib.BBANDS(close, timeperiod=p.bb_period, nbdevup=p.bb_std, nbdevdn=p.bb_std, matype=0)
    volume_sma = talib.SMA(volume, timeperiod=p.volume_window)
    with np.errstate(divide="ignore", invalid="ignore"):
        # A window with no volume at all (an index, a halted market) carries no volume
        # information: call it "normal" (1.0) rather than NaN, which would drop the row.
        volume_ratio = np.where(volume_sma > 0, volume / np.where(volume_sma > 0, volume_sma, 1.0), 1.0)
        volume_ratio[np.isnan(volume_sma)] = np.nan
        values = {
            "rsi": talib.RSI(close, timeperiod=p.rsi_period),
            "macd": macd / close,
            "macd_signal": macd_signal / close,
            "bb_upper": upper / close - 1.0,
            "bb_lower": lower / close - 1.0,
            "volume_ratio": volume_ratio,
            "price_change": talib.ROCP(close, timeperiod=p.price_change_period),
            "atr": talib.ATR(high, low, close, timeperiod=p.atr_period) / close,
            "trend_strength": talib.ADX(high, low, close, timeperiod=p.trend_period),
        }
    return values


def latest_features(bars: pd.DataFrame, params: FeatureParams = FeatureParams(), field: str = "bars") -> dict[str, float]:
    """The features of the last bar, for serving: ``{name: value}`` in FEATURE_NAMES order.

    Needs at least ``min_bars(params)`` bars (more only costs time). Raises
    InvalidInput naming ``field`` when there are too few bars or a feature is not
    finite, DataError (also 422) when the bars are malformed.
    """
    clean = validate_bars(bars, field=field)  # all of it, first: a bad bar is the more useful error
    return latest_features_of(clean, params, field)


def latest_features_of(clean: pd.DataFrame | Mapping[str, np.ndarray], params: FeatureParams = FeatureParams(),
                       field: str = "bars") -> dict[str, float]:
    """:func:`latest_features` of bars that already passed the checks: a frame from
    ``validate_bars``, or the float64 arrays of :meth:`kryptobot.schemas.Bars.arrays` (the
    serving path: no frame is built). Raises InvalidInput as ``latest_features`` does."""
    needed = min_bars(params)
    if len(clean["close"]) < needed:
        raise InvalidInput(f"need at least {needed} bars to compute features, got {len(clean['close'])}", field=field)
    # Only the tail matters once the seeds have settled; computing on it keeps serving
    # cost flat however much history a caller sends.
    # the arrays, not a frame: a frame of every row would cost more than TA-Lib on the tail
    arrays = _feature_arrays({name: np.asarray(clean[name])[-needed:] for name in ("high", "low", "close", "volume")}, params)
    row = {name: float(arrays[name][-1]) for name in FEATURE_NAMES}
    bad = [name for name, value in row.items() if not np.isfinite(value)]
    if bad:
        raise InvalidInput(f"feature(s) {bad} are not finite for these bars (constant prices?)", field=field)
    return row


def validate_feature_dict(d: Mapping, names: list[str], field: str = "features") -> np.ndarray:
    """Caller-supplied feature values as a float64 array in ``names`` order.

    Raises InvalidInput naming ``field`` for unknown or missing names, and
    ``field.<name>`` for a value that is not a finite number.
    """
    if not isinstance(d, Mapping):
        raise InvalidInput(f"expected an object of feature values, got {type(d).__name__}", field=field)
    unknown = sorted(k for k in d if k not in names)
    if unknown:
        raise InvalidInput(f"unknown feature(s) {unknown}; expected {list(names)}", field=field)
    missing = [name for name in names if name not in d]
    if missing:
        raise InvalidInput(f"missing feature(s) {missing}", field=field)
    out = np.empty(len(names), dtype=np.float64)
    for i, name in enumerate(names):
        value = d[name]
        # bool is an int subclass; True as "rsi" is a caller bug, not 1.0.
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InvalidInput(f"feature {name!r} must be a number, got {value!r}", field=f"{field}.{name}")
        if not math.isfinite(float(value)):
            raise InvalidInput(f"feature {name!r} must be finite, got {value!r}", field=f"{field}.{name}")
        out[i] = float(value)
    return out
