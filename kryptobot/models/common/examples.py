"""Request examples for the Swagger UI, built from the embedded synthetic market.

They are computed when an app is created (never at import), and are real data, so
pressing "Execute" in /docs with the example unchanged gets a 200.
"""
from __future__ import annotations

from functools import lru_cache

from kryptobot.data import get_provider
from kryptobot.schemas import Bars

EXAMPLE_SYMBOL = "SYNA"


@lru_cache(maxsize=8)
def example_bars(n: int, symbol: str = EXAMPLE_SYMBOL) -> dict:
    """The last ``n`` bars of the synthetic market for ``symbol``, as the JSON of ``Bars``."""
    frame = get_provider("synthetic").get_bars(symbol).tail(n)
    return Bars.from_frame(frame).model_dump(mode="json")


def classifier_example() -> dict:
    from kryptobot.features import min_bars, FeatureParams

    return {
        "instances": [
            {"side": "buy", "bars": example_bars(min_bars(FeatureParams()) + 10)},
            {
                "side": "sell",
                "features": {
                    "rsi": 71.5, "macd": 0.004, "macd_signal": 0.003, "bb_upper": 0.012, "bb_lower": -0.061,
                    "volume_ratio": 1.4, "price_change": 0.011, "atr": 0.021, "trend_strength": 27.0,
                },
            },
        ]
    }
