"""The trader's ledger: orders, fills, positions, cash and decisions, on SQLite or PostgreSQL.

Every broker writes the same records here: an order row, its fill (one row per order: the
quantity filled, its average price and the commission in the quote currency), the position
and the cash change, and the decision that produced the order, in one transaction: an
order never exists without its decision. ``client_order_id`` is UNIQUE and looked up inside
the write transaction, so the same order submitted twice (a retried cycle, a restart
mid-cycle, two trader replicas on one ledger) finds the first instead of trading again. A
ledger belongs to one broker (``ledger_meta.broker``): paper fills and exchange fills never
mix in one account.

Storage and locking are :mod:`.database`'s (one writer at a time, across processes); the
schema is created and upgraded by :mod:`.migrations` when a ledger opens.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, RowMapping, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from kryptobot.errors import Conflict
from kryptobot.files import utc_now
from kryptobot.settings import ConfigError
from kryptobot.trading.broker import database
from kryptobot.trading.broker.base import Fill
from kryptobot.trading.broker.schema import account, decisions, fills, ledger_meta, orders, positions

EPS = 1e-9
#: decision rows kept by default (the oldest beyond are pruned, never one an order refers to)
KEEP_DECISIONS = 100_000


class Ledger:
    """The ledger every broker keeps; subclasses decide how an order is filled.

    ``kind`` names the broker that owns the ledger (``paper``, ``ccxt:binance:sandbox``);
    opening a ledger another kind of broker wrote is a ConfigError. The ledger is the
    SQLite file at ``path``, or the PostgreSQL database ``database_url`` names. It keeps
    the newest ``keep_decisions`` decision rows, and every older one an order refers to.
    """

    def __init__(self, path: Path | str, initial_cash: float, kind: str, *, database_url: str | None = None,
                 keep_decisions: int = KEEP_DECISIONS):
        if keep_decisions < 1:
            raise ConfigError(f"KRYPTOBOT_KEEP_DECISIONS must be at least 1, got {keep_decisions}")
        self.path = Path(path)
        self.kind = kind
        self.keep_decisions = keep_decisions
        self.where = "the PostgreSQL ledger" if database_url else f"ledger {self.path}"
        self._engine = database.open_engine(database.ledger_url(path, database_url))
        # writers of this process queue here rather than in the database's lock wait
        self._lock = threading.Lock()
        self._recorded = 0  # decisions recorded since the last prune
        # (cycle id, symbol) -> the decision row an order's transaction wrote, for the trader to complete
        self._journaled: dict[tuple[str, str], int] = {}
        try:
            self._open(initial_cash)
        except BaseException:
            self._engine.dispose()
            raise

    def _open(self, initial_cash: float) -> None:
        """Migrate, create the account (``initial_cash`` applies once), claim the ledger for
        this broker; one opener at a time. A ledger from before brokers were recorded holds
        paper orders, if any."""
        with database.migration_transaction(self._engine) as db:
            database.migrate(db)
            db.execute(_insert(db, account).values(id=1, cash=initial_cash, initial_cash=initial_cash)
                       .on_conflict_do_nothing(index_elements=["id"]))
            owner = db.execute(select(ledger_meta.c.value).where(ledger_meta.c.key == "broker")).scalar()
            if owner is None and db.execute(select(orders.c.id).limit(1)).first() is not None:
                owner = "paper"
                db.execute(insert(ledger_meta).values(key="broker", value=owner))
            if owner is None:
                db.execute(insert(ledger_meta).values(key="broker", value=self.kind))
            elif owner != self.kind:
                raise ConfigError(f"{self.where} belongs to the {owner} broker, not {self.kind}: give each broker its own "
                                  "ledger (KRYPTOBOT_LEDGER_PATH, or KRYPTOBOT_DATABASE_URL)")

    def close(self) -> None:
        self._engine.dispose()

    # ---- writing (for the brokers) ------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One write transaction, the only writer on the ledger; rolled back on any error."""
        with self._lock, database.write_transaction(self._engine) as db:
            yield db

    @staticmethod
    def _order_row(db: Connection, client_order_id: str) -> RowMapping | None:
        return db.execute(select(orders).where(orders.c.client_order_id == client_order_id)).mappings().first()

    @staticmethod
    def _check_affordable(db: Connection, symbol: str, side: str, quantity: float, cost: float, commission: float) -> None:
        """Conflict unless the account can pay for a buy, or holds what a sell sells."""
        held = db.execute(select(positions.c.quantity).where(positions.c.symbol == symbol)).scalar() or 0.0
        if side == "sell" and quantity > held + EPS:
            raise Conflict(f"cannot sell {quantity} {symbol}: holding {held}", field="quantity")
        cash = db.execute(select(account.c.cash).where(account.c.id == 1)).scalar_one()
        if side == "buy" and cash - cost - commission < -1e-6:
            raise Conflict(f"insufficient cash for {quantity} {symbol} @ {cost / quantity:.4f}", field="quantity")

    def _insert_order(self, db: Connection, client_order_id: str, symbol: str, side: str, quantity: float, price: float,
                      commission: float, status: str, decision: dict | None, stop: float | None, target: float | None,
                      bar: str | None, journal: tuple[str, dict] | None = None) -> RowMapping:
        """Insert an order row and, given ``journal`` (cycle id, decision body), the decision
        that produced it, linked to it; the order's row."""
        order_id = db.execute(insert(orders).values(
            client_order_id=client_order_id, created_at=utc_now(), symbol=symbol, side=side, quantity=quantity, price=price,
            commission=commission, status=status, decision=json.dumps(decision or {}), stop=stop, target=target, bar=bar,
        )).inserted_primary_key[0]
        if journal is not None:
            cycle_id, body = journal
            self._journaled[(cycle_id, body["symbol"])] = self._write_decision(db, cycle_id, body, order_id=order_id)
        return db.execute(select(orders).where(orders.c.id == order_id)).mappings().one()

    @staticmethod
    def _book_fill(db: Connection, order: RowMapping, quantity: float, fill_price: float, commission: float,
                   mark_price: float) -> None:
        """Record ``order``'s fill: the fill row, the position and the cash, as one broker did it.

        A buy adds to the position at ``fill_price`` and (re)sets its barriers and entry bar
        from the order; a sell keeps the average price. ``mark_price`` (the price decided
        on) becomes the position's last price.
        """
        symbol, side = order["symbol"], order["side"]
        db.execute(insert(fills).values(order_id=order["id"], filled_at=utc_now(), quantity=quantity, price=fill_price,
                                        commission=commission))
        position = db.execute(select(positions).where(positions.c.symbol == symbol)).mappings().first()
        held = position["quantity"] if position else 0.0
        cost = quantity * fill_price
        new_qty = held + quantity if side == "buy" else held - quantity
        if new_qty <= EPS:
            db.execute(delete(positions).where(positions.c.symbol == symbol))
        elif side == "buy":
            avg = ((position["avg_price"] * held if position else 0.0) + cost) / new_qty
            values = dict(quantity=new_qty, avg_price=avg, last_price=mark_price, stop=order["stop"], target=order["target"],
                          opened_bar=order["bar"])
            db.execute(_insert(db, positions).values(symbol=symbol, **values)
                       .on_conflict_do_update(index_elements=["symbol"], set_=values))
        else:
            db.execute(update(positions).where(positions.c.symbol == symbol).values(quantity=new_qty, last_price=mark_price))
        delta = -cost - commission if side == "buy" else cost - commission
        db.execute(update(account).where(account.c.id == 1).values(cash=account.c.cash + delta))

    @staticmethod
    def _fill_of(db: Connection, order: RowMapping, duplicate: bool) -> Fill:
        """The Fill an order row stands for: its fill's quantity, else (not filled) the order's."""
        filled = db.execute(select(fills.c.quantity).where(fills.c.order_id == order["id"])).scalar()
        return Fill(order["id"], order["client_order_id"], order["symbol"], order["side"],
                    order["quantity"] if filled is None else filled, order["price"], order["commission"], duplicate=duplicate)

    def mark(self, prices: dict[str, float]) -> None:
        """Record the latest prices of held symbols (for the portfolio's market value)."""
        if not prices:
            return
        with self._transaction() as db:
            for symbol, price in prices.items():
                db.execute(update(positions).where(positions.c.symbol == symbol).values(last_price=price))

    def record_decision(self, cycle_id: str, decision: dict) -> None:
        """Record a cycle's decision on ``decision["symbol"]``; the row this ledger wrote with
        the decision's order (``submit(journal=...)``) is completed, not repeated."""
        row_id = self._journaled.pop((cycle_id, decision["symbol"]), None)
        with self._transaction() as db:
            self._write_decision(db, cycle_id, decision, row_id=row_id)

    def _write_decision(self, db: Connection, cycle_id: str, decision: dict, *, order_id: int | None = None,
                        row_id: int | None = None) -> int:
        """Update decision row ``row_id`` if given (and still there), else insert one; its id.
        Prunes the oldest rows now and then."""
        values = dict(cycle_id=cycle_id, symbol=decision["symbol"], created_at=utc_now(), action=decision["action"],
                      degraded=int(decision["degraded"]), body=json.dumps(decision, default=str))
        if row_id is not None and db.execute(update(decisions).where(decisions.c.id == row_id).values(**values)).rowcount:
            return row_id
        row_id = db.execute(insert(decisions).values(order_id=order_id, **values)).inserted_primary_key[0]
        self._recorded += 1
        # pruning walks the newest keep_decisions ids: at most once per 1% of them
        if self._recorded >= max(1, self.keep_decisions // 100):
            self._recorded = 0
            self._prune_decisions(db)
        return row_id

    def _prune_decisions(self, db: Connection) -> None:
        """Delete the decisions older than the newest ``keep_decisions``, but those an order refers to."""
        oldest_kept = select(decisions.c.id).order_by(decisions.c.id.desc()).offset(self.keep_decisions - 1).limit(1)
        boundary = db.execute(oldest_kept).scalar()
        if boundary is not None:
            db.execute(delete(decisions).where(decisions.c.id < boundary, decisions.c.order_id.is_(None)))

    # ---- reading -------------------------------------------------------------------
    def _rows(self, query) -> list[RowMapping]:
        with database.read_transaction(self._engine) as db:
            return db.execute(query).mappings().all()

    def last_traded_bar(self) -> str | None:
        """The latest bar an order was placed on (ISO timestamp), None before the first order."""
        return self._rows(select(func.max(orders.c.bar).label("bar")))[0]["bar"]

    def has_order(self, client_order_id: str) -> bool:
        return bool(self._rows(select(orders.c.id).where(orders.c.client_order_id == client_order_id)))

    def cash(self) -> float:
        return self._rows(select(account.c.cash).where(account.c.id == 1))[0]["cash"]

    def positions(self) -> dict[str, dict]:
        return {r["symbol"]: dict(r) for r in self._rows(select(positions).order_by(positions.c.symbol))}

    def orders(self, limit: int = 100) -> list[dict]:
        rows = self._rows(select(orders).order_by(orders.c.id.desc()).limit(limit))
        return [{**dict(r), "decision": json.loads(r["decision"] or "{}")} for r in rows]

    def fills(self, limit: int = 100) -> list[dict]:
        return [dict(r) for r in self._rows(select(fills).order_by(fills.c.order_id.desc()).limit(limit))]

    def decisions(self, limit: int = 100) -> list[dict]:
        rows = self._rows(select(decisions).order_by(decisions.c.id.desc()).limit(limit))
        return [{"id": r["id"], "cycle_id": r["cycle_id"], "created_at": r["created_at"], **json.loads(r["body"])} for r in rows]

    def portfolio(self) -> dict:
        with database.read_transaction(self._engine) as db:  # cash and positions from one snapshot
            row = db.execute(select(account).where(account.c.id == 1)).mappings().one()
            held = {r["symbol"]: dict(r) for r in db.execute(select(positions).order_by(positions.c.symbol)).mappings()}
        market = sum(p["quantity"] * p["last_price"] for p in held.values())
        equity = row["cash"] + market
        return {
            "cash": row["cash"],
            "market_value": market,
            "equity": equity,
            "initial_cash": row["initial_cash"],
            "return": equity / row["initial_cash"] - 1,
            "positions": held,
        }


def _insert(db: Connection, table):
    """INSERT with ``ON CONFLICT`` clauses, in the ledger database's dialect."""
    return (postgresql.insert if db.dialect.name == "postgresql" else sqlite.insert)(table)
