"""A paper broker whose ledger survives restarts: SQLite in WAL mode.

Each order is one transaction: the order, its fill, the position and the cash change
commit together or not at all. ``client_order_id`` is UNIQUE, so submitting the same
order twice (a retried cycle, a restart mid-cycle) returns the first order instead of
trading again.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from kryptobot.errors import Conflict, InvalidInput
from kryptobot.files import utc_now

SCHEMA = """
CREATE TABLE IF NOT EXISTS account (id INTEGER PRIMARY KEY CHECK (id = 1), cash REAL NOT NULL, initial_cash REAL NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_order_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity REAL NOT NULL CHECK (quantity > 0),
    price REAL NOT NULL,
    commission REAL NOT NULL,
    status TEXT NOT NULL,
    decision TEXT
);
CREATE TABLE IF NOT EXISTS fills (
    order_id INTEGER PRIMARY KEY REFERENCES orders(id),
    filled_at TEXT NOT NULL, quantity REAL NOT NULL, price REAL NOT NULL, commission REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    symbol TEXT PRIMARY KEY, quantity REAL NOT NULL, avg_price REAL NOT NULL, last_price REAL NOT NULL,
    stop REAL, target REAL, opened_bar TEXT
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, cycle_id TEXT NOT NULL, created_at TEXT NOT NULL, symbol TEXT NOT NULL,
    action TEXT NOT NULL, degraded INTEGER NOT NULL, body TEXT NOT NULL
);
"""


POSITION_COLUMNS = {"stop": "REAL", "target": "REAL", "opened_bar": "TEXT"}


@dataclass(frozen=True)
class Fill:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    quantity: float
    price: float
    commission: float
    duplicate: bool = False


class PaperBroker:
    """Market orders filled at the given price plus slippage, minus commission."""

    def __init__(self, path: Path | str, initial_cash: float, commission: float, slippage: float):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.commission = commission
        self.slippage = slippage
        self._lock = threading.Lock()  # one writer at a time in this process; SQLite locks across processes
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a fill reported is a fill on disk
        self._db.executescript(SCHEMA)
        self._migrate()
        self._db.execute("INSERT OR IGNORE INTO account (id, cash, initial_cash) VALUES (1, ?, ?)", (initial_cash, initial_cash))

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        """Ledgers written before positions carried their exit barriers gain the columns.

        In one write transaction, so two traders opening the same old ledger do not both
        add a column. A migrated position's entry bar is the day of its latest buy (the
        day is the second part of every order id), so its time limit still applies; it
        has no stop or target, which were never recorded.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            have = {r["name"] for r in self._db.execute("PRAGMA table_info(positions)")}
            missing = [c for c in POSITION_COLUMNS if c not in have]
            for column in missing:
                self._db.execute(f"ALTER TABLE positions ADD COLUMN {column} {POSITION_COLUMNS[column]}")
            if "opened_bar" in missing:
                self._db.execute(
                    "UPDATE positions SET opened_bar = (SELECT substr(o.client_order_id, length(o.symbol) + 2, 10) "
                    "FROM orders o WHERE o.symbol = positions.symbol AND o.side = 'buy' ORDER BY o.id DESC LIMIT 1)"
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # ---- trading -------------------------------------------------------------------
    def submit(self, client_order_id: str, symbol: str, side: str, quantity: float, price: float, decision: dict | None = None,
               stop: float | None = None, target: float | None = None, bar: str | None = None) -> Fill:
        """Fill a market order now, atomically; the same ``client_order_id`` never fills twice.

        A buy records the position's ``stop`` / ``target`` and the ``bar`` it was opened on.
        """
        if quantity <= 0 or price <= 0:
            raise InvalidInput(f"order needs quantity > 0 and price > 0, got {quantity} @ {price}", field="quantity")
        fill_price = price * (1 + self.slippage if side == "buy" else 1 - self.slippage)
        commission = abs(quantity * fill_price) * self.commission
        with self._lock:
            # the duplicate check runs inside the write transaction: another process holding
            # the same ledger cannot slip the same order in between check and insert
            self._db.execute("BEGIN IMMEDIATE")
            try:
                existing = self._db.execute("SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,)).fetchone()
                if existing is not None:
                    self._db.execute("ROLLBACK")
                    return Fill(existing["id"], client_order_id, existing["symbol"], existing["side"], existing["quantity"],
                                existing["price"], existing["commission"], duplicate=True)
                position = self._db.execute("SELECT * FROM positions WHERE symbol = ?", (symbol,)).fetchone()
                held = position["quantity"] if position else 0.0
                if side == "sell" and quantity > held + 1e-9:
                    raise Conflict(f"cannot sell {quantity} {symbol}: holding {held}", field="quantity")
                cash = self._db.execute("SELECT cash FROM account WHERE id = 1").fetchone()["cash"]
                cost = quantity * fill_price
                delta = -cost - commission if side == "buy" else cost - commission
                if cash + delta < -1e-6:
                    raise Conflict(f"insufficient cash for {quantity} {symbol} @ {fill_price:.4f}", field="quantity")
                cur = self._db.execute(
                    "INSERT INTO orders (client_order_id, created_at, symbol, side, quantity, price, commission, status, decision) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, 'filled', ?)",
                    (client_order_id, utc_now(), symbol, side, quantity, fill_price, commission, json.dumps(decision or {})),
                )
                order_id = cur.lastrowid
                self._db.execute("INSERT INTO fills VALUES (?, ?, ?, ?, ?)", (order_id, utc_now(), quantity, fill_price, commission))
                new_qty = held + quantity if side == "buy" else held - quantity
                if new_qty <= 1e-9:
                    self._db.execute("DELETE FROM positions WHERE symbol = ?", (symbol,))
                else:
                    avg = ((position["avg_price"] * held if position else 0.0) + cost) / new_qty if side == "buy" else position["avg_price"]
                    if side == "buy":
                        self._db.execute(
                            "INSERT INTO positions (symbol, quantity, avg_price, last_price, stop, target, opened_bar) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(symbol) DO UPDATE SET quantity = excluded.quantity, "
                            "avg_price = excluded.avg_price, last_price = excluded.last_price, stop = excluded.stop, "
                            "target = excluded.target, opened_bar = excluded.opened_bar",
                            (symbol, new_qty, avg, price, stop, target, bar),
                        )
                    else:
                        self._db.execute("UPDATE positions SET quantity = ?, last_price = ? WHERE symbol = ?", (new_qty, price, symbol))
                self._db.execute("UPDATE account SET cash = cash + ? WHERE id = 1", (delta,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Fill(order_id, client_order_id, symbol, side, quantity, fill_price, commission)

    def mark(self, prices: dict[str, float]) -> None:
        """Record the latest prices of held symbols (for the portfolio's market value)."""
        with self._lock:
            self._db.executemany("UPDATE positions SET last_price = ? WHERE symbol = ?", [(p, s) for s, p in prices.items()])

    def record_decision(self, cycle_id: str, decision: dict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO decisions (cycle_id, created_at, symbol, action, degraded, body) VALUES (?, ?, ?, ?, ?, ?)",
                (cycle_id, utc_now(), decision["symbol"], decision["action"], int(decision["degraded"]), json.dumps(decision)),
            )

    # ---- reading -------------------------------------------------------------------
    def _rows(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        # under the writer's lock: one connection, so a read must not see half an order
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def has_order(self, client_order_id: str) -> bool:
        return bool(self._rows("SELECT 1 FROM orders WHERE client_order_id = ?", (client_order_id,)))

    def cash(self) -> float:
        return self._rows("SELECT cash FROM account WHERE id = 1")[0]["cash"]

    def positions(self) -> dict[str, dict]:
        return {r["symbol"]: dict(r) for r in self._rows("SELECT * FROM positions ORDER BY symbol")}

    def orders(self, limit: int = 100) -> list[dict]:
        rows = self._rows("SELECT * FROM orders ORDER BY id DESC LIMIT ?", (limit,))
        return [{**dict(r), "decision": json.loads(r["decision"] or "{}")} for r in rows]

    def decisions(self, limit: int = 100) -> list[dict]:
        rows = self._rows("SELECT * FROM decisions ORDER BY id DESC LIMIT ?", (limit,))
        return [{"id": r["id"], "cycle_id": r["cycle_id"], "created_at": r["created_at"], **json.loads(r["body"])} for r in rows]

    def portfolio(self) -> dict:
        with self._lock:  # cash and positions from one snapshot
            account = self._db.execute("SELECT * FROM account WHERE id = 1").fetchone()
            positions = {r["symbol"]: dict(r) for r in self._db.execute("SELECT * FROM positions ORDER BY symbol")}
        market = sum(p["quantity"] * p["last_price"] for p in positions.values())
        equity = account["cash"] + market
        return {
            "cash": account["cash"],
            "market_value": market,
            "equity": equity,
            "initial_cash": account["initial_cash"],
            "return": equity / account["initial_cash"] - 1,
            "positions": positions,
        }
