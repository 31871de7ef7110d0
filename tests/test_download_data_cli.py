"""``kryptobot download-data`` end to end: typer's runner, ccxt and alpaca-py talking real HTTP
to the local Binance and Alpaca servers, the store on disk."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from kryptobot.data.local_store import LocalStoreProvider
from services.cli import app
from tests.fakes.alpaca import KEY_ID, SECRET, FakeAlpaca
from tests.fakes.exchange import FakeBinance

runner = CliRunner()


@pytest.fixture
def binance_env():
    with FakeBinance() as fake:
        yield fake, {"KRYPTOBOT_CCXT_CONFIG": json.dumps(fake.ccxt_config())}


def test_download_then_update_crypto_pairs(binance_env, tmp_path):
    fake, env = binance_env
    args = ["download-data", "--exchange", "binance", "--symbols", "BTC/USDT,ETH/USDT", "--timeframe", "1h",
            "--start", "2024-01-01", "--datadir", str(tmp_path)]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "BTC/USDT 1h: +1200 candle(s), 1200 stored" in out and "ETH/USDT 1h: +1200 candle(s)" in out
    assert "0 gap(s)" in out and str(tmp_path / "BTC_USDT-1h.parquet") in "".join(out.split())  # rich wraps long paths
    fake.extend("BTCUSDT", "1h", 24)
    del fake.klines[("BTCUSDT", "1h")][-10:-8]  # the exchange lost two of the new hours
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "BTC/USDT 1h: +22 candle(s), 1222 stored" in out and "ETH/USDT 1h: +0 candle(s), 1200 stored" in out
    assert "1 gap(s) (2 missing)" in out and "2 candle(s) missing (not filled)" in out
    assert len(LocalStoreProvider(tmp_path).get_bars("BTC/USDT", timeframe="1h")) == 1222


@pytest.mark.parametrize(("args", "message"), [
    (["--symbols", "XRP/USDT"], "symbols: binance has no market 'XRP/USDT'"),
    (["--symbols", "BTC/USDT", "--timeframe", "7m"], "timeframe: unknown timeframe '7m'; allowed: 1m, 3m"),
    (["--symbols", "BTC/USDT", "--exchange", "binanze"], "exchange: unknown exchange 'binanze'; ccxt supports:"),
    (["--symbols", "../../etc/passwd"], "symbols: malformed symbol '../../etc/passwd'"),
    (["--symbols", "BTC/USDT", "--start", "soon"], "start: --start must be a date"),
    (["--symbols", "BTC/USDT", "--start", "2024-01-01", "--days", "3"], "days: give --start or --days, not both"),
    (["--symbols", "BTC/USDT", "--source", "alpaca"], "ALPACA_API_KEY: Alpaca needs ALPACA_API_KEY"),
])
def test_bad_input_exits_1_naming_the_field_and_writes_nothing(binance_env, tmp_path, args, message):
    fake, env = binance_env
    result = runner.invoke(app, ["download-data", "--datadir", str(tmp_path), *args],
                           env={**env, "ALPACA_API_KEY": None, "ALPACA_SECRET_KEY": None})
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split())
    assert not list(tmp_path.iterdir()) and not fake.seen("/api/v3/klines")


def test_download_stock_bars_from_alpaca(tmp_path):
    with FakeAlpaca() as fake:
        env = {"ALPACA_API_KEY": KEY_ID, "ALPACA_SECRET_KEY": SECRET, "KRYPTOBOT_ALPACA_DATA_URL": fake.url}
        result = runner.invoke(app, ["download-data", "--source", "alpaca", "--symbols", "AAPL MSFT", "--timeframe", "1d",
                                     "--start", "2024-01-01", "--end", "2024-02-29", "--datadir", str(tmp_path)], env=env)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "AAPL 1d: +43 candle(s), 43 stored (2024-01-02 00:00 .. 2024-02-29 00:00)" in out
    assert LocalStoreProvider(tmp_path).symbols() == ["AAPL", "MSFT"]
