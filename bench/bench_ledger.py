"""The ledger's write rate: paper orders per second on SQLite and on PostgreSQL.

Each order is one write transaction (duplicate check, order, decision row, fill, position,
cash): SQLite ``BEGIN IMMEDIATE`` with ``synchronous=FULL``; PostgreSQL with the account row
locked first. Measured with one writer, and with four threads on two ledger handles (two
replicas' worth of contention). PostgreSQL: a throwaway database on 127.0.0.1:5432 (user
postgres), dropped at the end. Prints orders/s and the PostgreSQL/SQLite ratio.
"""
from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from kryptobot.trading.broker import PaperBroker

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def rate(brokers: list[PaperBroker], n: int, threads: int, tag: str) -> float:
    def one(i: int) -> None:
        decision = {"symbol": f"S{i}", "action": "buy", "degraded": False}
        brokers[i % len(brokers)].submit(f"S{i}:{tag}", f"S{i}", "buy", 1, 1.0, journal=(f"{tag}{i}", decision))

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(n)))
    return n / (time.perf_counter() - start)


def measure(path: Path, url: str | None, n: int) -> dict[str, float]:
    brokers = [PaperBroker(path, 1e12, commission=0.001, slippage=0.0, database_url=url) for _ in range(2)]
    try:
        rate(brokers, 40, 4, "warm-up")  # SQLAlchemy compiles each statement once, pools connect
        return {"1 writer": rate(brokers[:1], n, 1, "one"), "4 threads, 2 handles": rate(brokers, n, 4, "four")}
    finally:
        for broker in brokers:
            broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="orders per measurement")
    args = parser.parse_args()
    name = f"kryptobot_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sqlite = measure(Path(tmp) / "ledger.sqlite", None, args.n)
            postgres = measure(Path(tmp) / "unused.sqlite", f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", args.n)
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    for case in sqlite:
        print(f"{case:>22}: sqlite {sqlite[case]:7.0f} orders/s  postgresql {postgres[case]:7.0f} orders/s  "
              f"(ratio {postgres[case] / sqlite[case]:.2f})")


if __name__ == "__main__":
    main()
