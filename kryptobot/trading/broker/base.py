"""What the trader needs of a broker: one interface for the paper ledger and the exchanges."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Fill:
    """An order as the broker filled it: the quantity filled, its average price (slippage
    included), the commission in the quote currency; ``duplicate`` when the same order id
    had been submitted before."""

    order_id: int
    client_order_id: str
    symbol: str
    side: str
    quantity: float
    price: float
    commission: float
    duplicate: bool = False


class Broker(Protocol):
    """Where the trader's orders go; every broker keeps the same ledger (see
    :mod:`kryptobot.trading.broker.ledger`).

    ``client_order_id`` is the trader's id of an order (``<symbol>:<bar>``): submitting it
    again never trades again. Errors are KryptoErrors: InvalidInput for an order that
    cannot be sent, Conflict when it is refused (no cash, nothing to sell, the exchange
    said no), ServiceUnavailable when its outcome is not known yet.
    """

    kind: str

    def submit(self, client_order_id: str, symbol: str, side: str, quantity: float, price: float, decision: dict | None = None,
               stop: float | None = None, target: float | None = None, bar: str | None = None,
               journal: tuple[str, dict] | None = None) -> Fill:
        """A market order of ``quantity`` decided at ``price``; a buy records the position's
        ``stop`` / ``target`` and the ``bar`` it was opened on. ``journal`` (cycle id,
        decision body): the decision row, written in the transaction that writes the order
        (not for a duplicate), so an order never exists without its decision."""

    def sync(self, prices: dict[str, float]) -> dict:
        """Bring the ledger in line with the venue before deciding: resolve orders whose
        outcome is unknown, take cash and holdings from the account (``prices``: the
        latest closes, for holdings the ledger did not know). What changed, as a dict."""

    def mark(self, prices: dict[str, float]) -> None: ...

    def record_decision(self, cycle_id: str, decision: dict) -> None:
        """Record the cycle's decision on ``decision["symbol"]``, completing the row its order's
        transaction wrote (``submit(journal=...)``) rather than adding another."""

    def has_order(self, client_order_id: str) -> bool: ...

    def last_traded_bar(self) -> str | None: ...

    def fills(self, limit: int = 100) -> list[dict]: ...

    def cash(self) -> float: ...

    def positions(self) -> dict[str, dict]: ...

    def orders(self, limit: int = 100) -> list[dict]: ...

    def decisions(self, limit: int = 100) -> list[dict]: ...

    def portfolio(self) -> dict: ...

    def close(self) -> None: ...
