"""Real markets without a network: pair symbols, timeframes, the local store, and the ccxt and
alpaca-py clients downloading from local servers that speak Binance's and Alpaca's wire formats."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from kryptobot.data import DataSpec, get_provider, load_bars
from kryptobot.data.alpaca_source import AlpacaSource
from kryptobot.data.base import check_symbol, symbol_filename, symbol_from_filename
from kryptobot.data.ccxt_source import CCXTSource
from kryptobot.data.download import download
from kryptobot.data.local_store import LocalStoreProvider, MarketDataStore, find_gaps
from kryptobot.data.synthetic import SyntheticMarket
from kryptobot.data.timeframes import TIMEFRAMES, check_timeframe, periods_per_year, timeframe_delta
from kryptobot.errors import DataError, DataNotFound, InvalidInput
from kryptobot.schemas import Bars, BarsInstance
from kryptobot.trading.settings import TraderSettings
from tests.fakes.alpaca import KEY_ID, SECRET, FakeAlpaca
from tests.fakes.exchange import FIXTURES, FakeBinance

FIXTURE_ROWS = json.loads((FIXTURES / "binance_klines_btcusdt_1h.json").read_text())
START = pd.Timestamp("2024-01-01")


@pytest.fixture
def binance():
    with FakeBinance() as fake:
        yield fake


@pytest.fixture
def alpaca():
    with FakeAlpaca() as fake:
        yield fake


def ccxt_source(fake: FakeBinance, attempts: int = 3) -> CCXTSource:
    return CCXTSource("binance", config=fake.ccxt_config(), attempts=attempts, backoff=0.001)


def fetch_all(source, store, symbols=("BTC/USDT", "ETH/USDT"), timeframe="1h"):
    return download(source, store, list(symbols), timeframe, START)


# ---- symbols ------------------------------------------------------------------------
PAIRS = ["BTC/USDT", "btc/usdt:usdt", "ETH/BTC", "BTC/USDT:USDT-240329", "1000SHIB/USDT", "SPY", "BRK-B", "BRK.B", "SYNA"]


@pytest.mark.parametrize("symbol", PAIRS)
def test_pairs_and_tickers_are_symbols_with_safe_reversible_file_names(symbol):
    checked = check_symbol(symbol)
    assert checked == symbol.upper()
    name = symbol_filename(symbol)
    assert set(name) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-^_") and not name.startswith(".")
    assert symbol_from_filename(name) == checked


def test_file_names_do_not_collide():
    symbols = ["BTC/USDT:USDT", "BTC/USDT-USDT", "BTC/USDT", "BTC-USDT", "BTCUSDT", "BTC/USD:T", "BTC/USDT:USDT-240329"]
    assert len({symbol_filename(s) for s in symbols}) == len(symbols)


@pytest.mark.parametrize("bad", [
    "../etc/passwd", "..", "/etc", "/BTC/USDT", "BTC/../USDT", "a\\b", "C:\\x", "SPY\n", "BTC/USDT\n", "SPY\r", "SP\x00Y",
    "SPY\t", " SPY", "SPY ", "", "BTC//USDT", "BTC/", "/USDT", "BTC/USDT:", "A:B", "BTC/USDT:USDT:USDT", "ſpy", "SPY\u200b",
    "A" * 21, ".SPY",
])
def test_path_tricks_control_characters_and_trailing_newlines_are_refused(bad):
    with pytest.raises(InvalidInput) as err:
        check_symbol(bad, field="symbols")
    assert err.value.field == "symbols" and "malformed symbol" in err.value.message
    with pytest.raises(ValidationError) as err:
        DataSpec(symbols=["SPY", bad])
    assert err.value.errors()[0]["loc"] == ("symbols", 1)


@pytest.mark.parametrize("stem", ["..", "A_B_C_D", "_A", "A__B", "a\nb"])
def test_file_names_that_no_symbol_maps_to_are_refused(stem):
    with pytest.raises(InvalidInput):
        symbol_from_filename(stem)


def test_pairs_are_accepted_in_requests_and_settings():
    assert DataSpec(source="local", symbols=["btc/usdt", "ETH/USDT:USDT"], timeframe="1h").symbols == ["BTC/USDT", "ETH/USDT:USDT"]
    assert TraderSettings(watchlist=["BTC/USDT", "SPY"]).watchlist == ["BTC/USDT", "SPY"]
    assert TraderSettings(data_source="local").data_source == "local"
    bars = Bars.from_frame(SyntheticMarket(calendar="24/7", start="2024-12-01").get_bars("BTC/USDT", timeframe="1h").tail(3))
    bars = bars.model_dump(mode="json")
    assert BarsInstance(symbol="btc/usdt:usdt", bars=bars).symbol == "BTC/USDT:USDT"
    with pytest.raises(ValidationError) as err:
        TraderSettings(watchlist=["BTC/USDT", "../../x"])
    assert err.value.errors()[0]["loc"] == ("watchlist", 1)


# ---- timeframes ---------------------------------------------------------------------
def test_timeframes_and_periods_per_year():
    assert {"1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d"} <= set(TIMEFRAMES)
    assert timeframe_delta("15m") == pd.Timedelta(minutes=15) and timeframe_delta("1w") == pd.Timedelta(days=7)
    for tf, offset in TIMEFRAMES.items():
        assert pd.Timedelta(offset) == timeframe_delta(tf)
    assert periods_per_year("1d", "24/7") == 365 and periods_per_year("1h", "24/7") == 365 * 24
    assert periods_per_year("1m", "24/7") == 365 * 24 * 60
    assert periods_per_year("1d", "exchange") == 252 and periods_per_year("1w", "exchange") == 52
    assert periods_per_year("1h", "exchange") == pytest.approx(252 * 6.5)
    assert periods_per_year("5m", "exchange") == pytest.approx(252 * 78)
    assert periods_per_year("12h", "exchange") == 252  # one bar a session
    with pytest.raises(InvalidInput) as err:
        check_timeframe("7m")
    assert err.value.field == "timeframe" and "1m, 3m, 5m" in err.value.message
    with pytest.raises(InvalidInput) as err:
        periods_per_year("1h", "weekdays")
    assert err.value.field == "calendar"
    with pytest.raises(ValidationError) as err:
        DataSpec(timeframe="7m")
    assert err.value.errors()[0]["loc"] == ("timeframe",) and "'1h'" in str(err.value)


def test_synthetic_market_makes_intraday_and_24_7_series():
    crypto = SyntheticMarket(calendar="24/7", start="2022-01-01")
    assert crypto.calendar == "24/7" and SyntheticMarket().calendar == "exchange"
    hourly = crypto.get_bars("BTC/USDT", timeframe="1h")
    steps = hourly["timestamp"].diff().dropna().unique()
    assert list(steps) == [pd.Timedelta(hours=1)] and (hourly["timestamp"].dt.dayofweek >= 5).any()
    pd.testing.assert_frame_equal(hourly, SyntheticMarket(calendar="24/7", start="2022-01-01").get_bars("BTC/USDT", timeframe="1h"))
    stocks = SyntheticMarket(start="2022-01-01").get_bars("SPY", "2024-01-01", "2024-12-31 23:59", timeframe="1h")
    times = stocks["timestamp"]
    assert (times.dt.dayofweek < 5).all() and times.dt.time.min() == pd.Timestamp("14:30").time()
    assert len(stocks) == 7 * len(pd.bdate_range("2024-01-01", "2024-12-31"))
    # volatility scales with the bar: annualised, the hourly and daily series are alike
    for market, tf in ((crypto, "1h"), (SyntheticMarket(start="2022-01-01"), "1h"), (crypto, "1d")):
        r = np.diff(np.log(market.get_bars("SYNA", timeframe=tf)["close"].to_numpy()))
        assert 0.1 < r.std() * np.sqrt(periods_per_year(tf, market.calendar)) < 0.8
    with pytest.raises(InvalidInput) as err:
        crypto.get_bars("BTC/USDT", timeframe="2d")
    assert err.value.field == "timeframe"


# ---- gaps and the store -------------------------------------------------------------
def test_gaps_follow_the_calendar():
    hours = pd.date_range("2024-01-05", periods=10, freq="1h").delete([3, 4])
    (gap,) = find_gaps(hours, "1h", "24/7")
    assert (gap.after, gap.before, gap.missing) == (hours[2], hours[3], 2)
    weekdays = pd.bdate_range("2024-01-01", "2024-01-31").delete([7])  # a Wednesday missing; weekends are not gaps
    (gap,) = find_gaps(weekdays, "1d", "exchange")
    assert gap.missing == 1 and gap.after == pd.Timestamp("2024-01-09")
    session = pd.DatetimeIndex([pd.Timestamp("2024-01-05 14:30") + pd.Timedelta(hours=h) for h in (0, 1, 2, 5, 6)]
                               + [pd.Timestamp("2024-01-08 14:30")])
    (gap,) = find_gaps(session, "1h", "exchange")  # the night and the weekend are not gaps
    assert gap.missing == 2


def test_store_sorts_and_reports_and_refuses_to_mix_venues(tmp_path):
    store = MarketDataStore(tmp_path)
    bars = SyntheticMarket(calendar="24/7").get_bars("BTC/USDT", timeframe="1h").head(40)
    arrived = bars.iloc[[0, 1, 3, 2, 4, 5, 5, 6] + list(range(9, 40))]  # out of order, a repeat, a gap of two
    report = store.merge("BTC/USDT", "1h", arrived, source="ccxt", venue="binance", calendar="24/7")
    assert (report.fetched, report.added, report.duplicates, report.out_of_order, report.stored) == (39, 38, 1, 1, 38)
    assert [(g.after, g.missing) for g in report.gaps] == [(bars["timestamp"][6], 2)]
    stored = LocalStoreProvider(tmp_path).get_bars("btc/usdt", timeframe="1h")
    assert stored["timestamp"].is_monotonic_increasing and len(stored) == 38
    assert store.path("BTC/USDT", "1h").name == "BTC_USDT-1h.parquet" and store.entries() == [("BTC/USDT", "1h")]
    with pytest.raises(InvalidInput) as err:
        store.merge("BTC/USDT", "1h", bars.tail(2), source="ccxt", venue="kraken", calendar="24/7")
    assert err.value.field == "exchange" and "binance" in err.value.message
    revised = bars.iloc[[39]].copy()
    revised["close"] *= 1.05
    with pytest.raises(DataError, match="revised"):
        store.merge("BTC/USDT", "1h", revised, source="ccxt", venue="binance", calendar="24/7")
    broken = bars.iloc[[7]].copy()
    broken["low"] = -1.0
    with pytest.raises(DataError) as err:
        store.merge("BTC/USDT", "1h", broken, source="ccxt", venue="binance", calendar="24/7")
    assert err.value.field == "exchange"
    assert len(LocalStoreProvider(tmp_path).get_bars("BTC/USDT", timeframe="1h")) == 38  # unchanged by the refusals


def test_local_source_through_get_provider_and_load_bars(tmp_path):
    with pytest.raises(InvalidInput) as err:
        get_provider("local")
    assert err.value.field == "source"
    store = MarketDataStore(tmp_path)
    bars = SyntheticMarket(calendar="24/7").get_bars("ETH/USDT", timeframe="1h").head(100)
    store.merge("ETH/USDT", "1h", bars, source="ccxt", venue="binance", calendar="24/7")
    provider = get_provider("local", market_data_dir=tmp_path)
    assert provider.symbols() == ["ETH/USDT"] and provider.calendar == "24/7"
    day = bars["timestamp"].iat[50].date()
    loaded = load_bars(DataSpec(source="local", symbols=["eth/usdt"], timeframe="1h", end=day), market_data_dir=tmp_path)
    assert loaded["ETH/USDT"]["timestamp"].iat[-1] == pd.Timestamp(day) + pd.Timedelta(hours=23)  # the whole last day
    with pytest.raises(DataNotFound) as err:
        provider.get_bars("ETH/USDT", timeframe="4h")
    assert err.value.field == "symbols" and "download-data" in err.value.message


# ---- ccxt against the local Binance -----------------------------------------------------
def test_download_btc_and_eth_hourly_candles_into_the_store(binance, tmp_path):
    result = fetch_all(ccxt_source(binance), MarketDataStore(tmp_path))
    assert result.ok and [r.added for r in result.reports] == [1200, 1200]
    assert all(not r.gaps and not r.duplicates and not r.out_of_order for r in result.reports)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BTC_USDT-1h.parquet", "ETH_USDT-1h.parquet"]
    local = LocalStoreProvider(tmp_path)
    btc = local.get_bars("BTC/USDT", timeframe="1h")
    assert len(btc) == 1200 and local.calendar_of("BTC/USDT", "1h") == "24/7"
    # the hand-written rows of the documented format, parsed by ccxt
    assert btc["timestamp"].iat[0] == pd.Timestamp(FIXTURE_ROWS[0][0], unit="ms")
    assert btc[["open", "high", "low", "close", "volume"]].iloc[0].tolist() == [float(v) for v in FIXTURE_ROWS[0][1:6]]
    klines = binance.seen("/api/v3/klines")
    assert {r.query["symbol"] for r in klines} == {"BTCUSDT", "ETHUSDT"} and all(r.query["interval"] == "1h" for r in klines)
    assert len(klines) == 6  # per symbol: a full page of 1000, the last 200, an empty page


def test_second_download_fetches_only_the_new_candles(binance, tmp_path):
    store = MarketDataStore(tmp_path)
    fetch_all(ccxt_source(binance), store)
    last = store.span("BTC/USDT", "1h")[1]
    binance.extend("BTCUSDT", "1h", 30)
    binance.forget()
    result = fetch_all(ccxt_source(binance), store)
    btc, eth = result.reports
    assert (btc.added, btc.stored, eth.added, eth.stored) == (30, 1230, 0, 1200)
    first = binance.seen("/api/v3/klines")[0]
    assert first.query["symbol"] == "BTCUSDT" and int(first.query["startTime"]) == int((last + pd.Timedelta(hours=1)).value // 10**6)
    # 30 candles cost one page (and the empty one that ends it); the up-to-date symbol one request
    assert [r.query["symbol"] for r in binance.seen("/api/v3/klines")] == ["BTCUSDT", "BTCUSDT", "ETHUSDT"]


def test_rate_limits_drops_5xx_and_malformed_pages_are_retried_into_a_complete_file(binance, tmp_path):
    clean = fetch_all(ccxt_source(binance), MarketDataStore(tmp_path / "clean"), symbols=["BTC/USDT"])
    for kind in ("rate_limit", "drop", "server_error", "malformed"):
        binance.faults.arm(kind, times=1, path="/api/v3/klines")
    binance.forget()
    result = download(CCXTSource("binance", config=binance.ccxt_config(), attempts=5, backoff=0.001),
                      MarketDataStore(tmp_path / "faulty"), ["BTC/USDT"], "1h", START)
    assert result.ok and binance.faults.pending == 0
    assert len(binance.seen("/api/v3/klines")) == 3 + 4  # every fault cost one retry
    pd.testing.assert_frame_equal(LocalStoreProvider(tmp_path / "faulty").get_bars("BTC/USDT", timeframe="1h"),
                                  LocalStoreProvider(tmp_path / "clean").get_bars("BTC/USDT", timeframe="1h"))
    assert result.reports[0].stored == clean.reports[0].stored == 1200


@pytest.mark.parametrize("kind", ["drop", "rate_limit", "malformed"])
def test_exhausted_retries_leave_the_previous_file_and_no_temp_files(binance, tmp_path, kind):
    store = MarketDataStore(tmp_path)
    fetch_all(ccxt_source(binance), store)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    binance.extend("BTCUSDT", "1h", 1500)  # two pages: the first comes through, then the exchange fails for good
    binance.faults.arm(kind, times=1000, path="/api/v3/klines", after=1)
    result = fetch_all(ccxt_source(binance, attempts=3), store)
    assert set(result.failures) == {"BTC/USDT", "ETH/USDT"} and not result.reports
    assert "failed 3 times" in result.failures["BTC/USDT"]
    assert ("malformed payload" in result.failures["BTC/USDT"]) == (kind == "malformed")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # same files, same bytes, no temp file


def test_gaps_and_duplicates_are_reported_not_filled(binance, tmp_path):
    rows = binance.klines[("BTCUSDT", "1h")]
    del rows[100:103]  # a gap of three hours
    rows[200], rows[201] = rows[201], rows[200]  # out of order: ccxt sorts a page itself, so nothing to report
    rows.insert(300, list(rows[299]))  # a repeat
    result = fetch_all(ccxt_source(binance), MarketDataStore(tmp_path), symbols=["BTC/USDT"])
    (report,) = result.reports
    assert (report.duplicates, report.out_of_order, report.stored) == (1, 0, 1197)
    assert [(g.missing, g.before - g.after) for g in report.gaps] == [(3, pd.Timedelta(hours=4))]
    bars = LocalStoreProvider(tmp_path).get_bars("BTC/USDT", timeframe="1h")
    assert bars["timestamp"].is_monotonic_increasing and bars["timestamp"].is_unique and len(bars) == 1197


def test_unknown_exchange_symbol_and_timeframe_name_the_field(binance, tmp_path):
    with pytest.raises(InvalidInput) as err:
        CCXTSource("binanze")
    assert err.value.field == "exchange" and "binance" in err.value.message and "kraken" in err.value.message
    source = ccxt_source(binance)
    with pytest.raises(InvalidInput) as err:
        download(source, MarketDataStore(tmp_path), ["BTC/USDT", "XRP/USDT"], "1h", START)
    assert err.value.field == "symbols" and "XRP/USDT" in err.value.message and "BTC/USDT" in err.value.message
    with pytest.raises(InvalidInput) as err:
        download(source, MarketDataStore(tmp_path), ["BTC/USDT"], "7m", START)
    assert err.value.field == "timeframe" and "1m, 3m" in err.value.message
    with pytest.raises(InvalidInput) as err:
        CCXTSource("kraken").check(["BTC/USD"], "3m")  # no request: ccxt knows kraken's timeframes
    assert err.value.field == "timeframe" and "kraken has no '3m'" in err.value.message and "1m, 5m" in err.value.message
    assert not list(tmp_path.iterdir()) and not binance.seen("/api/v3/klines")  # refused before any candle was asked for


# ---- alpaca-py against the local Alpaca -------------------------------------------------
def test_alpaca_provider_reads_daily_and_hourly_bars(alpaca, tmp_path):
    source = AlpacaSource(KEY_ID, SECRET, url=alpaca.url, backoff=0.001)
    store = MarketDataStore(tmp_path)
    daily = download(source, store, ["AAPL", "MSFT"], "1d", pd.Timestamp("2024-01-01"))
    hourly = download(source, store, ["MSFT"], "1h", pd.Timestamp("2024-01-01"))
    assert daily.ok and hourly.ok and [r.stored for r in daily.reports + hourly.reports] == [60, 60, 420]
    assert all(not r.gaps for r in daily.reports + hourly.reports)  # business days: weekends are no gaps
    local = LocalStoreProvider(tmp_path)
    aapl = local.get_bars("AAPL")
    # the hand-written rows: t at midnight New York (05:00 UTC) is the session date
    assert aapl["timestamp"].iloc[:3].tolist() == [pd.Timestamp(d) for d in ("2024-01-02", "2024-01-03", "2024-01-04")]
    assert aapl["close"].iloc[:3].tolist() == [185.64, 184.25, 181.91]
    assert local.calendar_of("AAPL") == "exchange"
    seen = alpaca.seen("/v2/stocks/bars")[0]
    assert seen.query["timeframe"] == "1Day" and seen.query["adjustment"] == "all" and seen.headers["apca-api-key-id"] == KEY_ID
    # an adjusted history that moved (a split) is not appended to
    alpaca.bars[("AAPL", "1Day")][-1]["c"] /= 2
    alpaca.bars[("AAPL", "1Day")].append({**alpaca.bars[("AAPL", "1Day")][-1], "t": "2024-03-26T04:00:00Z"})
    again = download(source, store, ["AAPL"], "1d", pd.Timestamp("2024-01-01"))
    assert "revised" in again.failures["AAPL"] and local.get_bars("AAPL").shape == aapl.shape


def test_alpaca_retries_faults_and_names_bad_keys_and_pairs(alpaca, tmp_path):
    alpaca.faults.arm("server_error", path="/v2/stocks/bars")
    alpaca.faults.arm("drop", path="/v2/stocks/bars")
    alpaca.faults.arm("malformed", path="/v2/stocks/bars")
    source = AlpacaSource(KEY_ID, SECRET, url=alpaca.url, backoff=0.001)
    assert download(source, MarketDataStore(tmp_path), ["AAPL"], "1d", pd.Timestamp("2024-01-01")).reports[0].stored == 60
    assert len(alpaca.seen("/v2/stocks/bars")) == 4
    wrong = download(AlpacaSource(KEY_ID, "wrong", url=alpaca.url), MarketDataStore(tmp_path / "x"), ["MSFT"], "1d",
                     pd.Timestamp("2024-01-01"))
    assert "refused the keys" in wrong.failures["MSFT"]
    with pytest.raises(InvalidInput) as err:
        AlpacaSource(None, None)
    assert err.value.field == "ALPACA_API_KEY"
    with pytest.raises(InvalidInput) as err:
        download(source, MarketDataStore(tmp_path), ["BTC/USD"], "1d", pd.Timestamp("2024-01-01"))
    assert err.value.field == "symbols" and "ccxt" in err.value.message
    unknown = download(source, MarketDataStore(tmp_path), ["ZZZZ"], "1d", pd.Timestamp("2024-01-01"))
    assert "no 1d candles for ZZZZ" in unknown.failures["ZZZZ"] and not (tmp_path / "ZZZZ-1d.parquet").exists()


def test_out_of_order_and_repeated_bars_from_alpaca_are_sorted_and_reported(alpaca, tmp_path):
    bars = alpaca.bars[("MSFT", "1Day")]
    bars[10], bars[11] = bars[11], bars[10]
    bars.insert(20, dict(bars[19]))
    del bars[30]  # a missing session
    report = download(AlpacaSource(KEY_ID, SECRET, url=alpaca.url), MarketDataStore(tmp_path), ["MSFT"], "1d",
                      pd.Timestamp("2024-01-01")).reports[0]
    assert (report.out_of_order, report.duplicates, report.stored, report.missing) == (1, 1, 59, 1)
    stored = LocalStoreProvider(tmp_path).get_bars("MSFT")
    assert stored["timestamp"].is_monotonic_increasing and stored["timestamp"].is_unique


def test_an_unreadable_file_fails_its_symbol_only_and_is_left_alone(binance, tmp_path):
    (tmp_path / "BTC_USDT-1h.parquet").write_bytes(b"PAR1 not really")
    result = fetch_all(ccxt_source(binance), MarketDataStore(tmp_path))
    assert "unreadable" in result.failures["BTC/USDT"] and [r.symbol for r in result.reports] == ["ETH/USDT"]
    assert (tmp_path / "BTC_USDT-1h.parquet").read_bytes() == b"PAR1 not really"
