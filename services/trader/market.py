"""What the trader sees of a symbol: recent bars, features and the technical signal.

The same functions serve a live cycle (the last bar) and a backtest (every bar).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from kryptobot.data import MarketDataProvider
from kryptobot.features import FeatureParams, build_features
from kryptobot.labels import LabelParams, primary_signals
from kryptobot.schemas import Bars


def technical_sides(bars: pd.DataFrame, features: pd.DataFrame) -> pd.Series:
    """'buy' / 'sell' / 'none' per bar from the primary technical strategy (past data only)."""
    events = primary_signals(bars, features, LabelParams())
    sides = pd.Series("none", index=bars.index, dtype=object)
    sides.iloc[events["index"].to_numpy()] = ["buy" if s > 0 else "sell" for s in events["side"]]
    return sides


@dataclass
class SymbolView:
    symbol: str
    bars: pd.DataFrame
    technical: str
    last_close: float
    last_timestamp: pd.Timestamp

    def bars_json(self, n: int) -> dict:
        return Bars.from_frame(self.bars.tail(n)).model_dump(mode="json")


def view(provider: MarketDataProvider, symbol: str, history_bars: int, as_of=None) -> SymbolView:
    bars = provider.get_bars(symbol, end=as_of).tail(history_bars).reset_index(drop=True)
    features = build_features(bars, FeatureParams())
    sides = technical_sides(bars, features)
    return SymbolView(symbol, bars, str(sides.iat[-1]), float(bars["close"].iat[-1]), bars["timestamp"].iat[-1])
