"""The ledger's tables as SQLAlchemy Core sees them (the head of :mod:`.migrations`).

The migrations create and change the tables; these descriptions are what the ledger's
queries are written against, on SQLite and PostgreSQL alike. A column added here needs a
migration that adds it.
"""
from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Float, Integer, MetaData, Table, Text

metadata = MetaData()

# one row (id 1): every write transaction locks it first on PostgreSQL
account = Table(
    "account", metadata,
    Column("id", Integer, CheckConstraint("id = 1"), primary_key=True, autoincrement=False),
    Column("cash", Float, nullable=False),
    Column("initial_cash", Float, nullable=False),
)

orders = Table(
    "orders", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_order_id", Text, nullable=False, unique=True),
    Column("created_at", Text, nullable=False),
    Column("symbol", Text, nullable=False),
    Column("side", Text, CheckConstraint("side IN ('buy', 'sell')"), nullable=False),
    Column("quantity", Float, CheckConstraint("quantity > 0"), nullable=False),
    Column("price", Float, nullable=False),
    Column("commission", Float, nullable=False),
    Column("status", Text, nullable=False),
    Column("decision", Text),  # JSON: the rules that decided it
    Column("stop", Float),
    Column("target", Float),
    Column("bar", Text),
    Column("venue_order_id", Text),
    sqlite_autoincrement=True,  # ids never reused: a deleted (refused) order's id stays gone
)

fills = Table(
    "fills", metadata,
    Column("order_id", Integer, primary_key=True, autoincrement=False),  # one fill row per order
    Column("filled_at", Text, nullable=False),
    Column("quantity", Float, nullable=False),
    Column("price", Float, nullable=False),
    Column("commission", Float, nullable=False),
)

positions = Table(
    "positions", metadata,
    Column("symbol", Text, primary_key=True),
    Column("quantity", Float, nullable=False),
    Column("avg_price", Float, nullable=False),
    Column("last_price", Float, nullable=False),
    Column("stop", Float),
    Column("target", Float),
    Column("opened_bar", Text),
)

decisions = Table(
    "decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("symbol", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("degraded", Integer, nullable=False),
    Column("body", Text, nullable=False),  # JSON: the whole decision
    Column("order_id", Integer),  # the order it produced, written in the same transaction
    sqlite_autoincrement=True,
)

ledger_meta = Table(
    "ledger_meta", metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)
