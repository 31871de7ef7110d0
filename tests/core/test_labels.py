"""Triple-barrier meta-labels: barrier order, t1, no label past the data, fair base rate."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kryptobot.errors import InvalidInput, TrainingError
from kryptobot.features import FEATURE_NAMES, build_features, min_bars
from kryptobot.labels import LabelParams, atr_abs, build_meta_dataset, primary_signals, triple_barrier


def random_walk_bars(n: int, seed: int = 0, start: str = "2012-01-01") -> pd.DataFrame:
    """Geometric random walk OHLCV bars, one per day (a martingale: nothing to predict)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, n)))
    return pd.DataFrame(
        {
            "timestamp": pd.date_range(start, periods=n, freq="D"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.lognormal(10, 0.5, n),
        }
    )


def hand_bars(path: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    """Bar 0 closes at 100; then one (open, high, low, close) per later bar."""
    rows = [(100.0, 100.0, 100.0, 100.0), *path]
    frame = pd.DataFrame(rows, columns=["open", "high", "low", "close"])
    frame.insert(0, "timestamp", pd.date_range("2020-01-01", periods=len(rows), freq="D"))
    frame["volume"] = 1.0
    return frame


FLAT = (100.0, 100.5, 99.5, 100.0)
PARAMS = LabelParams(tp_mult=2.0, sl_mult=2.0, max_holding=5)  # ATR 1 -> barriers at 102 / 98


def label_one(path, side: int = 1, params: LabelParams = PARAMS) -> pd.Series:
    bars = hand_bars(path)
    events = pd.DataFrame({"index": [0], "side": [side]})
    out = triple_barrier(bars, events, np.ones(len(bars)), params)
    assert len(out) == 1
    return out.iloc[0]


def test_take_profit_first():
    row = label_one([FLAT, (100.0, 102.5, 99.0, 102.2), (102.0, 103.0, 97.0, 97.0), FLAT, FLAT])
    assert (row.label, row.barrier, row.t1) == (1, "tp", pd.Timestamp("2020-01-03"))
    assert row.ret == pytest.approx(0.02)  # filled at the barrier, not at the close


def test_stop_loss_first():
    row = label_one([FLAT, FLAT, (99.0, 100.0, 97.9, 98.5), (99.0, 110.0, 99.0, 109.0), FLAT])
    assert (row.label, row.barrier, row.t1) == (0, "sl", pd.Timestamp("2020-01-04"))
    assert row.ret == pytest.approx(-0.02)


def test_both_barriers_in_one_bar_count_as_stop():
    row = label_one([FLAT, (100.0, 103.0, 97.0, 101.0), FLAT, FLAT, FLAT])
    assert (row.label, row.barrier, row.t1) == (0, "sl", pd.Timestamp("2020-01-03"))


def test_gap_through_the_stop_fills_at_the_open():
    row = label_one([FLAT, (95.0, 95.5, 94.0, 95.0), FLAT, FLAT, FLAT])
    assert row.barrier == "sl" and row.ret == pytest.approx(-0.05)


@pytest.mark.parametrize("final_close, label", [(100.7, 1), (99.3, 0)])
def test_time_limit(final_close, label):
    row = label_one([FLAT, FLAT, FLAT, FLAT, (100.0, 101.0, 99.0, final_close)])
    assert (row.label, row.barrier, row.t1) == (label, "time", pd.Timestamp("2020-01-06"))
    assert row.ret == pytest.approx(final_close / 100.0 - 1.0)


def test_short_side_mirrors():
    up = [FLAT, (100.0, 102.5, 99.0, 102.2), FLAT, FLAT, FLAT]
    row = label_one(up, side=-1)
    assert (row.label, row.barrier) == (0, "sl") and row.ret == pytest.approx(-0.02)
    down = [FLAT, (100.0, 100.5, 97.5, 97.8), FLAT, FLAT, FLAT]
    row = label_one(down, side=-1)
    assert (row.label, row.barrier) == (1, "tp") and row.ret == pytest.approx(0.02)
    row = label_one([FLAT, FLAT, FLAT, FLAT, (100.0, 101.0, 99.0, 99.3)], side=-1)
    assert (row.label, row.barrier) == (1, "time") and row.ret == pytest.approx(0.007)


def test_asymmetric_barriers():
    path = [FLAT, (100.0, 101.2, 99.5, 101.0), FLAT, FLAT, FLAT]
    assert label_one(path, params=LabelParams(tp_mult=1.0, sl_mult=3.0, max_holding=5)).barrier == "tp"
    assert label_one(path, params=PARAMS).barrier == "time"


def test_no_event_past_the_end_of_data():
    bars = hand_bars([FLAT] * 9)  # 10 bars, positions 0..9
    events = pd.DataFrame({"index": [0, 3, 4, 5, 9], "side": [1, -1, 1, 1, -1]})
    atr = np.ones(len(bars))
    atr[3] = np.nan  # no ATR -> no barriers -> no label
    out = triple_barrier(bars, events, atr, PARAMS)
    assert list(out["index"]) == [0, 4]  # 5 + 5 > 9: its time limit is past the last bar
    assert (out["t1"] <= bars["timestamp"].iloc[-1]).all()


def test_primary_signals_fire_often_without_look_ahead():
    bars = random_walk_bars(3000)
    features = build_features(bars)
    signals = primary_signals(bars, features)
    assert list(signals.columns) == ["index", "timestamp", "side"]
    assert 250 <= len(signals) <= 1000
    assert set(signals["side"]) == {-1, 1}
    assert signals["index"].min() >= min_bars() - 1
    assert (signals["timestamp"].to_numpy() == bars["timestamp"].to_numpy()[signals["index"]]).all()
    k = 1500
    prefix = primary_signals(bars.iloc[: k + 1], build_features(bars.iloc[: k + 1]))
    pd.testing.assert_frame_equal(prefix, signals[signals["index"] <= k].reset_index(drop=True))
    only_macd = primary_signals(bars, features, LabelParams(rules=("macd_cross",)))
    assert 0 < len(only_macd) < len(signals)


def test_meta_dataset_shape_and_order():
    data = {"BBB": random_walk_bars(800, seed=1), "AAA": random_walk_bars(900, seed=2, start="2012-03-01")}
    ds = build_meta_dataset(data)
    assert list(ds.X.columns) == [*FEATURE_NAMES, "side"]
    assert len(ds) == len(ds.X) == len(ds.t0) == len(ds.t1) == len(ds.symbol) == len(ds.ret)
    assert ds.X.notna().all().all() and set(np.unique(ds.y)) <= {0, 1}
    assert set(ds.X["side"]) == {-1.0, 1.0}
    assert (ds.t0.to_numpy()[1:] >= ds.t0.to_numpy()[:-1]).all()
    assert (ds.t1 > ds.t0).all()
    assert (ds.t1 - ds.t0).max() <= pd.Timedelta(days=LabelParams().max_holding)
    for sym, bars in data.items():
        mine = ds.symbol == sym
        assert (ds.t1[mine] <= bars["timestamp"].iloc[-1]).all()
    # The mapping's order does not matter.
    again = build_meta_dataset(dict(reversed(list(data.items()))))
    pd.testing.assert_frame_equal(again.X, ds.X)
    assert (again.symbol == ds.symbol).all()
    sub = ds.take(np.arange(10))
    assert len(sub) == 10 and sub.t0.equals(ds.t0[:10])


def test_too_few_events_is_a_training_error():
    with pytest.raises(TrainingError) as err:
        build_meta_dataset({"AAA": random_walk_bars(200)})
    assert err.value.field == "data" and "need at least 50" in err.value.message


def test_base_rate_on_a_random_walk_is_a_coin_flip():
    ds = build_meta_dataset({f"S{i}": random_walk_bars(3000, seed=10 + i) for i in range(4)})
    assert len(ds) > 1500
    assert abs(ds.y.mean() - 0.5) < 0.05


def test_label_params_round_trip_and_validation():
    params = LabelParams(tp_mult=1.5, max_holding=20, rules=["rsi_exit", "macd_cross"])
    assert params.rules == ("rsi_exit", "macd_cross")
    assert LabelParams.from_dict(params.to_dict()) == params
    for bad in ({"tp_mult": 0}, {"max_holding": 0}, {"rsi_oversold": 80}, {"rules": ["moon_phase"]}, {"rules": []}):
        with pytest.raises(InvalidInput):
            LabelParams(**bad)
    with pytest.raises(InvalidInput):
        LabelParams.from_dict({"horizon": 3})


def test_atr_abs_is_in_price_units():
    bars = random_walk_bars(300)
    atr = atr_abs(bars, 14)
    assert np.isnan(atr[:14]).all() and (atr[14:] > 0).all()
    features = build_features(bars)
    defined = features["atr"].notna().to_numpy()
    np.testing.assert_allclose(atr[defined], (features["atr"] * bars["close"]).to_numpy()[defined], rtol=1e-9)
