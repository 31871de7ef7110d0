"""The ledger's database: one SQLAlchemy engine, SQLite by default or PostgreSQL, and its migrations.

* SQLite (``sqlite:///<KRYPTOBOT_LEDGER_PATH>``): WAL, ``synchronous=FULL`` (a fill
  reported is a fill on disk). Transactions are begun by SQLAlchemy, not by the sqlite3
  driver (SQLAlchemy's documented recipe), so a write transaction can be
  ``BEGIN IMMEDIATE``: it takes SQLite's one write lock before its first read, and a second
  writer (another thread, process or replica on the same file) waits for it.
* PostgreSQL (``KRYPTOBOT_DATABASE_URL``, ``postgresql+psycopg://...``): every write
  transaction first locks the account row (``SELECT ... FOR UPDATE``), so writers take
  turns there too; reads see one snapshot (REPEATABLE READ).

:func:`migrate` brings any ledger to the head of :mod:`.migrations` (Alembic, run in
process; no alembic.ini), adopting ledgers written before Alembic.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from kryptobot.settings import ConfigError
from kryptobot.trading.broker.schema import account

MIGRATIONS = Path(__file__).parent / "migrations"
_WRITE = "kryptobot_ledger_write"  # execution option: this connection's transaction writes
# any constant: the key of the PostgreSQL advisory lock two replicas' migrations take turns on
_MIGRATION_LOCK = 0x6B62_6C64


def ledger_url(path: Path | str, database_url: str | None) -> str:
    """``database_url`` when given (PostgreSQL), else the SQLite file at ``path``."""
    if database_url:
        return database_url
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def open_engine(url: str) -> Engine:
    """The engine of ``url``, with the ledger's transaction rules; ConfigError for a URL
    that is neither SQLite nor PostgreSQL, or cannot be parsed."""
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError as exc:
        raise ConfigError(f"KRYPTOBOT_DATABASE_URL: not a database URL ({exc})") from exc
    if backend == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30})  # seconds a writer waits for the lock
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        return create_engine(url, pool_pre_ping=True)
    raise ConfigError(f"KRYPTOBOT_DATABASE_URL: the ledger runs on sqlite or postgresql, not {backend!r}")


def _sqlite_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # the driver emits no BEGIN of its own: _sqlite_begin does
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction, committed at the end, rolled back on any error; the only
    writer on this ledger until then (SQLite: BEGIN IMMEDIATE; PostgreSQL: the account
    row locked first)."""
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(select(account.c.id).where(account.c.id == 1).with_for_update())
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction: every query in it sees the same snapshot."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


@contextmanager
def migration_transaction(engine: Engine) -> Iterator[Connection]:
    """The transaction a ledger is opened in (migrations, the account row, its owner):
    one opener at a time, so two replicas starting together do not both create a table."""
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            yield conn


def migrate(conn: Connection) -> None:
    """Upgrade the ledger on ``conn`` to the newest migration, inside ``conn``'s transaction.

    A ledger from before Alembic (no ``alembic_version``) is adopted by the first
    migration, which creates what it lacks and adds the columns added since.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def head_revision() -> str:
    """The newest migration's id (what an up-to-date ledger's ``alembic_version`` holds)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()
