"""The forecaster's inputs and targets, built by the same code at train and serve time.

* **Inputs**: scale-free per-bar features (log ratios, shared with the anomaly model's
  :func:`~kryptobot.models.common.sequences.log_ratio_features`), so one model serves symbols at
  any price level, even ones it never saw. ``univariate`` reads the close-to-close log
  return only, ``multivariate`` every OHLCV-derived feature. A standard scaler fitted on
  the training block only (no look-ahead) is saved with the version.
* **Targets**: the cumulative log returns ``log(close[b + k] / close[b])``, ``k = 1..H``,
  of the bar ``b`` that ends the input window: one direct output per horizon step. The
  naive last-value forecast is 0 for every step.
* **Window volatility** ``sigma``: the standard deviation of the window's close-to-close
  log returns. It normalises the conformal residuals (intervals widen in volatile
  regimes and on volatile symbols) and the confidence's predicted-move z-score.

Sample ``s`` of a symbol reads feature rows ``s .. s + L - 1`` (bars ``s + 1 .. s + L``;
bar ``s`` is the reference of the first return) and ends on bar ``b = s + L``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from kryptobot.errors import TrainingError
from kryptobot.models.common.sequences import LOG_RATIO_FEATURES, FeatureScaler, log_ratio_features, windows

INPUTS: dict[str, tuple[str, ...]] = {"univariate": ("log_return",), "multivariate": tuple(LOG_RATIO_FEATURES)}
RETURN_COLUMN = LOG_RATIO_FEATURES.index("log_return")
BLOCKS = ("train", "validation", "calibration", "test")


def min_bars(sequence_length: int) -> int:
    """Bars one forecast needs: a window of returns plus the first return's reference bar."""
    return sequence_length + 1


def feature_columns(features: Sequence[str]) -> list[int]:
    unknown = [f for f in features if f not in LOG_RATIO_FEATURES]
    if unknown:
        raise ValueError(f"unknown input feature(s) {unknown}; the bar features are {list(LOG_RATIO_FEATURES)}")
    return [LOG_RATIO_FEATURES.index(f) for f in features]


def window_sigma(returns: np.ndarray, sequence_length: int) -> np.ndarray:
    """Std of the log returns in every window of ``sequence_length`` (one value per window)."""
    return windows(returns[:, None], sequence_length)[:, :, 0].std(axis=1)


def consecutive_blocks(n: int, fractions: Sequence[float], gap: int) -> list[np.ndarray]:
    """Split ``0..n-1`` into consecutive index blocks of the given fractions, ``gap`` left out between blocks.

    The generalisation of :func:`kryptobot.splits.time_ordered_split` to any number of
    blocks (the forecaster needs four: train, validation, calibration, test). With
    ``gap >= horizon`` no two blocks share a target bar. The fractions are of the samples
    that remain after the gaps; the last block takes the rounding remainder.
    """
    usable = n - gap * (len(fractions) - 1)
    total = float(sum(fractions))
    sizes = [int(usable * f / total) for f in fractions[:-1]]
    sizes.append(usable - sum(sizes))
    if usable <= 0 or min(sizes) < 1:
        raise TrainingError(
            f"{n} samples are too few for {len(fractions)} blocks {tuple(fractions)} separated by gaps of {gap}",
            field="data",
        )
    out, start = [], 0
    for size in sizes:
        out.append(np.arange(start, start + size))
        start += size + gap
    return out


@dataclass
class SymbolSamples:
    """One symbol's samples: raw (unscaled) features, targets, window volatility, time blocks."""

    symbol: str
    timestamps: pd.Series  # every bar
    close: np.ndarray  # every bar
    X: np.ndarray  # feature rows (one per bar after the first), the model's input columns only
    y: np.ndarray  # (samples, horizon) cumulative log returns
    sigma: np.ndarray  # (samples,)
    blocks: dict[str, np.ndarray]  # sample indices per block
    sequence_length: int

    def end_bar(self, samples: np.ndarray) -> np.ndarray:
        """Index of the bar each sample's window ends on (the forecast origin)."""
        return np.asarray(samples) + self.sequence_length

    def train_rows(self) -> np.ndarray:
        """The feature rows the training windows read: all that the scaler may be fitted on."""
        return self.X[: self.blocks["train"][-1] + self.sequence_length]

    def block(self, name: str, scaler: FeatureScaler) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scaled input windows, targets and sigma of one block."""
        idx = self.blocks[name]
        batch = windows(scaler.transform(self.X), self.sequence_length)[idx]
        return batch, self.y[idx], self.sigma[idx]


def symbol_samples(
    symbol: str, bars: pd.DataFrame, features: Sequence[str], sequence_length: int, horizon: int,
    fractions: Sequence[float],
) -> SymbolSamples:
    """Cut validated ``bars`` into samples and time blocks (``gap = horizon`` between blocks).

    A gap of ``horizon`` samples is the least that keeps every target bar inside one
    block: the last training sample's targets end right before the first validation
    sample's targets begin. Later blocks' *inputs* may read bars that earlier blocks
    used as targets; that is the past, known at forecast time, not leakage.
    """
    all_features, _ = log_ratio_features(bars)
    log_close = np.log(bars["close"].to_numpy(dtype=np.float64))
    n_samples = len(bars) - sequence_length - horizon
    try:
        if n_samples < 1:
            raise TrainingError(f"{len(bars)} bars leave no sample", field="data")
        parts = consecutive_blocks(n_samples, fractions, gap=horizon)
    except TrainingError as exc:
        raise TrainingError(
            f"{symbol}: {len(bars)} bars are too few for windows of {sequence_length} bars, a horizon of {horizon} "
            f"and train/validation/calibration/test blocks ({exc.message}); give a longer date range or a shorter "
            "sequence_length",
            field="data",
        ) from exc
    ends = np.arange(n_samples) + sequence_length
    steps = np.arange(1, horizon + 1)
    y = log_close[ends[:, None] + steps] - log_close[ends][:, None]
    sigma = window_sigma(all_features[:, RETURN_COLUMN], sequence_length)[:n_samples]
    return SymbolSamples(
        symbol=symbol,
        timestamps=bars["timestamp"].reset_index(drop=True),
        close=bars["close"].to_numpy(dtype=np.float64),
        X=all_features[:, feature_columns(features)],
        y=y,
        sigma=sigma,
        blocks=dict(zip(BLOCKS, parts)),
        sequence_length=sequence_length,
    )


def recent_features(bars: pd.DataFrame, sequence_length: int) -> np.ndarray:
    """Every bar feature ``(L, len(LOG_RATIO_FEATURES))`` of the last ``L`` bars of validated ``bars`` (needs ``L + 1``).

    Computed once per request instance and shared by the active models (which read their
    own columns and window length from it).
    """
    X, _ = log_ratio_features(bars.iloc[-min_bars(sequence_length):])
    return X


def last_window(rows: np.ndarray, columns: Sequence[int], sequence_length: int) -> tuple[np.ndarray, float]:
    """The model's raw input window ``(L, F)`` from the end of ``recent_features`` rows, and its sigma."""
    window = rows[-sequence_length:]
    return window[:, columns], float(window[:, RETURN_COLUMN].std())
