"""The paper broker's ledger: atomic, idempotent, durable."""
from __future__ import annotations

import pytest

from kryptobot.errors import Conflict
from services.trader.broker import PaperBroker


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
