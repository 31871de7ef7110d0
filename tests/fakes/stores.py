"""A market-data store filled the way a user fills one: ccxt's binance client downloading
hourly candles from the local fake exchange."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from kryptobot.data.ccxt_source import CCXTSource
from kryptobot.data.download import download
from kryptobot.data.local_store import MarketDataStore
from tests.fakes.exchange import FakeBinance

PAIRS = ["BTC/USDT", "ETH/USDT"]


def hourly_pairs_store(directory: Path, candles: int = 3000, pairs: list[str] = PAIRS) -> Path:
    with FakeBinance(candles=candles) as fake:
        result = download(CCXTSource("binance", config=fake.ccxt_config(), backoff=0.001), MarketDataStore(directory),
                          pairs, "1h", pd.Timestamp("2024-01-01"))
    assert result.ok and [r.stored for r in result.reports] == [candles] * len(pairs), result
    return directory
