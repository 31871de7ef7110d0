"""A ledger as the trader wrote it before Alembic: raw SQLite, no ``alembic_version``, none
of the columns added since (a position's barriers and entry bar, an order's barriers,
bar and venue id), no ``ledger_meta``."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

OLD_SCHEMA = """
CREATE TABLE account (id INTEGER PRIMARY KEY CHECK (id = 1), cash REAL NOT NULL, initial_cash REAL NOT NULL);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT, client_order_id TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL,
    symbol TEXT NOT NULL, side TEXT NOT NULL CHECK (side IN ('buy', 'sell')), quantity REAL NOT NULL CHECK (quantity > 0),
    price REAL NOT NULL, commission REAL NOT NULL, status TEXT NOT NULL, decision TEXT
);
CREATE TABLE fills (
    order_id INTEGER PRIMARY KEY REFERENCES orders(id),
    filled_at TEXT NOT NULL, quantity REAL NOT NULL, price REAL NOT NULL, commission REAL NOT NULL
);
CREATE TABLE positions (symbol TEXT PRIMARY KEY, quantity REAL NOT NULL, avg_price REAL NOT NULL, last_price REAL NOT NULL);
CREATE TABLE decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, cycle_id TEXT NOT NULL, created_at TEXT NOT NULL, symbol TEXT NOT NULL,
    action TEXT NOT NULL, degraded INTEGER NOT NULL, body TEXT NOT NULL
);
"""


def write_old_ledger(path: Path, cash: float = 9_800.0) -> None:
    """An old ledger holding 2 SPY bought on two days (the old order ids: symbol:day:side)
    and one decision."""
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO account VALUES (1, ?, 10000)", (cash,))
        db.execute("INSERT INTO positions VALUES ('SPY', 2, 100, 100)")
        for day in ("2024-01-02", "2024-02-05"):
            db.execute("INSERT INTO orders (client_order_id, created_at, symbol, side, quantity, price, commission, status) "
                       "VALUES (?, 'x', 'SPY', 'buy', 1, 100, 0, 'filled')", (f"SPY:{day}:buy",))
        db.execute("INSERT INTO decisions (cycle_id, created_at, symbol, action, degraded, body) VALUES ('c0', 'x', 'SPY', 'buy', 0, ?)",
                   (json.dumps({"symbol": "SPY", "action": "buy"}),))
    db.close()
