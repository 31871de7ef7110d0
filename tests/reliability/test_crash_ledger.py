"""SIGKILL the trader at random points of its cycles, restart it on the same SQLite ledger,
and check the ledger each time: it must be exactly what its fills say.

The trader runs as a real uvicorn process on technical-only cycles (``layers: []``) over
synthetic data, so no model service is needed; a driver thread walks ``as_of`` forward a
trading day at a time (``replay_past``) so the cycles place orders, and after each restart
the day that was being decided is decided again, as a scheduler or a retried request would.
After every restart:

* cash = initial cash - buys' cost + sells' proceeds - every commission, from the fills;
* each position = its buys - its sells, from the fills; no position without fills;
* one order per client order id, a fill for each order, a decision row for each order;
* every order a cycle reported before the kill is still there (a reported fill is on disk);
* a cycle completes (the cycle lock is not stuck).
"""
from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections import defaultdict

import httpx
import pytest

from kryptobot.data import get_provider
from tests.live import free_port
from tests.reliability.figures import record, scale

TRADER = "services.trader.app:create_app"
SYMBOLS = ["SPY", "QQQ", "AAPL", "MSFT", "AMZN", "GOOGL", "META", "TSLA"]
INITIAL_CASH = 100_000.0
KILL_AFTER = (0.0, 1.2)  # seconds after the trader is up: cycles take 0.1-0.6 s, so most kills land inside one


class Driver(threading.Thread):
    """Runs cycles day after day from ``start`` until its trader dies; remembers what was answered."""

    def __init__(self, url: str, days: list[str], start: int):
        super().__init__(daemon=True)
        self.url, self.days, self.next = url, days, start
        self.reported: set[str] = set()  # client order ids of the orders the trader answered with
        self.in_flight = False

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while self.next < len(self.days):
                self.in_flight = True
                try:
                    resp = client.post("/cycle", json={"as_of": self.days[self.next], "symbols": SYMBOLS, "layers": []})
                except httpx.HTTPError:
                    return  # killed: this day is decided again after the restart
                self.in_flight = False
                assert resp.status_code == 200, resp.text
                self.reported |= {o["client_order_id"] for o in resp.json()["orders"]}
                self.next += 1


def _env(tmp_path, redis_url: str) -> dict:
    dead = {f"KRYPTOBOT_{n.upper()}_URL": f"http://127.0.0.1:{free_port()}" for n in ("signal", "ensemble", "anomaly", "forecast")}
    return {
        **dead,
        "KRYPTOBOT_REDIS_URL": redis_url,
        "KRYPTOBOT_LEDGER_PATH": str(tmp_path / "ledger.sqlite"),
        "KRYPTOBOT_REPORTS_DIR": str(tmp_path / "reports"),
        "KRYPTOBOT_CACHE_PREFIX": "test-reliability-crash:forecast",
        "KRYPTOBOT_TRADER_SETTINGS__REPLAY_PAST": "true",
        "KRYPTOBOT_TRADER_SETTINGS__INITIAL_CASH": str(INITIAL_CASH),
    }


def ledger_problems(path) -> tuple[list[str], dict]:
    """Every broken invariant of the ledger at ``path`` (read with SQL), and its counts."""
    db = sqlite3.connect(path, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        problems = []
        account = db.execute("SELECT cash, initial_cash FROM account WHERE id = 1").fetchone()
        filled = db.execute("SELECT o.symbol, o.side, f.quantity, f.price, f.commission FROM fills f JOIN orders o ON o.id = f.order_id").fetchall()
        cash = account["initial_cash"]
        held: dict[str, float] = defaultdict(float)
        for f in filled:
            sign = 1 if f["side"] == "buy" else -1
            cash += -sign * f["quantity"] * f["price"] - f["commission"]
            held[f["symbol"]] += sign * f["quantity"]
        if abs(account["cash"] - cash) > 1e-6 * account["initial_cash"]:
            problems.append(f"cash {account['cash']:.6f} != {cash:.6f} from the fills")
        positions = {r["symbol"]: r["quantity"] for r in db.execute("SELECT symbol, quantity FROM positions")}
        for symbol in set(held) | set(positions):
            if abs(positions.get(symbol, 0.0) - held.get(symbol, 0.0)) > 1e-6:
                problems.append(f"{symbol}: position {positions.get(symbol, 0.0)} != {held.get(symbol, 0.0)} from the fills")
        duplicated = db.execute("SELECT COUNT(*) - COUNT(DISTINCT client_order_id) FROM orders").fetchone()[0]
        duplicated += db.execute("SELECT COUNT(*) FROM (SELECT 1 FROM orders GROUP BY symbol, bar HAVING COUNT(*) > 1)").fetchone()[0]
        if duplicated:
            problems.append(f"{duplicated} duplicated order(s)")
        unfilled = db.execute("SELECT client_order_id FROM orders o WHERE NOT EXISTS (SELECT 1 FROM fills f WHERE f.order_id = o.id)").fetchall()
        if unfilled:
            problems.append(f"orders without a fill: {[r[0] for r in unfilled]}")
        undecided = db.execute("SELECT client_order_id FROM orders o WHERE NOT EXISTS (SELECT 1 FROM decisions d WHERE d.order_id = o.id)").fetchall()
        if undecided:
            problems.append(f"orders without their decision row: {[r[0] for r in undecided]}")
        counts = {
            "orders": db.execute("SELECT COUNT(*) FROM orders").fetchone()[0],
            "decisions": db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0],
            "duplicated": duplicated,
            "orders_without_decision": len(undecided),
            "client_order_ids": {r[0] for r in db.execute("SELECT client_order_id FROM orders")},
        }
        return problems, counts
    finally:
        db.close()


@pytest.mark.timeout(scale(600, 3600))  # the long run: 100 restarts of a few seconds each
def test_sigkill_mid_cycle_leaves_a_ledger_its_fills_explain(start_server, redis_url, tmp_path):
    seed = int(os.environ.get("KRYPTOBOT_RELIABILITY_SEED", time.time()))
    rng = random.Random(seed)
    bars = get_provider("synthetic").get_bars("SPY")
    days = [ts.date().isoformat() for ts in bars["timestamp"] if ts.date().isoformat() >= "2016-01-01"]
    env = _env(tmp_path, redis_url)
    kills, mid_cycle, lost, reported = scale(5, 100), 0, set(), set()
    day = 0
    for kill in range(kills):
        trader = start_server(TRADER, env=env)
        with httpx.Client(base_url=trader.url, timeout=30) as client:  # first: the lock is free after the restart
            resp = client.post("/cycle", json={"as_of": days[day], "symbols": SYMBOLS, "layers": []})
            assert resp.status_code == 200, (kill, seed, resp.text)
            reported |= {o["client_order_id"] for o in resp.json()["orders"]}
        driver = Driver(trader.url, days, day + 1)
        driver.start()
        time.sleep(rng.uniform(*KILL_AFTER))
        mid_cycle += driver.in_flight
        trader.kill()
        driver.join(timeout=30)
        assert not driver.is_alive()
        reported |= driver.reported
        day = driver.next  # the day being decided when it died is decided again
        assert day < len(days), "ran out of synthetic days: fewer kills or a later start"
        problems, counts = ledger_problems(tmp_path / "ledger.sqlite")
        lost = reported - counts["client_order_ids"]
        assert not problems and not lost, (f"after kill {kill + 1} (seed {seed})", problems, sorted(lost))
    assert counts["orders"] >= kills, f"too few orders ({counts['orders']}) for the kills to land among them"
    record("crash_ledger", {
        "seed": seed, "kills": kills, "restarts": kills - 1, "kills_mid_cycle": mid_cycle, "days_decided": day,
        "orders": counts["orders"], "decisions": counts["decisions"], "lost_orders": len(lost),
        "duplicated_orders": counts["duplicated"], "orders_without_decision": counts["orders_without_decision"],
        "broken_invariants": len(problems),
    })
