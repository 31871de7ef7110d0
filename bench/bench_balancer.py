"""Throughput of the signal service behind HAProxy: one replica, then two.

Trains a small signal model once; the replicas are uvicorn processes serving that one model
store, each pinned to its own core. HAProxy (Debian's ``/usr/sbin/haproxy``, ``make haproxy``
installs it) balances ``/predict`` over them with keep-alive connections to each; the load
generator (``common.http_load``: bounded, keep-alive connections, request bytes built once)
sends one raw-bars instance of ``MODEL_BARS`` bars per request to HAProxy on 127.0.0.1.

Placement, printed with the figures: replica 1 on core 0; HAProxy and the load generator on
core 1 in both runs, so with two replicas, replica 2 shares core 1 with them. On a machine
with more cores the generator and HAProxy get their own (core 2) and the replicas have
theirs to themselves. Prints requests/s of 1 and 2 replicas and their ratio (2.0 would be
perfect scaling), with one replica without HAProxy for the balancer's own cost.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from common import ROOT, TreeServer, cores_text, cpu_seconds, http_load, percentile, pinned, stop_process, train_signal_model, wait_until_answers

from kryptobot.models.common.examples import example_bars
from kryptobot.trading.market import MODEL_BARS

HAPROXY = "/usr/sbin/haproxy"
REQUESTS = 3000
CONCURRENCY = 16  # enough queued requests to keep every replica busy
WARMUP = 50  # http_load's unmeasured requests per connection
ROUNDS = 5  # direct, 1 and 2 replicas back to back, five times: the best of each (other work only slows a run down)
CORES = os.cpu_count() or 1
REPLICA_CORES = [{0}, {1}] if CORES >= 2 else [None, None]
FRONT_CORES = ({2} if CORES >= 3 else {1}) if CORES >= 2 else None  # HAProxy and the load generator


def haproxy_config(port: int, backends: list[int]) -> str:
    servers = "\n".join(f"    server r{i} 127.0.0.1:{p} check inter 2s" for i, p in enumerate(backends, 1))
    return f"""global
    nbthread 1
    maxconn 2000

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend predict
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance leastconn
    http-reuse always
    option httpchk GET /health/ready
{servers}
"""


class HAProxy:
    """``haproxy -db`` in the foreground on a config written for ``backends``, on ``cores``."""

    def __init__(self, backends: list[int], cores: set[int] | None, workdir: Path):
        from tests.live import free_port

        self.port = free_port()
        self.config = workdir / f"haproxy-{self.port}.cfg"
        self.config.write_text(haproxy_config(self.port, backends))
        self.cores = cores
        self.log = workdir / f"haproxy-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "HAProxy":
        check = subprocess.run([HAPROXY, "-c", "-q", "-f", str(self.config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused its config: {check.stderr}")
        with pinned(self.cores), open(self.log, "ab") as log:
            self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            wait_until_answers(self.proc, f"http://127.0.0.1:{self.port}/health/ready", "haproxy", self.log.read_text, timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)


def throughput(port: int, body: bytes, processes: dict[str, int]) -> tuple[float, float, float, dict[str, float]]:
    """Requests/s, p50 and p99 ms of REQUESTS raw-bars /predict calls at CONCURRENCY, and the
    CPU ms per request each of ``processes`` (name -> pid) and the load generator used."""
    before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    generator_before = sum(os.times()[:2])
    with pinned(FRONT_CORES):
        latencies, seconds = http_load(port, "/predict", body, CONCURRENCY, REQUESTS, WARMUP)
    sent = len(latencies) + CONCURRENCY * WARMUP
    cpu = {name: (cpu_seconds(pid) - before[name]) * 1000 / sent for name, pid in processes.items()}
    cpu["generator"] = (sum(os.times()[:2]) - generator_before) * 1000 / sent
    return len(latencies) / seconds, percentile(latencies, 50), percentile(latencies, 99), cpu


def main() -> None:
    if not Path(HAPROXY).exists():
        raise SystemExit(f"{HAPROXY} is missing: `make haproxy` (Debian's haproxy package) installs it")
    workdir, _ = train_signal_model()

    env = {"KRYPTOBOT_MODELS_DIR": str(workdir / "models"), "KRYPTOBOT_LOG_FORMAT": "text"}
    body = json.dumps({"instances": [{"symbol": "SYNA", "side": "buy", "bars": example_bars(MODEL_BARS)}]}).encode()
    replicas = [TreeServer("services.signal.app:create_app", env, ROOT, cores, log_path=workdir / f"replica{i}.log").start()
                for i, cores in enumerate(REPLICA_CORES, 1)]
    results: dict[str, list[tuple[float, float, float]]] = {"direct": [], "1": [], "2": []}
    try:
        print(f"{CORES} cores. replica 1 on {cores_text(REPLICA_CORES[0])}, replica 2 on {cores_text(REPLICA_CORES[1])}; "
              f"HAProxy ({HAPROXY}, 1 thread, leastconn, keep-alive to the replicas) and the load generator on "
              f"{cores_text(FRONT_CORES)}; {REQUESTS} requests at concurrency {CONCURRENCY}, one raw-bars instance of "
              f"{MODEL_BARS} bars ({len(body)} bytes) each")
        pids = {f"replica {i}": r.proc.pid for i, r in enumerate(replicas, 1)}
        for _ in range(ROUNDS):
            results["direct"].append(throughput(replicas[0].port, body, pids))
            for n in (1, 2):
                balancer = HAProxy([r.port for r in replicas[:n]], FRONT_CORES, workdir).start()
                try:
                    results[str(n)].append(throughput(balancer.port, body, {**pids, "HAProxy": balancer.proc.pid}))
                finally:
                    balancer.stop()
    finally:
        for replica in replicas:
            replica.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    best = {k: max(v, key=lambda r: r[0]) for k, v in results.items()}
    for key, label in (("direct", "1 replica, no balancer"), ("1", "1 replica behind HAProxy"), ("2", "2 replicas behind HAProxy")):
        rate, p50, p99, cpu = best[key]
        runs = ", ".join(f"{r[0]:.0f}" for r in results[key])
        print(f"{label:<28} {rate:7.0f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  (runs: {runs} req/s)")
        print(f"{'':<28} CPU ms per request: " + ", ".join(f"{name} {ms:.3f}" for name, ms in cpu.items()))
    paired = sorted(two[0] / one[0] for one, two in zip(results["1"], results["2"]))
    print(f"2 replicas / 1 replica: {best['2'][0] / best['1'][0]:.2f}x (best runs); per round {', '.join(f'{r:.2f}' for r in paired)}, "
          f"median {paired[len(paired) // 2]:.2f}x; HAProxy at 1 replica: {best['1'][0] / best['direct'][0]:.2f}x the direct throughput")


if __name__ == "__main__":
    main()
