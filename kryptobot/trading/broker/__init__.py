"""Brokers: where the trader's orders go, all keeping the same ledger (SQLite, or PostgreSQL).

* :class:`PaperBroker` (``broker: "paper"``, the default): fills at the decided price plus
  slippage, offline.
* :class:`~kryptobot.trading.broker.ccxt_live.CcxtBroker` (``broker: "ccxt"``): spot market
  orders on a crypto exchange through ccxt, its testnet unless ``sandbox`` is false; only
  with the exchange's API credentials in the environment.

:func:`open_broker` builds the one ``trader_settings.json`` asks for; ccxt is imported only
for the live broker.
"""
from __future__ import annotations

from pathlib import Path

from kryptobot.trading.broker.base import Broker, Fill
from kryptobot.trading.broker.ledger import KEEP_DECISIONS, Ledger
from kryptobot.trading.broker.paper import PaperBroker
from kryptobot.trading.settings import TraderSettings

__all__ = ["KEEP_DECISIONS", "Broker", "Fill", "Ledger", "PaperBroker", "open_broker"]


def open_broker(trader: TraderSettings, ledger_path: Path | str, *, api_key: str | None = None, secret: str | None = None,
                password: str | None = None, ccxt_config: dict | None = None, database_url: str | None = None,
                keep_decisions: int = KEEP_DECISIONS) -> Broker:
    """The broker ``trader.broker`` names, on the ledger at ``ledger_path`` (or in the
    PostgreSQL database ``database_url``), keeping ``keep_decisions`` decision rows.

    A live broker without its credentials (or on an unknown exchange) is a ConfigError
    naming what is missing, so the trader does not start half-configured.
    """
    if trader.broker == "paper":
        return PaperBroker(ledger_path, trader.initial_cash, trader.commission, trader.slippage, database_url=database_url,
                           keep_decisions=keep_decisions)
    from kryptobot.trading.broker.ccxt_live import open_ccxt_broker

    return open_ccxt_broker(trader, ledger_path, api_key=api_key, secret=secret, password=password, config=ccxt_config,
                            database_url=database_url, keep_decisions=keep_decisions)
