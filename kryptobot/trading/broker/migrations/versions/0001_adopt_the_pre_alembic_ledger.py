"""The ledger as it was before Alembic: created on an empty database, completed on an old one.

Revision ID: 0001
Revises:

Ledgers written before the migrations have no ``alembic_version``; this revision adopts
them: it creates the tables a ledger lacks and adds the columns added since (a position's
barriers and entry bar; what an order needs to be booked when it fills later). A position
gaining its entry bar gets the day of its latest buy (the day is the second part of every
order id), so its time limit still applies; its stop and target were never recorded.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# added after the first ledgers were written: (table, column, type)
LATER_COLUMNS = [
    ("positions", "stop", sa.Float), ("positions", "target", sa.Float), ("positions", "opened_bar", sa.Text),
    ("orders", "stop", sa.Float), ("orders", "target", sa.Float), ("orders", "bar", sa.Text),
    ("orders", "venue_order_id", sa.Text),
]


def _tables() -> dict[str, list[sa.Column]]:
    return {
        "account": [
            sa.Column("id", sa.Integer, sa.CheckConstraint("id = 1"), primary_key=True, autoincrement=False),
            sa.Column("cash", sa.Float, nullable=False),
            sa.Column("initial_cash", sa.Float, nullable=False),
        ],
        "orders": [
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("client_order_id", sa.Text, nullable=False, unique=True),
            sa.Column("created_at", sa.Text, nullable=False),
            sa.Column("symbol", sa.Text, nullable=False),
            sa.Column("side", sa.Text, sa.CheckConstraint("side IN ('buy', 'sell')"), nullable=False),
            sa.Column("quantity", sa.Float, sa.CheckConstraint("quantity > 0"), nullable=False),
            sa.Column("price", sa.Float, nullable=False),
            sa.Column("commission", sa.Float, nullable=False),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("decision", sa.Text),
        ],
        "fills": [
            sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), primary_key=True, autoincrement=False),
            sa.Column("filled_at", sa.Text, nullable=False),
            sa.Column("quantity", sa.Float, nullable=False),
            sa.Column("price", sa.Float, nullable=False),
            sa.Column("commission", sa.Float, nullable=False),
        ],
        "positions": [
            sa.Column("symbol", sa.Text, primary_key=True),
            sa.Column("quantity", sa.Float, nullable=False),
            sa.Column("avg_price", sa.Float, nullable=False),
            sa.Column("last_price", sa.Float, nullable=False),
        ],
        "decisions": [
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("cycle_id", sa.Text, nullable=False),
            sa.Column("created_at", sa.Text, nullable=False),
            sa.Column("symbol", sa.Text, nullable=False),
            sa.Column("action", sa.Text, nullable=False),
            sa.Column("degraded", sa.Integer, nullable=False),
            sa.Column("body", sa.Text, nullable=False),
        ],
        "ledger_meta": [
            sa.Column("key", sa.Text, primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        ],
    }


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, columns in _tables().items():
        if name not in existing:
            # ids never reused on SQLite either (AUTOINCREMENT), as the first ledgers had it
            op.create_table(name, *columns, sqlite_autoincrement=name in ("orders", "decisions"))
    added = set()
    for table, column, type_ in LATER_COLUMNS:
        have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
        if column not in have:
            op.add_column(table, sa.Column(column, type_))
            added.add((table, column))
    if ("positions", "opened_bar") in added and "positions" in existing:
        op.execute(
            "UPDATE positions SET opened_bar = (SELECT substr(o.client_order_id, length(o.symbol) + 2, 10) "
            "FROM orders o WHERE o.symbol = positions.symbol AND o.side = 'buy' ORDER BY o.id DESC LIMIT 1)"
        )
