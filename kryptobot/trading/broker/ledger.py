"""The trader's ledger: orders, fills, positions, cash and decisions in SQLite (WAL mode).

Every broker writes the same records here: an order row, its fill (one row per order: the
quantity filled, its average price and the commission in the quote currency), the position
and the cash change, in one transaction. ``client_order_id`` is UNIQUE, so the same order
submitted twice (a retried cycle, a restart mid-cycle) finds the first instead of trading
again. A ledger belongs to one broker (``ledger_meta.broker``): paper fills and exchange
fills never mix in one account.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from kryptobot.errors import Conflict
from kryptobot.files import utc_now
from kryptobot.settings import ConfigError
from kryptobot.trading.broker.base import Fill

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
    decision TEXT,
    stop REAL, target REAL, bar TEXT, venue_order_id TEXT
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
CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

POSITION_COLUMNS = {"stop": "REAL", "target": "REAL", "opened_bar": "TEXT"}
# what a position needs when its order fills later (an exchange order resolved after a restart)
ORDER_COLUMNS = {"stop": "REAL", "target": "REAL", "bar": "TEXT", "venue_order_id": "TEXT"}
EPS = 1e-9


class Ledger:
    """The SQLite ledger every broker keeps; subclasses decide how an order is filled.

    ``kind`` names the broker that owns the ledger (``paper``, ``ccxt:binance:sandbox``);
    opening a ledger another kind of broker wrote is a ConfigError.
    """

    def __init__(self, path: Path | str, initial_cash: float, kind: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.kind = kind
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
        """Older ledgers gain the columns added since, and the ledger is claimed by this broker.

        In one write transaction, so two traders opening the same old ledger do not both
        add a column. A migrated position's entry bar is the day of its latest buy (the
        day is the second part of every order id), so its time limit still applies; it
        has no stop or target, which were never recorded. A ledger from before brokers
        were recorded holds paper orders, if any.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            missing = {}
            for table, columns in (("positions", POSITION_COLUMNS), ("orders", ORDER_COLUMNS)):
                have = {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}
                missing[table] = [c for c in columns if c not in have]
                for column in missing[table]:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {columns[column]}")
            if "opened_bar" in missing["positions"]:
                self._db.execute(
                    "UPDATE positions SET opened_bar = (SELECT substr(o.client_order_id, length(o.symbol) + 2, 10) "
                    "FROM orders o WHERE o.symbol = positions.symbol AND o.side = 'buy' ORDER BY o.id DESC LIMIT 1)"
                )
            owner = self._db.execute("SELECT value FROM ledger_meta WHERE key = 'broker'").fetchone()
            if owner is None and self._db.execute("SELECT 1 FROM orders LIMIT 1").fetchone() is not None:
                owner = {"value": "paper"}
                self._db.execute("INSERT INTO ledger_meta VALUES ('broker', 'paper')")
            if owner is None:
                self._db.execute("INSERT INTO ledger_meta VALUES ('broker', ?)", (self.kind,))
            elif owner["value"] != self.kind:
                raise ConfigError(f"ledger {self.path} belongs to the {owner['value']} broker, not {self.kind}: "
                                  "give each broker its own ledger (KRYPTOBOT_LEDGER_PATH)")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # ---- writing (for the brokers) ------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the writer's lock; rolled back on any error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @staticmethod
    def _order_row(db: sqlite3.Connection, client_order_id: str) -> sqlite3.Row | None:
        return db.execute("SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,)).fetchone()

    @staticmethod
    def _check_affordable(db: sqlite3.Connection, symbol: str, side: str, quantity: float, cost: float, commission: float) -> None:
        """Conflict unless the account can pay for a buy, or holds what a sell sells."""
        position = db.execute("SELECT quantity FROM positions WHERE symbol = ?", (symbol,)).fetchone()
        held = position["quantity"] if position else 0.0
        if side == "sell" and quantity > held + EPS:
            raise Conflict(f"cannot sell {quantity} {symbol}: holding {held}", field="quantity")
        cash = db.execute("SELECT cash FROM account WHERE id = 1").fetchone()["cash"]
        if side == "buy" and cash - cost - commission < -1e-6:
            raise Conflict(f"insufficient cash for {quantity} {symbol} @ {cost / quantity:.4f}", field="quantity")

    @staticmethod
    def _insert_order(db: sqlite3.Connection, client_order_id: str, symbol: str, side: str, quantity: float, price: float,
                      commission: float, status: str, decision: dict | None, stop: float | None, target: float | None,
                      bar: str | None) -> int:
        cur = db.execute(
            "INSERT INTO orders (client_order_id, created_at, symbol, side, quantity, price, commission, status, decision, "
            "stop, target, bar) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (client_order_id, utc_now(), symbol, side, quantity, price, commission, status, json.dumps(decision or {}),
             stop, target, bar),
        )
        return cur.lastrowid

    @staticmethod
    def _book_fill(db: sqlite3.Connection, order: sqlite3.Row | dict, quantity: float, fill_price: float, commission: float,
                   mark_price: float) -> None:
        """Record ``order``'s fill: the fill row, the position and the cash, as one broker did it.

        A buy adds to the position at ``fill_price`` and (re)sets its barriers and entry bar
        from the order; a sell keeps the average price. ``mark_price`` (the price decided
        on) becomes the position's last price.
        """
        symbol, side = order["symbol"], order["side"]
        db.execute("INSERT INTO fills VALUES (?, ?, ?, ?, ?)", (order["id"], utc_now(), quantity, fill_price, commission))
        position = db.execute("SELECT * FROM positions WHERE symbol = ?", (symbol,)).fetchone()
        held = position["quantity"] if position else 0.0
        cost = quantity * fill_price
        new_qty = held + quantity if side == "buy" else held - quantity
        if new_qty <= EPS:
            db.execute("DELETE FROM positions WHERE symbol = ?", (symbol,))
        elif side == "buy":
            avg = ((position["avg_price"] * held if position else 0.0) + cost) / new_qty
            db.execute(
                "INSERT INTO positions (symbol, quantity, avg_price, last_price, stop, target, opened_bar) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(symbol) DO UPDATE SET quantity = excluded.quantity, "
                "avg_price = excluded.avg_price, last_price = excluded.last_price, stop = excluded.stop, "
                "target = excluded.target, opened_bar = excluded.opened_bar",
                (symbol, new_qty, avg, mark_price, order["stop"], order["target"], order["bar"]),
            )
        else:
            db.execute("UPDATE positions SET quantity = ?, last_price = ? WHERE symbol = ?", (new_qty, mark_price, symbol))
        delta = -cost - commission if side == "buy" else cost - commission
        db.execute("UPDATE account SET cash = cash + ? WHERE id = 1", (delta,))

    @staticmethod
    def _fill_of(db: sqlite3.Connection, order: sqlite3.Row, duplicate: bool) -> Fill:
        """The Fill an order row stands for: its fill's quantity, else (not filled) the order's."""
        fill = db.execute("SELECT quantity FROM fills WHERE order_id = ?", (order["id"],)).fetchone()
        return Fill(order["id"], order["client_order_id"], order["symbol"], order["side"],
                    fill["quantity"] if fill else order["quantity"], order["price"], order["commission"], duplicate=duplicate)

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

    def last_traded_bar(self) -> str | None:
        """The latest bar an order was placed on (ISO timestamp), None before the first order."""
        return self._rows("SELECT MAX(bar) AS bar FROM orders")[0]["bar"]

    def has_order(self, client_order_id: str) -> bool:
        return bool(self._rows("SELECT 1 FROM orders WHERE client_order_id = ?", (client_order_id,)))

    def cash(self) -> float:
        return self._rows("SELECT cash FROM account WHERE id = 1")[0]["cash"]

    def positions(self) -> dict[str, dict]:
        return {r["symbol"]: dict(r) for r in self._rows("SELECT * FROM positions ORDER BY symbol")}

    def orders(self, limit: int = 100) -> list[dict]:
        rows = self._rows("SELECT * FROM orders ORDER BY id DESC LIMIT ?", (limit,))
        return [{**dict(r), "decision": json.loads(r["decision"] or "{}")} for r in rows]

    def fills(self, limit: int = 100) -> list[dict]:
        return [dict(r) for r in self._rows("SELECT * FROM fills ORDER BY order_id DESC LIMIT ?", (limit,))]

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
