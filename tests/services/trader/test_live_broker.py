"""The live broker over ccxt against a local Binance spot API (no network).

ccxt's own binance client, in sandbox mode, signs and sends every request to
:class:`tests.fakes.exchange_orders.FakeBinanceOrders` through its URL override; the fake
answers in Binance's wire format and checks the signatures.
"""
from __future__ import annotations

import json
import re

import httpx
import pytest

from kryptobot.errors import Conflict, InvalidInput, ServiceUnavailable
from kryptobot.settings import ConfigError
from kryptobot.trading.broker import PaperBroker, open_broker
from kryptobot.trading.broker.ccxt_live import (
    OrderOutcomeUnknown,
    open_ccxt_broker,
    venue_client_id,
)
from kryptobot.trading.settings import TraderSettings
from tests.fakes.exchange_orders import API_KEY, SECRET, FakeBinanceOrders

BINANCE_CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")  # newClientOrderId, per Binance's docs
LIVE = TraderSettings(watchlist=["BTC/USDT", "ETH/USDT"], broker="ccxt", exchange="binance", sandbox=True, commission=0.001)


@pytest.fixture
def fake():
    with FakeBinanceOrders(candles=50, balances={"USDT": 10_000.0}) as server:
        yield server


def live(fake: FakeBinanceOrders, path, **options):
    """A live broker on ``path`` talking to ``fake``; retries without waiting."""
    options = {"attempts": 2, "sleep": lambda seconds: None, **options}
    return open_ccxt_broker(LIVE, path, api_key=API_KEY, secret=SECRET, config=fake.ccxt_config(), **options)


def order_posts(fake: FakeBinanceOrders) -> list:
    return [r for r in fake.seen("/api/v3/order") if r.method == "POST"]


def ledger(broker) -> dict:
    """The ledger's records without the fields that differ by time or venue."""
    return {
        "orders": [{k: v for k, v in o.items() if k not in ("created_at", "venue_order_id")} for o in broker.orders()],
        "fills": [{k: v for k, v in f.items() if k != "filled_at"} for f in broker.fills()],
        "positions": broker.positions(),
        "cash": broker.cash(),
    }


def test_an_order_fills_with_the_same_ledger_records_as_paper(fake, tmp_path):
    broker = live(fake, tmp_path / "live.sqlite", unknown_grace_seconds=0)
    paper = PaperBroker(tmp_path / "paper.sqlite", LIVE.initial_cash, commission=fake.fee_rate, slippage=0.0)
    price = fake.price("BTCUSDT")
    for b in (broker, paper):
        b.submit("BTC/USDT:2024-01-02", "BTC/USDT", "buy", 0.05, price, decision={"rules": ["technical_buy"]},
                 stop=price * 0.95, target=price * 1.1, bar="2024-01-02T00:00:00")
        b.submit("BTC/USDT:2024-01-03", "BTC/USDT", "sell", 0.02, price, decision={"rules": ["target"]})
    live_records, paper_records = ledger(broker), ledger(paper)
    assert [o["status"] for o in live_records["orders"]] == ["filled", "filled"]
    assert _approx_equal(live_records, paper_records), (live_records, paper_records)

    sent = fake.order_requests[0]  # ccxt's request, as Binance receives it (signed: the fake checks)
    assert {k: sent[k] for k in ("symbol", "side", "type", "quantity", "newOrderRespType")} == {
        "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.05", "newOrderRespType": "FULL"}
    assert order_posts(fake)[0].headers["x-mbx-apikey"] == API_KEY
    placed = fake.placed()
    assert [o["clientOrderId"] for o in placed] == [venue_client_id("BTC/USDT:2024-01-02"), venue_client_id("BTC/USDT:2024-01-03")]
    assert [(o["side"], o["origQty"], o["status"]) for o in placed] == [("BUY", 0.05, "FILLED"), ("SELL", 0.02, "FILLED")]


def _approx_equal(a, b) -> bool:
    """Equal records, numbers to 1e-6 relative: Binance rounds to 8 decimals (and pytest.approx
    does not nest into lists of dicts)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_approx_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_approx_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-6)
    return a == b


def test_a_submitted_order_is_never_sent_twice(fake, tmp_path):
    broker = live(fake, tmp_path / "l.sqlite")
    first = broker.submit("BTC/USDT:2024-01-02", "BTC/USDT", "buy", 0.01, fake.price("BTCUSDT"))
    again = broker.submit("BTC/USDT:2024-01-02", "BTC/USDT", "buy", 0.01, fake.price("BTCUSDT"))
    assert again.duplicate and (again.order_id, again.quantity, again.price) == (first.order_id, first.quantity, first.price)
    assert len(order_posts(fake)) == 1 and len(broker.orders()) == 1


def test_a_partial_fill_books_what_filled_and_the_rest_expires(fake, tmp_path):
    broker = live(fake, tmp_path / "l.sqlite")
    fake.liquidity["BTCUSDT"] = 0.02  # the book runs out: Binance expires the rest of a market order
    fill = broker.submit("BTC/USDT:2024-01-02", "BTC/USDT", "buy", 0.05, fake.price("BTCUSDT"))
    assert fill.quantity == pytest.approx(0.02)
    order = broker.orders()[0]
    assert (order["status"], order["quantity"]) == ("partial", 0.05)  # what was asked for, and what became of it
    assert broker.fills()[0]["quantity"] == pytest.approx(0.02)
    assert broker.positions()["BTC/USDT"]["quantity"] == pytest.approx(0.02)
    assert fake.placed()[0]["status"] == "EXPIRED"


def test_a_partial_fill_still_working_is_cancelled_and_its_trades_fetched(fake, tmp_path):
    broker = live(fake, tmp_path / "l.sqlite")
    fake.liquidity["ETHUSDT"], fake.market_rest = 0.3, True  # the rest would keep working into later bars
    fill = broker.submit("ETH/USDT:2024-01-02", "ETH/USDT", "buy", 1.0, fake.price("ETHUSDT"))
    assert fill.quantity == pytest.approx(0.3)
    assert fake.placed()[0]["status"] == "CANCELED"
    assert [r.method for r in fake.seen("/api/v3/order")] == ["POST", "DELETE", "GET"]
    assert fake.seen("/api/v3/myTrades"), "the fills of a cancelled order come from the trade list"
    assert fill.commission == pytest.approx(0.3 * fake.fee_rate * fake.price("ETHUSDT"))  # charged in ETH, booked in USDT
    assert broker.orders()[0]["status"] == "partial"
    assert fake.seen("/api/v3/openOrders") == [] and not [o for o in fake.placed() if o["status"] == "PARTIALLY_FILLED"]


def test_a_dropped_acknowledgement_is_resolved_by_looking_the_order_up(fake, tmp_path):
    broker = live(fake, tmp_path / "l.sqlite")
    fake.faults.arm("drop", path="/api/v3/order")  # the order is placed, its answer cut mid-body
    fill = broker.submit("BTC/USDT:2024-01-02", "BTC/USDT", "buy", 0.01, fake.price("BTCUSDT"))
    assert fill.quantity == pytest.approx(0.01) and not fill.duplicate
    assert len(order_posts(fake)) == 1 and len(fake.placed()) == 1
    lookup = next(r for r in fake.seen("/api/v3/order") if r.method == "GET")
    assert lookup.query["origClientOrderId"] == venue_client_id("BTC/USDT:2024-01-02")


def test_a_crash_between_send_and_acknowledgement_is_reconciled_after_a_restart(fake, tmp_path):
    path = tmp_path / "l.sqlite"
    broker = live(fake, path)
    price = fake.price("BTCUSDT")
    # the order is placed and its answer lost; the exchange then fails every lookup, as if
    # the trader had died right after sending
    fake.faults.arm("drop", path="/api/v3/order")
    fake.faults.arm("server_error", times=2, path="/api/v3/order")
    with pytest.raises(OrderOutcomeUnknown, match="outcome unknown after NetworkError, and the lookup failed .*fetch_order"):
        broker.submit("BTC/USDT:2024-01-02", "BTC/USDT", "buy", 0.05, price, stop=price * 0.9, bar="2024-01-02T00:00:00",
                      journal=("cycle-1", {"symbol": "BTC/USDT", "action": "buy", "degraded": False}))
    assert [o["status"] for o in broker.orders()] == ["sent"]  # written before it was sent, outcome unknown
    assert broker.positions() == {} and broker.fills() == []
    assert _decision_links(path) == [("cycle-1", broker.orders()[0]["id"])]  # written with the sent row
    broker.close()

    restarted = live(fake, path)  # a new process on the same ledger
    report = restarted.sync({})
    assert report["orders"] == {"BTC/USDT:2024-01-02": "filled"}
    assert len(order_posts(fake)) == 1 and len(fake.placed()) == 1, "reconciled by querying, never by sending again"
    position = restarted.positions()["BTC/USDT"]
    assert position["quantity"] == pytest.approx(0.05 * (1 - fake.fee_rate))  # the balance, net of the fee paid in BTC
    assert (position["stop"], position["opened_bar"]) == (pytest.approx(price * 0.9), "2024-01-02T00:00:00")
    assert restarted.cash() == pytest.approx(fake.balance("USDT"))
    again = restarted.submit("BTC/USDT:2024-01-02", "BTC/USDT", "buy", 0.05, price)  # the cycle retried
    assert again.duplicate and len(order_posts(fake)) == 1


def _decision_links(path) -> list[tuple]:
    """(cycle id, order id) of each decision row in the ledger at ``path``."""
    import sqlite3

    with sqlite3.connect(path) as db:
        return db.execute("SELECT cycle_id, order_id FROM decisions ORDER BY id").fetchall()


def test_an_order_the_exchange_never_got_is_marked_missing_not_resent(fake, tmp_path):
    broker = live(fake, tmp_path / "l.sqlite", unknown_grace_seconds=0)
    fake.faults.arm("server_error", path="/api/v3/order")  # a 5xx before the order reached the engine
    with pytest.raises(OrderOutcomeUnknown):
        broker.submit("BTC/USDT:2024-01-02", "BTC/USDT", "buy", 0.01, fake.price("BTCUSDT"))
    assert broker.sync({})["orders"] == {"BTC/USDT:2024-01-02": "missing"}
    with pytest.raises(Conflict, match="missing with nothing filled"):
        broker.submit("BTC/USDT:2024-01-02", "BTC/USDT", "buy", 0.01, fake.price("BTCUSDT"))
    assert len(order_posts(fake)) == 1 and fake.placed() == []


def test_an_unknown_order_waits_for_the_grace_period_before_it_is_missing(fake, tmp_path):
    broker = live(fake, tmp_path / "l.sqlite", unknown_grace_seconds=3600)
    fake.faults.arm("server_error", path="/api/v3/order")
    with pytest.raises(OrderOutcomeUnknown):
        broker.submit("BTC/USDT:2024-01-02", "BTC/USDT", "buy", 0.01, fake.price("BTCUSDT"))
    report = broker.sync({})
    assert report["pending"] == ["BTC/USDT:2024-01-02"] and broker.orders()[0]["status"] == "sent"


def test_an_order_the_exchange_refuses_changes_nothing(fake, tmp_path):
    broker = live(fake, tmp_path / "l.sqlite")  # the ledger still believes in its initial 100k
    with pytest.raises(Conflict, match="InsufficientFunds"):
        broker.submit("BTC/USDT:2024-01-02", "BTC/USDT", "buy", 1.0, fake.price("BTCUSDT"),
                      journal=("cycle-1", {"symbol": "BTC/USDT", "action": "buy", "degraded": False}))
    assert broker.orders() == [] and broker.positions() == {} and fake.placed() == []
    assert _decision_links(tmp_path / "l.sqlite") == [("cycle-1", None)]  # the decision stays, without an order
    with pytest.raises(InvalidInput, match="minimum amount"):
        broker.submit("BTC/USDT:2024-01-03", "BTC/USDT", "buy", 1e-7, fake.price("BTCUSDT"))
    assert broker.orders() == [] and len(order_posts(fake)) == 1


def test_balances_and_positions_are_synced_from_the_exchange(fake, tmp_path):
    fake.balances.update({"USDT": {"free": 4000.0, "locked": 1000.0}, "BTC": {"free": 0.3, "locked": 0.0}})
    broker = live(fake, tmp_path / "l.sqlite")
    prices = {"BTC/USDT": fake.price("BTCUSDT"), "ETH/USDT": fake.price("ETHUSDT")}
    report = broker.sync(prices)
    assert report["cash"] == 5000.0 and report["positions"] == {"BTC/USDT": 0.3}
    position = broker.positions()["BTC/USDT"]  # a holding the ledger did not know: adopted at the close
    assert (position["quantity"], position["avg_price"], position["stop"]) == (0.3, prices["BTC/USDT"], None)
    portfolio = broker.portfolio()
    assert portfolio["initial_cash"] == pytest.approx(5000 + 0.3 * prices["BTC/USDT"]) and portfolio["return"] == pytest.approx(0)

    fake.balances["BTC"]["free"] = 0.5  # a deposit
    broker.sync(prices)
    assert broker.positions()["BTC/USDT"]["quantity"] == 0.5
    assert broker.positions()["BTC/USDT"]["avg_price"] == prices["BTC/USDT"]
    fake.balances["BTC"]["free"] = 0.000001  # dust below the market's minimum amount
    broker.sync(prices)
    assert broker.positions() == {}


def test_reads_are_retried_with_backoff_then_fail_clearly(fake, tmp_path):
    waits = []
    broker = live(fake, tmp_path / "l.sqlite", attempts=3, backoff=0.25, sleep=waits.append)
    fake.faults.arm("rate_limit", times=2, path="/api/v3/account")
    assert broker.sync({})["cash"] == 10_000.0
    assert len(fake.seen("/api/v3/account")) == 3 and waits == [0.25, 0.5]
    fake.faults.arm("server_error", times=3, path="/api/v3/account")
    with pytest.raises(ServiceUnavailable, match=r"fetch_balance failed 3 times; last: OperationFailed: .*Internal error"):
        broker.sync({})


def test_the_exchange_client_order_id_fits_binance():
    ids = {venue_client_id(f"{s}:2024-01-{d:02d}T00:00:00") for s in ("BTC/USDT", "ETH/USDT", "A" * 40) for d in range(1, 29)}
    assert len(ids) == 3 * 28 and all(BINANCE_CLIENT_ID.match(i) and len(i) <= 32 and i.isalnum() for i in ids)
    assert venue_client_id("BTC/USDT:2024-01-02") == venue_client_id("BTC/USDT:2024-01-02")


def test_live_trading_needs_the_setting_and_the_credentials(fake, tmp_path):
    assert isinstance(open_broker(TraderSettings(), tmp_path / "paper.sqlite"), PaperBroker)  # the default: offline
    with pytest.raises(ConfigError, match="KRYPTOBOT_EXCHANGE_API_KEY and KRYPTOBOT_EXCHANGE_SECRET are not set"):
        open_broker(LIVE, tmp_path / "l.sqlite")
    with pytest.raises(ConfigError, match=r"but KRYPTOBOT_EXCHANGE_SECRET is not set"):
        open_broker(LIVE, tmp_path / "l.sqlite", api_key=API_KEY)
    with pytest.raises(ConfigError, match=r"key 'exchange': ccxt has no exchange 'nosuchx'; allowed: .*binance"):
        open_broker(LIVE.model_copy(update={"exchange": "nosuchx"}), tmp_path / "l.sqlite", api_key="k", secret="s")
    with pytest.raises(ConfigError, match=r"key 'watchlist'.*one quote currency"):
        open_broker(LIVE.model_copy(update={"watchlist": ["BTC/USDT", "ETH/BTC"]}), tmp_path / "l.sqlite", api_key="k", secret="s")
    assert fake.requests == []


def test_a_ledger_belongs_to_one_broker(fake, tmp_path):
    PaperBroker(tmp_path / "l.sqlite", 1000, commission=0.0, slippage=0.0).close()
    with pytest.raises(ConfigError, match="belongs to the paper broker, not ccxt:binance:sandbox"):
        live(fake, tmp_path / "l.sqlite")


def test_the_trader_refuses_to_start_live_without_credentials(start_server, tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "trader_settings.json").write_text(json.dumps({"watchlist": ["BTC/USDT"], "broker": "ccxt"}))
    with pytest.raises(RuntimeError, match="KRYPTOBOT_EXCHANGE_API_KEY and KRYPTOBOT_EXCHANGE_SECRET are not set"):
        start_server("services.trader.app:create_app", env={"KRYPTOBOT_CONFIG_DIR": str(config),
                                                             "KRYPTOBOT_LEDGER_PATH": str(tmp_path / "l.sqlite")})


def test_the_trader_syncs_its_live_account_at_start(start_server, fake, tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "trader_settings.json").write_text(json.dumps({"watchlist": ["BTC/USDT"], "broker": "ccxt", "exchange": "binance"}))
    fake.balances["USDT"]["free"] = 1234.5
    server = start_server("services.trader.app:create_app", env={
        "KRYPTOBOT_CONFIG_DIR": str(config), "KRYPTOBOT_LEDGER_PATH": str(tmp_path / "l.sqlite"),
        "KRYPTOBOT_EXCHANGE_API_KEY": API_KEY, "KRYPTOBOT_EXCHANGE_SECRET": SECRET,
        "KRYPTOBOT_CCXT_CONFIG": json.dumps(fake.ccxt_config())})
    portfolio = httpx.get(f"{server.url}/portfolio", timeout=10).json()
    assert portfolio["cash"] == 1234.5 and portfolio["initial_cash"] == 1234.5
    assert fake.seen("/api/v3/account")[0].headers["x-mbx-apikey"] == API_KEY
