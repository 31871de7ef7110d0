"""The embedded synthetic market: realistic bars that know their own ground truth.

Per symbol (deterministic in ``seed`` and the symbol name) it generates business-day
OHLCV bars (other timeframes and calendars: see below) whose
close-to-close log return is::

    r_t = mu_t + sigma_t * e_t

* ``e_t``: Student-t (4 degrees of freedom, unit variance): fat tails.
* ``sigma_t``: GARCH(1,1) volatility clustering around a per-symbol level.
* ``mu_t``: Markov regime drift (bull / bear / sideways) plus the *exploitable* part,
  ``predictability * K * sigma_t * f(state_t)``, where the state is built from past closes
  only (the 20-day trend and the 5-day move), so technical indicators can see it.

``predictability`` is the knob: at exactly 0 the series is a pure random walk in log
price (i.i.d. fat-tailed returns, constant volatility, no drift, no regimes, i.i.d.
volume): nothing is predictable, which the honesty tests rely on. Planted anomalies
(one-bar price jumps, volume spikes, volatility bursts) are returned by
:meth:`SyntheticMarket.anomalies` as ground truth.

Other timeframes and calendars: ``calendar="exchange"`` (the default) trades business days,
intraday bars in a 14:30-21:00 UTC session (09:30-16:00 New York, ignoring daylight saving);
``calendar="24/7"`` trades every day around the clock. Volatility, regime drift and volume
scale with the bar's share of a trading day, so a series' yearly statistics do not depend on
its timeframe; the 20- and 5-bar windows of the exploitable state stay windows in bars.
An intraday series keeps its last ``MAX_BARS`` bars up to ``end``. The daily exchange series
is the original one, bit for bit.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import pandas as pd

from kryptobot.data.base import check_symbol, slice_range
from kryptobot.data.timeframes import DAYS_PER_YEAR, SESSION_HOURS, check_calendar, check_timeframe, periods_per_year, timeframe_delta
from kryptobot.errors import InvalidInput

K_EDGE = 0.5  # scale of the exploitable drift, in units of a bar's volatility
T_DOF = 4
DEFAULT_UNIVERSE = ["SYNA", "SYNB", "SYNC", "SYND", "SPY", "QQQ", "AAPL", "MSFT", "AMZN", "GOOGL", "META", "TSLA"]
ANOMALY_KINDS = ("price_jump", "volume_spike", "volatility_burst")
MIN_GAP = 30  # bars between planted anomalies
WARMUP = 60  # no anomalies in the first bars (indicators are still warming up)
# Regimes: daily drift per regime and the transition matrix (rows sum to 1).
REGIME_DRIFT = np.array([0.0006, -0.0008, 0.0])
REGIME_P = np.array([[0.985, 0.005, 0.010], [0.010, 0.980, 0.010], [0.010, 0.010, 0.980]])
MAX_BARS = 50_000  # an intraday series' length: the generator is a per-bar loop
SESSION_OPEN = pd.Timedelta(hours=14, minutes=30)  # 09:30 New York in UTC (standard time)


class SyntheticMarket:
    """Offline market-data provider with a predictability knob and planted anomalies."""

    name = "synthetic"

    def __init__(
        self,
        seed: int = 42,
        predictability: float = 0.5,
        anomaly_rate: float = 0.004,
        start: str = "2012-01-02",
        end: str = "2024-12-31",
        calendar: str = "exchange",
    ):
        if not 0.0 <= predictability <= 1.0:
            raise InvalidInput("predictability must be within [0, 1]", field="predictability")
        if not 0.0 <= anomaly_rate <= 0.05:
            raise InvalidInput("anomaly_rate must be within [0, 0.05]", field="anomaly_rate")
        self.seed = seed
        self.predictability = predictability
        self.anomaly_rate = anomaly_rate
        self.calendar = check_calendar(calendar)
        self.dates = pd.bdate_range(start, end)  # the business days (the daily exchange series' bars)
        self._start, self._end = pd.Timestamp(start), pd.Timestamp(end)
        self._full = lru_cache(maxsize=64)(self._generate)

    def symbols(self) -> list[str]:
        return list(DEFAULT_UNIVERSE)

    def get_bars(self, symbol: str, start=None, end=None, timeframe: str = "1d") -> pd.DataFrame:
        bars, _ = self._full(check_symbol(symbol), check_timeframe(timeframe))
        return slice_range(bars, start, end)

    def anomalies(self, symbol: str, start=None, end=None, timeframe: str = "1d") -> pd.DataFrame:
        """Ground truth: DataFrame[timestamp, kind, magnitude, end] of the planted events."""
        _, events = self._full(check_symbol(symbol), check_timeframe(timeframe))
        return slice_range(events, start, end)

    def bar_times(self, timeframe: str) -> pd.DatetimeIndex:
        """The bars' open times at ``timeframe`` on this market's calendar."""
        delta = timeframe_delta(timeframe)
        if timeframe == "1w":  # weeks open on Mondays, as on the exchanges
            return pd.date_range(self._start, self._end, freq="W-MON")
        if self.calendar == "24/7":
            first = max(self._start, self._end + pd.Timedelta(days=1) - MAX_BARS * delta)
            return pd.date_range(first.ceil(delta) if delta < pd.Timedelta(days=1) else first.normalize(),
                                 self._end + pd.Timedelta(days=1), freq=delta, inclusive="left")[-MAX_BARS:]
        if timeframe == "1d":
            return self.dates
        per_day = int(np.ceil(pd.Timedelta(hours=SESSION_HOURS["exchange"]) / delta))  # the last bar may be cut by the close
        in_session = pd.to_timedelta(SESSION_OPEN + np.arange(per_day) * delta).to_numpy()
        days = self.dates[-(MAX_BARS // per_day + 1):].to_numpy()
        return pd.DatetimeIndex((days[:, None] + in_session[None, :]).ravel())[-MAX_BARS:]

    # ---- generation ----------------------------------------------------------------
    def _rng(self, symbol: str, timeframe: str) -> np.random.Generator:
        daily = timeframe == "1d" and self.calendar == "exchange"
        key = f"{self.seed}:{symbol}" if daily else f"{self.seed}:{symbol}:{timeframe}:{self.calendar}"
        digest = hashlib.sha256(key.encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def _generate(self, symbol: str, timeframe: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        rng = self._rng(symbol, timeframe)
        dates = self.bar_times(timeframe)
        n = len(dates)
        # a bar's share of a trading day (exactly 1.0 for daily bars): variance, drift and volume scale with it
        bar_days = DAYS_PER_YEAR[self.calendar] / periods_per_year(timeframe, self.calendar)
        level = rng.uniform(0.010, 0.025) * np.sqrt(bar_days)  # typical volatility of this symbol, per bar
        start_price = float(np.exp(rng.uniform(np.log(20), np.log(500))))
        shocks = rng.standard_t(T_DOF, n) / np.sqrt(T_DOF / (T_DOF - 2))
        vol_noise = rng.normal(0.0, 1.0, n)
        events = self._plant(rng, n)
        vol_mult = np.ones(n)
        jumps = np.zeros(n)
        for idx, kind, magnitude, length in events:
            if kind == "volatility_burst":
                vol_mult[idx : idx + length] = magnitude
            elif kind == "price_jump":
                jumps[idx] = magnitude
        if self.predictability == 0.0:
            sigma = np.full(n, level) * vol_mult
            returns = sigma * shocks + jumps * level
        else:
            returns, sigma = self._realistic_returns(rng, shocks, level, vol_mult, jumps, bar_days)
        log_close = np.log(start_price) + np.cumsum(returns)
        close = np.exp(log_close)
        # Open = previous close plus an overnight gap taken out of the same daily return,
        # so close-to-close returns are exactly ``returns``.
        gap = np.clip(rng.normal(0.0, 0.25, n), -0.9, 0.9) * returns
        prev_close = np.r_[start_price, close[:-1]]
        open_ = prev_close * np.exp(gap)
        wick = np.abs(rng.normal(0.0, 0.5, (2, n))) * sigma
        high = np.maximum(open_, close) * np.exp(wick[0])
        low = np.minimum(open_, close) * np.exp(-wick[1])
        volume = self._volume(rng, returns, sigma, vol_noise) * bar_days
        for idx, kind, magnitude, _ in events:
            if kind == "volume_spike":
                volume[idx] *= magnitude
        bars = pd.DataFrame(
            {"timestamp": dates, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
        )
        truth = pd.DataFrame(
            {
                "timestamp": [dates[i] for i, *_ in events],
                "kind": [k for _, k, _, _ in events],
                "magnitude": [float(m) for _, _, m, _ in events],
                "end": [dates[min(i + length - 1, n - 1)] for i, _, _, length in events],
            }
        )
        if truth.empty:
            truth = pd.DataFrame({"timestamp": pd.to_datetime([]), "kind": [], "magnitude": [], "end": pd.to_datetime([])})
        return bars, truth

    def _plant(self, rng: np.random.Generator, n: int) -> list[tuple[int, str, float, int]]:
        """Anomaly positions (at least MIN_GAP apart), kinds, magnitudes and lengths."""
        if self.anomaly_rate == 0.0:
            return []
        candidates = np.flatnonzero(rng.random(n) < self.anomaly_rate)
        events, last = [], -MIN_GAP
        for idx in candidates:
            if idx < WARMUP or idx - last < MIN_GAP or idx > n - 12:
                continue
            kind = ANOMALY_KINDS[rng.integers(len(ANOMALY_KINDS))]
            if kind == "price_jump":
                magnitude, length = rng.choice([-1, 1]) * rng.uniform(6, 12), 1
            elif kind == "volume_spike":
                magnitude, length = rng.uniform(6, 15), 1
            else:
                magnitude, length = rng.uniform(4, 6), int(rng.integers(5, 11))
            events.append((int(idx), kind, float(magnitude), length))
            last = idx + length
        return events

    def _realistic_returns(self, rng, shocks, level, vol_mult, jumps, bar_days: float) -> tuple[np.ndarray, np.ndarray]:
        n = len(shocks)
        alpha, beta = 0.08, 0.90
        omega = level**2 * (1 - alpha - beta)
        edge = self.predictability * K_EDGE
        regime_draws = rng.random(n)
        returns = np.empty(n)
        sigma = np.empty(n)
        var, regime = level**2, 2
        log_price = np.zeros(n + 1)
        for t in range(n):
            regime = int(np.searchsorted(np.cumsum(REGIME_P[regime]), regime_draws[t]))
            regime = min(regime, 2)
            s = np.sqrt(var) * vol_mult[t]
            # The exploitable state: trend persistence over 20 bars, reversal after 5-bar extremes.
            trend = (log_price[t] - log_price[max(t - 20, 0)]) / (s * np.sqrt(20)) if t >= 20 else 0.0
            swing = (log_price[t] - log_price[max(t - 5, 0)]) / (s * np.sqrt(5)) if t >= 5 else 0.0
            state = 0.6 * np.tanh(trend) - 0.4 * np.tanh(swing)
            mu = REGIME_DRIFT[regime] * bar_days * self.predictability + edge * s * state
            r = mu + s * shocks[t] + jumps[t] * s
            returns[t], sigma[t] = r, s
            log_price[t + 1] = log_price[t] + r
            resid = (r - mu) / max(vol_mult[t], 1.0)
            var = omega + alpha * min(resid**2, 25 * level**2) + beta * var
        return returns, sigma

    def _volume(self, rng, returns, sigma, noise) -> np.ndarray:
        base = np.exp(rng.uniform(np.log(2e5), np.log(5e7)))
        if self.predictability == 0.0:
            return base * np.exp(0.3 * noise)
        ar = np.empty_like(noise)
        ar[0] = noise[0]
        for t in range(1, len(noise)):
            ar[t] = 0.7 * ar[t - 1] + np.sqrt(1 - 0.49) * noise[t]
        return base * np.exp(0.25 * ar + 0.35 * np.minimum(np.abs(returns) / sigma, 6.0))
