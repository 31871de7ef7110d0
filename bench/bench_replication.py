"""Replicas that agree: how long after ``POST /models/{v}/activate`` returns on one replica
another one answers ``/predict`` with that version.

Two tiny-runtime replicas on one store: by Redis pub/sub (pointer check every 600 s, so only
a message can switch the follower), then with Redis unreachable (the pointer check alone,
every 1 s). Prints p50/p99 of each and their ratio. Target: p50 under 1 s with Redis.
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

import httpx

from common import LiveServer, percentile

from kryptobot.store import ModelStore
from tests.framework.tiny_runtime import TinyModel

FACTORY = "tests.framework.tiny_runtime:create_app"
N = 20
REDIS_URL = os.environ.get("KRYPTOBOT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
POINT = {"instances": [{"x1": 1.0, "x2": 0.0}]}


def seed(models_dir: Path) -> None:
    store = ModelStore(models_dir, "tiny")
    for coef in ([2.0, -1.0], [-2.0, 1.0]):
        store.save(TinyModel(coef, 0.0, {}, {}))
    store.set_active("tiny", "tiny-v1")


def propagation(redis_url: str, poll: str) -> list[float]:
    """Milliseconds from the activate call's return on A to B serving that version, N times."""
    workdir = Path(tempfile.mkdtemp(prefix="kryptobot-bench-replication-"))
    seed(workdir / "models")
    env = {"KRYPTOBOT_MODELS_DIR": str(workdir / "models"), "KRYPTOBOT_LOG_FORMAT": "text",
           "KRYPTOBOT_REDIS_URL": redis_url, "KRYPTOBOT_REPLICATION_POLL_SECONDS": poll}
    a = LiveServer(FACTORY, env, workdir / "a.log").start()
    b = LiveServer(FACTORY, env, workdir / "b.log").start()
    samples = []
    try:
        with httpx.Client(base_url=a.url, timeout=30) as ca, httpx.Client(base_url=b.url, timeout=30) as cb:
            deadline = time.monotonic() + 10
            while redis_url == REDIS_URL and cb.get("/health/ready").json()["replication"]["pubsub"] != "subscribed":
                assert time.monotonic() < deadline, "b never subscribed"
                time.sleep(0.05)
            for i in range(N):
                version = ("tiny-v2", "tiny-v1")[i % 2]
                ca.post(f"/models/{version}/activate").raise_for_status()
                started = time.perf_counter()
                while cb.post("/predict", json=POINT).json()["model_version"] != version:
                    assert time.perf_counter() - started < 30, f"b never served {version}"
                    time.sleep(0.002)
                samples.append((time.perf_counter() - started) * 1000)
    finally:
        a.stop()
        b.stop()
    return samples


def show(name: str, samples: list[float]) -> float:
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    print(f"{name:<52} p50 {p50:8.1f} ms  p99 {p99:8.1f} ms  n={len(samples)}")
    return p50


def main() -> None:
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        nowhere = f"redis://127.0.0.1:{closed.getsockname()[1]}/0"
        pubsub = show("follower switched by Redis pub/sub", propagation(REDIS_URL, "600"))
        polled = show("follower switched by the pointer check (every 1 s)", propagation(nowhere, "1"))
    print(f"pub/sub is {polled / pubsub:.0f}x faster than the 1 s pointer check; "
          f"target p50 < 1000 ms with Redis: {'OK' if pubsub < 1000 else 'MISSED'}")


if __name__ == "__main__":
    main()
