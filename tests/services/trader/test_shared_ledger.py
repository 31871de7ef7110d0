"""The shared ledger: SQLAlchemy + Alembic on SQLite and PostgreSQL, trader replicas on one
PostgreSQL ledger, and one scheduler leader among them (a lease in the real Redis).

Each test module gets throwaway PostgreSQL databases (``kryptobot_<random>`` on the local
server, user ``postgres``), dropped at the end.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
import redis
from sqlalchemy import create_engine, inspect, text

from kryptobot.trading.broker import PaperBroker
from kryptobot.trading.broker.database import head_revision
from services.trader.leader import Leadership
from services.trader.scheduler import build_scheduler
from tests.live import ROOT, free_port
from tests.services.trader.old_ledger import write_old_ledger

TRADER = "services.trader.app:create_app"
ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@pytest.fixture(scope="module")
def new_database():
    """Factory: a new empty PostgreSQL database's SQLAlchemy URL; all are dropped at the end."""
    names: list[str] = []

    def create() -> str:
        name = f"kryptobot_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        names.append(name)
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

    yield create
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        for name in names:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path, new_database):
    """Factory of PaperBrokers on one ledger: the SQLite file, or a new PostgreSQL database."""
    url = new_database() if request.param == "postgresql" else None
    brokers = []

    def open_(initial_cash: float = 10_000, **options) -> PaperBroker:
        broker = PaperBroker(tmp_path / "ledger.sqlite", initial_cash, commission=0.001, slippage=0.0, database_url=url,
                             **options)
        brokers.append(broker)
        return broker

    yield open_
    for broker in brokers:
        broker.close()


def _decision(symbol: str, action: str = "hold") -> dict:
    return {"symbol": symbol, "action": action, "degraded": False, "rules": []}


def test_migrations_create_an_empty_postgres_ledger_and_a_second_opener_finds_it_done(new_database):
    url = new_database()
    brokers = [PaperBroker("unused.sqlite", 10_000, commission=0.0, slippage=0.0, database_url=url) for _ in range(2)]
    brokers[0].submit("SPY:2024-01-02", "SPY", "buy", 10, 100.0, stop=95.0, bar="2024-01-02T00:00:00")
    assert brokers[1].positions()["SPY"]["stop"] == 95.0 and brokers[1].cash() == 9_000
    engine = create_engine(url)
    with engine.connect() as db:
        assert db.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
        tables = set(inspect(db).get_table_names())
        columns = {c["name"] for c in inspect(db).get_columns("decisions")}
    engine.dispose()
    assert {"account", "orders", "fills", "positions", "decisions", "ledger_meta"} <= tables
    assert "order_id" in columns
    for broker in brokers:
        broker.close()


def test_an_old_format_sqlite_ledger_is_upgraded_to_the_head(tmp_path):
    path = tmp_path / "old.sqlite"
    write_old_ledger(path)
    PaperBroker(path, 10_000, commission=0.0, slippage=0.0).close()
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as db:
        assert db.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
        orders = {c["name"] for c in inspect(db).get_columns("orders")}
        decisions = {c["name"] for c in inspect(db).get_columns("decisions")}
        indexes = {i["name"] for i in inspect(db).get_indexes("decisions")}
    engine.dispose()
    assert {"stop", "target", "bar", "venue_order_id"} <= orders and "order_id" in decisions
    assert "decisions_by_order" in indexes


def test_two_brokers_racing_on_one_order_give_one_order_and_duplicates(ledger):
    brokers = [ledger(), ledger()]

    def submit(i: int):
        return brokers[i % 2].submit("QQQ:2024-01-02", "QQQ", "buy", 5, 100.0, journal=(f"cycle-{i}", _decision("QQQ", "buy")))

    with ThreadPoolExecutor(8) as pool:
        fills = list(pool.map(submit, range(16)))
    assert sum(not f.duplicate for f in fills) == 1 and len({f.order_id for f in fills}) == 1
    assert brokers[0].positions()["QQQ"]["quantity"] == 5 and brokers[1].cash() == pytest.approx(10_000 - 500 - 0.5)
    linked = [d for d in brokers[0].decisions() if d["symbol"] == "QQQ"]
    assert len(linked) == 1  # the one order's decision; a duplicate writes none


def test_an_order_is_written_with_its_decision_in_one_transaction(ledger):
    broker = ledger(1_000)
    broker.submit("SPY:2024-01-02", "SPY", "buy", 1, 100.0, journal=("c1", _decision("SPY", "buy")))
    (row,) = broker.decisions()  # there before the trader completes it
    assert (row["cycle_id"], row["action"]) == ("c1", "buy")
    broker.record_decision("c1", {**_decision("SPY", "buy"), "order": {"order_id": 1}})  # completed, not repeated
    assert [d["order"] for d in broker.decisions()] == [{"order_id": 1}]
    from kryptobot.errors import Conflict

    with pytest.raises(Conflict):  # refused: neither the order nor its decision
        broker.submit("SPY:2024-01-03", "SPY", "buy", 100, 100.0, journal=("c2", _decision("SPY", "buy")))
    assert [d["cycle_id"] for d in broker.decisions()] == ["c1"] and len(broker.orders()) == 1


def test_the_oldest_decisions_are_pruned_but_never_one_an_order_refers_to(ledger):
    broker = ledger(keep_decisions=3)
    broker.submit("SPY:2024-01-02", "SPY", "buy", 1, 100.0, journal=("c0", _decision("SPY", "buy")))
    for i in range(1, 8):
        broker.record_decision(f"c{i}", _decision("SPY"))
    assert [d["cycle_id"] for d in broker.decisions(100)] == ["c7", "c6", "c5", "c0"]


def test_a_ledger_keeps_at_least_one_decision():
    from services.trader.settings import TraderEnv

    assert TraderEnv(keep_decisions=5).keep_decisions == 5
    with pytest.raises(ValueError, match="keep_decisions"):
        TraderEnv(keep_decisions=0)


# ---- trader replicas on one PostgreSQL ledger --------------------------------------------------
def _trader_env(tmp_path, redis_url: str, database_url: str, **settings) -> dict:
    dead = {f"KRYPTOBOT_{n.upper()}_URL": f"http://127.0.0.1:{free_port()}" for n in ("signal", "ensemble", "anomaly", "forecast")}
    return {
        **dead,
        "KRYPTOBOT_REDIS_URL": redis_url,
        "KRYPTOBOT_DATABASE_URL": database_url,
        "KRYPTOBOT_LEDGER_PATH": str(tmp_path / "unused.sqlite"),
        "KRYPTOBOT_REPORTS_DIR": str(tmp_path / "reports"),
        "KRYPTOBOT_CACHE_PREFIX": "test-shared-ledger:forecast",
        "KRYPTOBOT_TRADER_SETTINGS__REPLAY_PAST": "true",
        **{f"KRYPTOBOT_TRADER_SETTINGS__{k.upper()}": json.dumps(v) for k, v in settings.items()},
    }


def test_two_replicas_cycling_at_once_trade_each_bar_once(start_server, redis_url, new_database, tmp_path):
    from kryptobot.data import get_provider

    url = new_database()
    env = _trader_env(tmp_path, redis_url, url)
    with ThreadPoolExecutor(2) as pool:  # both open (and migrate) the empty ledger at once
        replicas = list(pool.map(lambda _: start_server(TRADER, env=env), range(2)))
    symbols = ["SPY", "QQQ", "AAPL", "MSFT"]
    bars = get_provider("synthetic").get_bars("SPY")
    days = [ts.date().isoformat() for ts in bars["timestamp"] if "2023-01-01" <= ts.date().isoformat() <= "2023-04-30"]
    body = {"symbols": symbols, "layers": []}
    answers = []
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(2) as pool:
        for day in days:
            both = list(pool.map(lambda r: client.post(f"{r.url}/cycle", json={**body, "as_of": day}), replicas))
            assert [r.status_code for r in both] == [200, 200], [r.text for r in both]
            answers += [r.json() for r in both]
    placed = [o for a in answers for o in a["orders"] if not o["duplicate"]]
    assert placed, "no technical trade in the sample"
    duplicates = sum(o["duplicate"] for a in answers for o in a["orders"])
    print(f"{len(placed)} orders placed, {duplicates} duplicate answers, "
          f"{sum('already_traded_this_bar' in d['rules'] for a in answers for d in a['decisions'])} bars found traded")
    assert len({o["client_order_id"] for o in placed}) == len(placed)  # each order placed by one replica only

    engine = create_engine(url)
    with engine.connect() as db:
        rows = db.execute(text("SELECT o.client_order_id, o.symbol, o.side, f.quantity, f.price, f.commission "
                               "FROM orders o JOIN fills f ON f.order_id = o.id")).mappings().all()
        cash, initial = db.execute(text("SELECT cash, initial_cash FROM account")).one()
        held = dict(db.execute(text("SELECT symbol, quantity FROM positions")).all())
        orphans = db.execute(text("SELECT o.id FROM orders o LEFT JOIN decisions d ON d.order_id = o.id "
                                  "WHERE d.id IS NULL")).all()
    engine.dispose()
    assert sorted(r["client_order_id"] for r in rows) == sorted(o["client_order_id"] for o in placed)
    expected_cash = initial + sum((-1 if r["side"] == "buy" else 1) * r["quantity"] * r["price"] - r["commission"] for r in rows)
    assert cash == pytest.approx(expected_cash, rel=1e-9)
    expected = {}
    for r in rows:
        expected[r["symbol"]] = expected.get(r["symbol"], 0.0) + (r["quantity"] if r["side"] == "buy" else -r["quantity"])
    assert held == pytest.approx({s: q for s, q in expected.items() if q > 1e-9})
    assert orphans == []  # every order has its decision


# ---- one scheduler leader ---------------------------------------------------------------------
def _leaders(replicas) -> list[bool]:
    return [httpx.get(f"{r.url}/health/ready", timeout=10).json()["leader"]["leader"] for r in replicas]


def test_one_replica_leads_the_schedule_and_another_takes_over_when_it_dies(start_server, redis_url, new_database, tmp_path):
    lease = 2.0
    key = f"test-leader:{uuid.uuid4().hex[:8]}"
    env = {**_trader_env(tmp_path, redis_url, new_database(), schedule_minutes=0.01, unavailable_policy="technical"),
           "KRYPTOBOT_LEADER_KEY": key, "KRYPTOBOT_LEADER_LEASE_SECONDS": str(lease)}
    replicas = [start_server(TRADER, env=env) for _ in range(2)]
    deadline = time.monotonic() + 10
    while sum(leaders := _leaders(replicas)) != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sum(leaders) == 1, leaders
    for _ in range(5):  # and stays one while both live
        time.sleep(lease / 4)
        assert sum(_leaders(replicas)) == 1
    leader, follower = (replicas[0], replicas[1]) if leaders[0] else (replicas[1], replicas[0])
    gauge = [line for line in httpx.get(f"{leader.url}/metrics").text.splitlines() if line.startswith("kryptobot_trader_leader ")]
    assert gauge == ["kryptobot_trader_leader 1.0"]

    leader.kill()  # SIGKILL: the lease is not released, it expires
    killed = time.monotonic()
    while not _leaders([follower])[0] and time.monotonic() - killed < 3 * lease:
        time.sleep(0.05)
    took = time.monotonic() - killed
    assert _leaders([follower])[0], "the follower never took over"
    # the lease runs out at most `lease` after the kill, and the follower tries every third of it
    assert took <= lease * 4 / 3 + 0.5, took
    print(f"takeover after {took:.2f}s (lease {lease}s)")
    assert redis.Redis.from_url(redis_url).get(key).decode() == httpx.get(f"{follower.url}/health/ready").json()["leader"]["replica"]


async def test_a_replica_that_does_not_lead_runs_no_scheduled_job(redis_url):
    """Two elections on one key in one process: the scheduler of the one not leading runs nothing."""
    from kryptobot.trading.settings import TraderConfig

    config = TraderConfig.load(ROOT / "config")
    config = dataclasses.replace(config, trader=config.trader.model_copy(update={"schedule_minutes": 0.005}))
    key = f"test-leader:{uuid.uuid4().hex[:8]}"
    elections = [Leadership(redis_url, key, 5.0) for _ in range(2)]
    runs = [0, 0]

    def cycle_of(i: int):
        async def cycle():
            runs[i] += 1
        return cycle

    assert await elections[0].attempt() and not await elections[1].attempt()
    assert elections[1].holder == elections[0].token
    schedulers = [build_scheduler(config, {}, cycle_of(i), asyncio.Lock(), None, leads=lambda e=e: e.is_leader)
                  for i, e in enumerate(elections)]
    for scheduler in schedulers:
        scheduler.start()
    await asyncio.sleep(1.5)
    await elections[0].stop()  # released: the other takes it at its next attempt
    assert await elections[1].attempt()
    before = runs[1]
    await asyncio.sleep(1.0)
    for scheduler in schedulers:
        scheduler.shutdown(wait=False)
    await elections[1].stop()
    assert runs[0] >= 2 and before == 0 and runs[1] >= 2, runs
