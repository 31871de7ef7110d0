"""A decision row knows the order it produced (written in the same transaction).

Revision ID: 0002
Revises: 0001

``decisions.order_id`` links a decision to its order, so pruning old decisions keeps those
an order refers to.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain integer: SQLite cannot add a column with a foreign key to an existing table
    op.add_column("decisions", sa.Column("order_id", sa.Integer))
    op.create_index("decisions_by_order", "decisions", ["order_id"])
