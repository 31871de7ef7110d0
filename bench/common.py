"""Shared helpers for the benchmark scripts: a live server and latency statistics."""
from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.live import LiveServer, wait_for_job, wait_until_answers  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def time_calls(fn: Callable[[], object], n: int, warmup: int = 20) -> list[float]:
    """Wall time of ``n`` calls, in milliseconds, after ``warmup`` unmeasured calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def report(name: str, samples_ms: list[float], target_ms: float | None = None) -> float:
    p50, p99 = percentile(samples_ms, 50), percentile(samples_ms, 99)
    verdict = ""
    if target_ms is not None:
        verdict = f"  target p50 < {target_ms} ms: {'OK' if p50 < target_ms else 'MISSED'}"
    print(f"{name:<48} p50 {p50:8.3f} ms  p99 {p99:8.3f} ms  mean {statistics.fmean(samples_ms):8.3f} ms  n={len(samples_ms)}{verdict}")
    return p50


def report_feature_building(bars_instance: dict, n: int = 300) -> float:
    """In-process cost of what a raw-bars instance adds to a classifier's /predict: the
    nine features of its last bar, from the bars as they arrive."""
    from kryptobot.features import FeatureParams, latest_features, latest_features_of
    from kryptobot.schemas import Bars

    bars = Bars(**bars_instance["bars"])
    report(f"in-process features of the last of {len(bars.close)} bars, via a frame",
           time_calls(lambda: latest_features(bars.columns(), FeatureParams()), n))
    # what /predict runs: the checks on the arrays, then the features of the tail
    return report(f"in-process features of the last of {len(bars.close)} bars, as served",
                  time_calls(lambda: latest_features_of(bars.arrays(), FeatureParams()), n))


def start_service(factory: str, env: dict | None = None) -> tuple[LiveServer, Path]:
    workdir = Path(tempfile.mkdtemp(prefix="kryptobot-bench-"))
    server = LiveServer(factory, {"KRYPTOBOT_MODELS_DIR": str(workdir / "models"), "KRYPTOBOT_LOG_FORMAT": "text", **(env or {})}, workdir / "server.log")
    return server.start(), workdir


def train_signal_model() -> tuple[Path, str]:
    """A signal model of the benches' size (100 trees, depth 8) trained and activated in a fresh
    store: (the store's work directory, the version)."""
    trainer, workdir = start_service("services.signal.app:create_app")
    try:
        with httpx.Client(base_url=trainer.url, timeout=60) as client:
            job = client.post("/train", json={"model": {"n_estimators": 100, "max_depth": 8}, "activate": True}).json()
            job = wait_for_job(client, job["id"], timeout=600)
            assert job["state"] == "succeeded", job
    finally:
        trainer.stop()
    return workdir, job["versions"][0]


@contextmanager
def pinned(cores: set[int] | None):
    """Run the block on ``cores`` (as ``taskset -c``): processes started in it inherit them,
    threads and all. None: leave the affinity alone."""
    before = os.sched_getaffinity(0)
    if cores is not None:
        os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def cores_text(cores: set[int] | None) -> str:
    return "any core" if cores is None else "core " + ",".join(map(str, sorted(cores)))


class TreeServer:
    """``uvicorn <factory>`` from the checkout ``root`` (another commit's worktree works:
    the code measured is that tree's), on 127.0.0.1, pinned to ``cores``."""

    def __init__(self, factory: str, env: dict[str, str], root: Path = ROOT, cores: set[int] | None = None,
                 port: int | None = None, log_path: Path | None = None):
        from tests.live import free_port

        self.factory, self.env, self.root, self.cores = factory, env, Path(root), cores
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="kryptobot-bench-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> "TreeServer":
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **self.env, "PYTHONPATH": str(self.root)}
        with pinned(self.cores), open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", self.factory, "--factory", "--host", "127.0.0.1", "--port", str(self.port),
                 "--log-level", "warning"],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            wait_until_answers(self.proc, f"{self.url}/health/ready", self.factory, self.log_path.read_text, timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)


def stop_process(proc: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM ``proc`` if it runs, SIGKILL it after ``timeout`` seconds."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _request_bytes(port: int, path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    await reader.readexactly(length)
    return status


def http_load(port: int, path: str, body: bytes, concurrency: int, requests: int, warmup: int = 50,
              timeout: float = 300.0) -> tuple[list[float], float]:
    """POST ``body`` ``requests`` times over ``concurrency`` keep-alive connections to
    127.0.0.1:``port`` (after ``warmup`` unmeasured requests per connection); returns each
    request's latency in ms and the wall time of the measured part in seconds.

    A bounded load generator that costs the client little (the request bytes are built
    once, responses are read by length, no JSON parsing): what it times is the server.
    Any answer but 200 is an error.
    """
    request = _request_bytes(port, path, body)
    per_connection = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]

    async def connection(count: int, latencies: list[float], started: asyncio.Event, ready: list) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(warmup):
                writer.write(request)
                if (status := await _read_response(reader)) != 200:
                    raise RuntimeError(f"POST {path} answered {status}")
            ready.append(1)
            await started.wait()
            for _ in range(count):
                t0 = time.perf_counter()
                writer.write(request)
                if (status := await _read_response(reader)) != 200:
                    raise RuntimeError(f"POST {path} answered {status}")
                latencies.append((time.perf_counter() - t0) * 1000)
        finally:
            writer.close()

    async def main() -> tuple[list[float], float]:
        latencies: list[float] = []
        started, ready = asyncio.Event(), []
        tasks = [asyncio.create_task(connection(n, latencies, started, ready)) for n in per_connection]
        while len(ready) < concurrency and not any(t.done() for t in tasks):
            await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        started.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)
        return latencies, time.perf_counter() - t0

    try:  # uvicorn's loop, when installed: the generator then costs its core less
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


__all__ = ["LiveServer", "wait_for_job", "percentile", "time_calls", "report", "report_feature_building", "start_service", "ROOT",
           "pinned", "cores_text", "TreeServer", "http_load", "cpu_seconds"]
