"""Market-data providers: the synthetic market's properties and ground truth, CSV and sample data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kryptobot.data import DataSpec, get_provider, load_bars, validate_bars
from kryptobot.data.csv_dir import CSVDirectoryProvider
from kryptobot.data.synthetic import SyntheticMarket
from kryptobot.errors import DataError, DataNotFound, InvalidInput


def _log_returns(bars: pd.DataFrame) -> np.ndarray:
    return np.diff(np.log(bars["close"].to_numpy()))


def _trend_vs_future(market: SyntheticMarket, symbols) -> float:
    """Correlation of a past-only indicator (close vs its 20-day mean) with the next 5-day return."""
    xs, ys = [], []
    for symbol in symbols:
        log_close = np.log(market.get_bars(symbol)["close"].to_numpy())
        sma = pd.Series(log_close).rolling(20).mean().to_numpy()
        x, y = log_close[:-5] - sma[:-5], log_close[5:] - log_close[:-5]
        ok = ~np.isnan(x)
        xs.append(x[ok][::5])  # non-overlapping 5-day windows
        ys.append(y[ok][::5])
    return float(np.corrcoef(np.concatenate(xs), np.concatenate(ys))[0, 1])


def test_deterministic_and_windows_are_slices():
    a, b = SyntheticMarket(seed=3), SyntheticMarket(seed=3)
    full = a.get_bars("SYNA")
    pd.testing.assert_frame_equal(full, b.get_bars("SYNA"))
    window = a.get_bars("SYNA", "2018-01-01", "2018-12-31")
    expected = full[(full.timestamp >= "2018-01-01") & (full.timestamp <= "2018-12-31")].reset_index(drop=True)
    pd.testing.assert_frame_equal(window, expected)
    assert not SyntheticMarket(seed=4).get_bars("SYNA")["close"].equals(full["close"])
    assert not a.get_bars("SYNB")["close"].equals(full["close"])


def test_bars_are_valid_ohlcv():
    bars = SyntheticMarket().get_bars("SPY")
    validate_bars(bars)
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1) - 1e-9).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1) + 1e-9).all()
    assert len(bars) > 3000


def test_realistic_market_has_fat_tails_and_volatility_clustering():
    r = _log_returns(SyntheticMarket(predictability=0.5, anomaly_rate=0.0).get_bars("SYNA"))
    assert pd.Series(r).kurt() > 1.0  # excess kurtosis: fat tails
    assert np.corrcoef(np.abs(r[1:]), np.abs(r[:-1]))[0, 1] > 0.1


def test_random_walk_has_no_structure_and_predictable_market_has_some():
    symbols = ["SYNA", "SYNB", "SYNC", "SYND", "SPY", "QQQ", "AAPL", "MSFT"]
    walk = SyntheticMarket(predictability=0.0, anomaly_rate=0.0)
    per_symbol = [_log_returns(walk.get_bars(s)) for s in symbols]
    r = np.concatenate([x / x.std() for x in per_symbol])  # symbols differ in volatility level
    assert abs(np.corrcoef(r[1:], r[:-1])[0, 1]) < 0.03
    assert abs(np.corrcoef(np.abs(r[1:]), np.abs(r[:-1]))[0, 1]) < 0.03
    assert abs(_trend_vs_future(walk, symbols)) < 0.05
    assert _trend_vs_future(SyntheticMarket(predictability=1.0), symbols) > 0.08


def test_planted_anomalies_are_where_the_ground_truth_says():
    market = SyntheticMarket(predictability=0.5, anomaly_rate=0.01)
    bars = market.get_bars("SYNC")
    truth = market.anomalies("SYNC")
    assert len(truth) >= 10 and set(truth["kind"]) <= {"price_jump", "volume_spike", "volatility_burst"}
    r = pd.Series(np.r_[0.0, _log_returns(bars)], index=bars["timestamp"])
    typical = r.abs().median() / 0.6745
    for event in truth[truth.kind == "price_jump"].itertuples():
        assert abs(r[event.timestamp]) > 4 * typical
    volume = bars.set_index("timestamp")["volume"]
    for event in truth[truth.kind == "volume_spike"].itertuples():
        assert volume[event.timestamp] > 3 * volume.median()
    assert market.anomalies("SYNC", "2030-01-01").empty


def test_bad_arguments():
    with pytest.raises(InvalidInput):
        SyntheticMarket(predictability=1.5)
    with pytest.raises(InvalidInput) as err:
        SyntheticMarket().get_bars("not a symbol")
    assert err.value.field == "symbol"
    with pytest.raises(InvalidInput):
        get_provider("nowhere")


def test_data_spec_and_load_bars():
    bars = load_bars(DataSpec(symbols=["syna", "SPY"], start="2020-01-01", end="2020-06-30", seed=1, predictability=0))
    assert list(bars) == ["SYNA", "SPY"]
    assert bars["SPY"]["timestamp"].min() >= pd.Timestamp("2020-01-01")


def _write(path, frame):
    frame.to_csv(path, index=False)


def test_csv_directory_provider(tmp_path):
    bars = SyntheticMarket().get_bars("SYNA").head(300)
    _write(tmp_path / "abc.csv", bars.rename(columns={"timestamp": "Date", "close": "Close"}))
    provider = CSVDirectoryProvider(tmp_path)
    assert provider.symbols() == ["ABC"]
    got = provider.get_bars("ABC", start="2012-03-01")
    assert got["timestamp"].min() >= pd.Timestamp("2012-03-01")
    np.testing.assert_allclose(got["close"].to_numpy(), bars[bars.timestamp >= "2012-03-01"]["close"].to_numpy())


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda f: f.drop(columns=["volume"]), DataError, "missing column"),
        (lambda f: f.iloc[::-1], DataError, "not sorted"),
        (lambda f: pd.concat([f, f.tail(1)]), DataError, "duplicate"),
        (lambda f: f.assign(close=f["close"].where(f.index != 5)), DataError, "NaN"),
        (lambda f: f.assign(low=-f["low"]), DataError, "negative"),
        (lambda f: f.assign(high=f["low"], low=f["high"]), DataError, "high below low"),
    ],
)
def test_csv_errors_name_the_file(tmp_path, mutate, error, message):
    _write(tmp_path / "BAD.csv", mutate(SyntheticMarket().get_bars("SYNA").head(50)))
    with pytest.raises(error, match=message) as err:
        CSVDirectoryProvider(tmp_path).get_bars("BAD")
    assert "BAD.csv" in err.value.message


def test_csv_missing_file_and_directory(tmp_path):
    with pytest.raises(DataNotFound, match="NOPE"):
        CSVDirectoryProvider(tmp_path).get_bars("NOPE")
    with pytest.raises(DataNotFound):
        CSVDirectoryProvider(tmp_path / "absent").get_bars("X")


def test_sample_provider_is_real_split_adjusted_history():
    provider = get_provider("sample")
    assert set(provider.symbols()) >= {"AAPL", "GOOG", "IBM", "MSFT"}
    aapl = provider.get_bars("AAPL")
    assert aapl["timestamp"].min().year == 2000 and aapl["timestamp"].max().year == 2013
    from bokeh_sampledata import stocks

    raw = np.asarray(stocks.AAPL["close"], dtype=float)
    assert np.min(np.diff(np.log(raw))) < np.log(0.6)  # the unadjusted 2:1 split of 2005 looks like a crash
    adjusted = _log_returns(aapl.set_index("timestamp").loc["2005-02-01":"2005-03-31"].reset_index())
    assert np.min(adjusted) > np.log(0.8)  # adjusted, it does not
    with pytest.raises(DataNotFound, match="available"):
        provider.get_bars("TSLA")
