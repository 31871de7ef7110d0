"""The paper broker's ledger: atomic, idempotent, durable."""
from __future__ import annotations

import pytest

from kryptobot.errors import Conflict
from kryptobot.trading.broker import PaperBroker


def test_orders_are_idempotent_and_survive_a_restart(tmp_path):
    path = tmp_path / "ledger.sqlite"
    broker = PaperBroker(path, 10_000, commission=0.001, slippage=0.0)
    first = broker.submit("SPY:2024-01-02:buy", "SPY", "buy", 10, 100.0)
    again = broker.submit("SPY:2024-01-02:buy", "SPY", "buy", 10, 100.0)
    assert again.duplicate and again.order_id == first.order_id
    assert broker.positions()["SPY"]["quantity"] == 10
    assert broker.cash() == pytest.approx(10_000 - 1000 - 1.0)
    broker.close()
    reopened = PaperBroker(path, 50_000, commission=0.001, slippage=0.0)  # initial cash only applies once
    assert reopened.cash() == pytest.approx(8999.0)
    assert len(reopened.orders()) == 1
    reopened.submit("SPY:2024-01-03:sell", "SPY", "sell", 10, 110.0)
    assert reopened.positions() == {}
    assert reopened.portfolio()["equity"] == pytest.approx(8999 + 1100 - 1.1)


def test_rejected_orders_change_nothing(tmp_path):
    broker = PaperBroker(tmp_path / "l.sqlite", 1_000, commission=0.0, slippage=0.0)
    with pytest.raises(Conflict):
        broker.submit("a", "SPY", "sell", 1, 100.0)
    with pytest.raises(Conflict):
        broker.submit("b", "SPY", "buy", 100, 100.0)
    assert broker.orders() == [] and broker.cash() == 1_000


def test_slippage_is_paid_on_both_sides(tmp_path):
    broker = PaperBroker(tmp_path / "l.sqlite", 10_000, commission=0.0, slippage=0.01)
    assert broker.submit("a", "SPY", "buy", 1, 100.0).price == pytest.approx(101.0)
    assert broker.submit("b", "SPY", "sell", 1, 100.0).price == pytest.approx(99.0)


def test_two_brokers_on_one_ledger_fill_an_order_once(tmp_path):
    """Two trader processes sharing a ledger (here: two connections, racing threads)."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "shared.sqlite"
    brokers = [PaperBroker(path, 10_000, commission=0.0, slippage=0.0) for _ in range(2)]
    with ThreadPoolExecutor(8) as pool:
        fills = list(pool.map(lambda i: brokers[i % 2].submit("QQQ:2024-01-02:buy", "QQQ", "buy", 5, 100.0), range(8)))
    assert sum(not f.duplicate for f in fills) == 1 and len({f.order_id for f in fills}) == 1
    assert brokers[0].positions()["QQQ"]["quantity"] == 5 and brokers[1].cash() == 9_500


def test_the_ledger_is_in_wal_mode(tmp_path):
    import sqlite3

    PaperBroker(tmp_path / "l.sqlite", 1_000, commission=0.0, slippage=0.0).close()
    assert sqlite3.connect(tmp_path / "l.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_position_keeps_its_barriers_and_entry_bar(tmp_path):
    broker = PaperBroker(tmp_path / "l.sqlite", 10_000, commission=0.0, slippage=0.0)
    broker.submit("a", "SPY", "buy", 10, 100.0, stop=96.0, target=104.0, bar="2024-01-02T00:00:00")
    position = broker.positions()["SPY"]
    assert (position["stop"], position["target"], position["opened_bar"]) == (96.0, 104.0, "2024-01-02T00:00:00")


def test_a_ledger_from_before_alembic_is_adopted_and_migrated(tmp_path):
    import sqlite3

    from kryptobot.trading.broker.database import head_revision
    from tests.services.trader.old_ledger import write_old_ledger

    path = tmp_path / "old.sqlite"
    write_old_ledger(path)
    brokers = [PaperBroker(path, 10_000, commission=0.0, slippage=0.0) for _ in range(2)]  # a second opener finds it done
    position = brokers[1].positions()["SPY"]
    assert position["stop"] is None and position["opened_bar"] == "2024-02-05"
    assert brokers[1].cash() == 9_800 and len(brokers[1].orders()) == 2 and brokers[1].decisions()[0]["symbol"] == "SPY"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
        assert db.execute("SELECT value FROM ledger_meta WHERE key = 'broker'").fetchone() == ("paper",)
    fill = brokers[0].submit("SPY:2024-03-01", "SPY", "sell", 2, 110.0, journal=("c1", {"symbol": "SPY", "action": "sell",
                                                                                     "degraded": False}))
    assert brokers[1].positions() == {} and brokers[1].decisions()[0]["action"] == "sell" and not fill.duplicate
