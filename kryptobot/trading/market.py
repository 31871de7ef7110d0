"""What the trader sees of a symbol: recent bars, the technical signal and the ATR.

The same function serves a live cycle (its last bar) and a backtest (every bar).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kryptobot.data import MarketDataProvider
from kryptobot.errors import InvalidInput
from kryptobot.features import build_features
from kryptobot.labels import atr_abs, primary_signals
from kryptobot.schemas import Bars
from kryptobot.trading.settings import StrategySettings

MODEL_BARS = 200  # bars sent to the services: >= the feature pipeline's 154 and the forecaster's sequence_length + 1


def strategy_signals(bars: pd.DataFrame, strategy: StrategySettings) -> pd.DataFrame:
    """Per bar (past data only): ``side`` 'buy' / 'sell' / 'none' of the primary technical
    strategy, and ``atr`` in price units (NaN during its warm-up)."""
    features = build_features(bars, strategy.feature_params())
    events = primary_signals(bars, features, strategy.label_params())
    sides = np.full(len(bars), "none", dtype=object)
    sides[events["index"].to_numpy()] = np.where(events["side"].to_numpy() > 0, "buy", "sell")
    return pd.DataFrame({"side": sides, "atr": atr_abs(bars, strategy.atr_period)}, index=bars.index)


@dataclass
class SymbolView:
    symbol: str
    bars: pd.DataFrame
    technical: str
    atr: float | None
    last_close: float
    last_timestamp: pd.Timestamp

    def last_bars(self, n: int) -> Bars:
        """The last ``n`` bars as the services' wire schema."""
        return Bars.from_frame(self.bars.tail(n))

    def bars_since(self, timestamp: str | None) -> int:
        """Bars closed after ``timestamp`` (a position's entry bar), up to this view's last."""
        if timestamp is None:
            return 0
        return int((self.bars["timestamp"] > pd.Timestamp(timestamp)).sum())


def bar_id(timestamp) -> str:
    """A bar's name in order ids (``symbol:bar``): its day for daily bars, its time otherwise,
    so each intraday bar is traded once, not each day."""
    ts = pd.Timestamp(timestamp)
    return ts.date().isoformat() if ts == ts.normalize() else ts.isoformat()


def view(provider: MarketDataProvider, symbol: str, history_bars: int, strategy: StrategySettings, as_of=None,
         timeframe: str = "1d") -> SymbolView:
    bars = provider.get_bars(symbol, end=as_of, timeframe=timeframe).tail(history_bars).reset_index(drop=True)
    if len(bars) < MODEL_BARS:
        raise InvalidInput(f"{symbol} has {len(bars)} bars up to {as_of or 'now'}; a decision needs {MODEL_BARS}", field="as_of")
    signals = strategy_signals(bars, strategy)
    atr = float(signals["atr"].iat[-1])
    return SymbolView(symbol, bars, str(signals["side"].iat[-1]), atr if np.isfinite(atr) else None,
                      float(bars["close"].iat[-1]), bars["timestamp"].iat[-1])
