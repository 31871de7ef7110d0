"""The paper broker: market orders filled at once at the decided price, on the ledger alone."""
from __future__ import annotations

from pathlib import Path

from kryptobot.errors import InvalidInput
from kryptobot.trading.broker.base import Fill
from kryptobot.trading.broker.ledger import Ledger


class PaperBroker(Ledger):
    """Market orders filled at the given price plus slippage, minus commission.

    Each order is one transaction: the order, its fill, the position and the cash change
    commit together or not at all, and the same ``client_order_id`` never fills twice.
    """

    def __init__(self, path: Path | str, initial_cash: float, commission: float, slippage: float, **ledger):
        super().__init__(path, initial_cash, kind="paper", **ledger)
        self.commission = commission
        self.slippage = slippage

    def submit(self, client_order_id: str, symbol: str, side: str, quantity: float, price: float, decision: dict | None = None,
               stop: float | None = None, target: float | None = None, bar: str | None = None,
               journal: tuple[str, dict] | None = None) -> Fill:
        """Fill a market order now, atomically; the same ``client_order_id`` never fills twice.

        A buy records the position's ``stop`` / ``target`` and the ``bar`` it was opened on;
        ``journal`` (cycle id, decision body) is the decision row written with the order.
        """
        if quantity <= 0 or price <= 0:
            raise InvalidInput(f"order needs quantity > 0 and price > 0, got {quantity} @ {price}", field="quantity")
        fill_price = price * (1 + self.slippage if side == "buy" else 1 - self.slippage)
        commission = abs(quantity * fill_price) * self.commission
        # the duplicate check runs inside the write transaction: another process holding
        # the same ledger cannot slip the same order in between check and insert
        with self._transaction() as db:
            existing = self._order_row(db, client_order_id)
            if existing is not None:
                return self._fill_of(db, existing, duplicate=True)
            self._check_affordable(db, symbol, side, quantity, quantity * fill_price, commission)
            order = self._insert_order(db, client_order_id, symbol, side, quantity, fill_price, commission, "filled",
                                       decision, stop, target, bar, journal)
            self._book_fill(db, order, quantity, fill_price, commission, price)
        return Fill(order["id"], client_order_id, symbol, side, quantity, fill_price, commission)

    def sync(self, prices: dict[str, float]) -> dict:
        """Nothing to sync: the ledger is the account."""
        return {}
