"""The feature pipeline: no look-ahead, scale-free, exact warm-up, train == serve."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kryptobot.errors import DataError, InvalidInput
from kryptobot.features import (
    FEATURE_NAMES,
    PIPELINE_VERSION,
    FeatureParams,
    build_features,
    latest_features,
    min_bars,
    validate_feature_dict,
)


def random_walk_bars(n: int, seed: int = 0, start_price: float = 100.0) -> pd.DataFrame:
    """Geometric random walk OHLCV bars, one per day."""
    rng = np.random.default_rng(seed)
    close = start_price * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = np.r_[start_price, close[:-1]] * np.exp(rng.normal(0, 0.003, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, n)))
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2015-01-01", periods=n, freq="D"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.lognormal(10, 0.5, n),
        }
    )


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return random_walk_bars(700)


@pytest.fixture(scope="module")
def features(bars) -> pd.DataFrame:
    return build_features(bars)


def test_columns_index_and_warmup(bars, features):
    assert list(features.columns) == FEATURE_NAMES
    assert PIPELINE_VERSION == "ta-1"
    shifted = bars.set_axis(np.arange(1000, 1000 + len(bars)))
    assert list(build_features(shifted).index) == list(shifted.index)
    m = min_bars()
    assert features.iloc[: m - 1].isna().all().all()
    assert features.iloc[m - 1 :].notna().all().all()


def test_no_look_ahead(bars, features):
    for k in (min_bars() - 1, 200, 377, len(bars) - 1):
        prefix = build_features(bars.iloc[: k + 1])
        np.testing.assert_allclose(prefix.iloc[-1].to_numpy(), features.iloc[k].to_numpy(), rtol=1e-12, atol=1e-12)
    # Rewriting the future leaves the past untouched.
    k = 400
    future = bars.copy()
    future.loc[k + 1 :, ["open", "high", "low", "close"]] *= 3.0
    future.loc[k + 1 :, "volume"] = 0.0
    np.testing.assert_array_equal(build_features(future).iloc[: k + 1].to_numpy(), features.iloc[: k + 1].to_numpy())


@pytest.mark.parametrize("price_factor, volume_factor", [(10.0, 1.0), (1e-6, 1000.0), (3.7e4, 1e-3)])
def test_scale_free(bars, features, price_factor, volume_factor):
    scaled = bars.copy()
    scaled[["open", "high", "low", "close"]] *= price_factor
    scaled["volume"] *= volume_factor
    np.testing.assert_allclose(build_features(scaled).to_numpy(), features.to_numpy(), rtol=1e-9, atol=1e-9)


def test_value_ranges(features):
    f = features.dropna()
    assert f["rsi"].between(0, 100).all() and f["trend_strength"].between(0, 100).all()
    assert (f["bb_upper"] > f["bb_lower"]).all()
    assert (f["atr"] > 0).all() and (f["volume_ratio"] > 0).all()
    # Scale-free values of a 2%-a-day walk are small numbers, not prices.
    assert f["atr"].between(0.005, 0.1).all() and f["macd"].abs().max() < 0.2


def test_min_bars_is_exact(bars):
    m = min_bars()
    assert m == 154  # the value the docs quote for the defaults
    values = latest_features(bars.iloc[:m])
    assert list(values) == FEATURE_NAMES and all(np.isfinite(v) for v in values.values())
    with pytest.raises(InvalidInput) as err:
        latest_features(bars.iloc[: m - 1])
    assert err.value.field == "bars"
    assert f"need at least {m} bars" in err.value.message and f"got {m - 1}" in err.value.message
    with pytest.raises(InvalidInput) as err:
        latest_features(bars.iloc[:10], field="instances[3].bars")
    assert err.value.field == "instances[3].bars"


def test_min_bars_follows_params(bars):
    params = FeatureParams(rsi_period=7, macd_fast=5, macd_slow=10, macd_signal=4, trend_period=6, atr_period=6)
    m = min_bars(params)
    assert m < min_bars()
    assert build_features(bars.iloc[:m], params).iloc[-1].notna().all()
    assert build_features(bars.iloc[: m - 1], params).iloc[-1].isna().all()


def test_serving_matches_training(bars, features):
    """A served row from just min_bars bars equals the full-history training row."""
    m = min_bars()
    scale = features.std()
    for end in range(m, len(bars), 61):
        served = pd.Series(latest_features(bars.iloc[end - m + 1 : end + 1]))
        assert ((served - features.iloc[end]).abs() / scale).max() < 0.01
        # Sending more history than needed changes nothing.
        assert pd.Series(latest_features(bars.iloc[: end + 1])).equals(served)


def test_zero_volume_is_neutral(bars):
    no_volume = bars.assign(volume=0.0)
    f = build_features(no_volume).dropna()
    assert len(f) > 0 and (f["volume_ratio"] == 1.0).all()


def test_malformed_bars_name_the_field(bars):
    broken = bars.copy()
    broken.loc[200, "close"] = np.nan
    with pytest.raises(DataError) as err:
        latest_features(broken, field="instances[0].bars")
    assert err.value.field.startswith("instances[0].bars")


def test_params_round_trip_and_validation():
    params = FeatureParams(rsi_period=10, bb_std=2.5)
    assert FeatureParams.from_dict(params.to_dict()) == params
    with pytest.raises(InvalidInput) as err:
        FeatureParams.from_dict({**params.to_dict(), "bogus": 1})
    assert err.value.field == "feature_params"
    with pytest.raises(InvalidInput):
        FeatureParams(rsi_period=0)
    with pytest.raises(InvalidInput):
        FeatureParams(macd_fast=30, macd_slow=26)


def test_validate_feature_dict():
    good = {name: float(i) for i, name in enumerate(FEATURE_NAMES)}
    out = validate_feature_dict(good, ["atr", "rsi"] + [n for n in FEATURE_NAMES if n not in ("atr", "rsi")], "x")
    assert out[0] == good["atr"] and out[1] == good["rsi"] and out.dtype == np.float64

    cases = [
        ({**good, "colour": 1.0}, "features", "unknown"),
        ({k: v for k, v in good.items() if k != "atr"}, "features", "missing"),
        ({**good, "rsi": float("nan")}, "features.rsi", "finite"),
        ({**good, "macd": float("inf")}, "features.macd", "finite"),
        ({**good, "rsi": "high"}, "features.rsi", "number"),
        ({**good, "rsi": True}, "features.rsi", "number"),
        ([1.0] * 9, "features", "object"),
    ]
    for d, field, word in cases:
        with pytest.raises(InvalidInput) as err:
            validate_feature_dict(d, FEATURE_NAMES, field="features")
        assert err.value.field == field and word in err.value.message
