"""Trader throughput: one cycle for 8 symbols with a cold and a warm forecast cache, and
the backtest's bars per second (all modes, batch calls to the model services)."""
from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import httpx

from common import LiveServer, percentile

from tests.services.trader.stack import start_model_services, trader_env

REDIS = "redis://127.0.0.1:6379/15"


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="kryptobot-bench-trader-"))
    servers: list[LiveServer] = []

    def start(factory, env=None, port=None):
        name = factory.split(":")[0].split(".")[-2]
        server = LiveServer(factory, {"KRYPTOBOT_MODELS_DIR": str(workdir / "models"), **(env or {})}, workdir / f"{name}.log", port=port)
        servers.append(server)
        return server.start()

    try:
        models = start_model_services(start)
        trader = start("services.trader.app:create_app", trader_env(models, REDIS, workdir, f"bench:{uuid.uuid4().hex[:8]}"))
        with httpx.Client(base_url=trader.url, timeout=300) as client:
            cold, warm = [], []
            for day in ("2024-06-03", "2024-06-04", "2024-06-05", "2024-06-06", "2024-06-07"):
                for bucket in (cold, warm):  # first call of a bar: cache miss; second: hit
                    started = time.perf_counter()
                    client.post("/cycle", json={"as_of": day}).raise_for_status()
                    bucket.append((time.perf_counter() - started) * 1000)
            print(f"cycle, 8 symbols, cold cache   p50 {percentile(cold, 50):8.1f} ms  max {max(cold):8.1f} ms  n={len(cold)}")
            print(f"cycle, 8 symbols, warm cache   p50 {percentile(warm, 50):8.1f} ms  max {max(warm):8.1f} ms  n={len(warm)}")
            print(f"ratio cold/warm: {percentile(cold, 50) / percentile(warm, 50):.1f}x")
            started = time.perf_counter()
            report = client.post("/backtest", json={}).json()
            elapsed = time.perf_counter() - started
            modes = len(report["results"]) - 1
            print(f"backtest: {report['bars']} symbol-bars x {modes} modes ({report['start']}..{report['end']}, 8 symbols) in {elapsed:.2f} s: "
                  f"{report['bars'] / elapsed:,.0f} bars/s ({report['bars'] * modes / elapsed:,.0f} bar-decisions/s)")
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
