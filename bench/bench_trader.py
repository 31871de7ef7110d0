"""Trader throughput: one cycle for 8 symbols with a cold and a warm forecast cache, and
the backtest's bars per second (all modes, batch calls to the model services); then the
backtest's results per mode on the default synthetic market.

Starts the four model services (trained with the tests' tiny configs, or with
``--models sensible`` the stack's first-start configs on data up to 2020) and the trader;
uses the machine's Redis (db 15, a key prefix of its own, removed at the end).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis

from common import LiveServer, percentile

from services.bootstrap import bodies as first_start_bodies
from tests.services.trader.stack import TINY, start_model_services, trader_env

REDIS = "redis://127.0.0.1:6379/15"
DAYS = ("2024-06-03", "2024-06-04", "2024-06-05", "2024-06-06", "2024-06-07")


def sensible_bodies(train_until: str) -> dict[str, dict]:
    """The first-start training bodies of the stack, on data up to ``train_until`` (the
    backtest then has the years after it out of sample)."""
    return {name: {**body, "data": {**body["data"], "end": train_until}} for name, body in first_start_bodies().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", choices=("tiny", "sensible"), default="tiny",
                        help="tiny: the tests' bodies (seconds); sensible: the stack's first-start bodies on data to 2020 (minutes)")
    args = parser.parse_args()
    bodies = TINY if args.models == "tiny" else sensible_bodies("2020-12-31")
    workdir = Path(tempfile.mkdtemp(prefix="kryptobot-bench-trader-"))
    prefix = f"bench-trader-{uuid.uuid4().hex[:8]}:forecast"
    servers: list[LiveServer] = []

    def start(factory, env=None, port=None):
        name = factory.split(":")[0].split(".")[-2]
        server = LiveServer(factory, {"KRYPTOBOT_MODELS_DIR": str(workdir / "models"), **(env or {})}, workdir / f"{name}.log", port=port)
        servers.append(server)
        return server.start()

    try:
        started = time.perf_counter()
        models = start_model_services(start, bodies)
        print(f"four model services started and trained ({args.models} configs) in {time.perf_counter() - started:.0f} s")
        trader = start("services.trader.app:create_app", trader_env(models, REDIS, workdir, prefix))
        with httpx.Client(base_url=trader.url, timeout=300) as client:
            client.post("/cycle", json={"as_of": "2024-05-31"}).raise_for_status()  # connections, first imports
            cold, warm = [], []
            for day in DAYS:
                for bucket in (cold, warm):  # first cycle of a bar: forecast cache misses; second: hits
                    started = time.perf_counter()
                    client.post("/cycle", json={"as_of": day}).raise_for_status()
                    bucket.append((time.perf_counter() - started) * 1000)
            print(f"cycle, 8 symbols, cold cache   p50 {percentile(cold, 50):8.1f} ms  max {max(cold):8.1f} ms  n={len(cold)}")
            print(f"cycle, 8 symbols, warm cache   p50 {percentile(warm, 50):8.1f} ms  max {max(warm):8.1f} ms  n={len(warm)}")
            started = time.perf_counter()
            resp = client.post("/backtest", json={})
            elapsed = time.perf_counter() - started
            resp.raise_for_status()
            report = resp.json()
            modes = len(report["results"]) - 1
            print(f"backtest: {report['bars']} symbol-bars x {modes} modes ({report['start']}..{report['end']}, "
                  f"{len(report['symbols'])} symbols, models trained until {report['models_trained_until']}) in {elapsed:.2f} s: "
                  f"{report['bars'] / elapsed:,.0f} bars/s ({report['bars'] * modes / elapsed:,.0f} bar-decisions/s)")
            print_results(report)
    finally:
        for server in servers:
            server.stop()
        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        shutil.rmtree(workdir, ignore_errors=True)


def print_results(report: dict) -> None:
    columns = ("total_return", "cagr", "sharpe", "max_drawdown", "win_rate", "mean_trade_return", "trades", "exposure")
    print(f"{'mode':<14}" + "".join(f"{c:>18}" for c in columns))
    for mode, stats in report["results"].items():
        cells = []
        for c in columns:
            value = stats.get(c)
            cells.append(f"{'-':>18}" if value is None else f"{value:>18d}" if c == "trades" else f"{value:>18.4f}")
        ci = stats.get("mean_trade_return_ci95")
        print(f"{mode:<14}" + "".join(cells) + (f"   mean trade 95% CI [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else ""))


if __name__ == "__main__":
    main()
