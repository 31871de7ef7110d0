"""What the model-service half of the reliability suite shares: a tiny-runtime service that
can be killed and restarted on one models directory, its training child, and the store's
invariants after a crash."""
from __future__ import annotations

import os
import re
import signal
import statistics
import time
from pathlib import Path

import httpx

from kryptobot.jobs import ACTIVE_STATES, FINAL_STATES
from kryptobot.store import VERSION_RE
from tests.live import LiveServer

TINY = "tests.framework.tiny_runtime:create_app"
EXAMPLE = {"instances": [{"x1": 1.5, "x2": -0.5}]}
#: a small job: the child's interpreter start-up and sklearn's import are most of its time
SMALL_JOB = {"n_samples": 200}
STORE_FILES = {"active.json", "previous.json", "jobs", "train.lock"}


class Service:
    """One model service on a fixed models directory and port, restartable after a kill."""

    def __init__(self, models: Path, logs: Path, factory: str = TINY, env: dict[str, str] | None = None):
        self.models, self.logs, self.factory = Path(models), Path(logs), factory
        self.env = {"KRYPTOBOT_MODELS_DIR": str(models), "KRYPTOBOT_LOG_FORMAT": "text", **(env or {})}
        self.server: LiveServer | None = None
        self.port: int | None = None
        self.starts = 0

    def start(self) -> httpx.Client:
        self.starts += 1
        self.server = LiveServer(self.factory, self.env, self.logs / f"service-{self.starts}.log", port=self.port).start()
        self.port = self.server.port
        return httpx.Client(base_url=self.server.url, timeout=60)

    @property
    def pid(self) -> int:
        return self.server.proc.pid

    def kill(self) -> None:
        self.server.kill()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def kill_group(pid: int | None) -> bool:
    """SIGKILL a training child's process group (it runs in its own session); False if gone."""
    if not pid:
        return False
    try:
        os.killpg(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


def alive(pid: int | None) -> bool:
    """Whether ``pid`` still runs (a zombie counts as gone)."""
    if not pid:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_until(check, timeout: float, step: float = 0.05):
    """Poll ``check()`` until it returns something truthy; that value, or None at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    return None


def finished_job(client: httpx.Client, job_id: str, timeout: float = 60) -> dict:
    def done():
        resp = client.get(f"/train/{job_id}")
        return resp.status_code == 200 and resp.json()["state"] in FINAL_STATES and resp.json()

    record = wait_until(done, timeout, 0.1)
    assert record, f"job {job_id} did not end in {timeout}s: {client.get(f'/train/{job_id}').text}"
    return record


def post_train(client: httpx.Client, body: dict | None = None, patience: float = 5.0) -> httpx.Response:
    """``POST /train``, waiting out a 409 for up to ``patience`` seconds: the last job's
    watcher releases the training lock a moment after its record shows it ended."""
    deadline = time.monotonic() + patience
    while True:
        resp = client.post("/train", json=SMALL_JOB if body is None else body)
        if resp.status_code != 409 or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def stuck_jobs(client: httpx.Client) -> list[dict]:
    return [j for j in client.get("/jobs").json() if j["state"] in ACTIVE_STATES]


def store_leftovers(store: Path) -> list[str]:
    """Anything in a service's store directory that is not a complete version or a pointer:
    staging directories, versions without metadata, abandoned temp files of atomic writes."""
    found = []
    for path in store.iterdir():
        if path.name in STORE_FILES:
            continue
        if VERSION_RE.match(path.name) and (path / "metadata.json").is_file():
            continue
        found.append(path.name)
    jobs = store / "jobs"
    if jobs.is_dir():
        found += [f"jobs/{p.name}" for p in jobs.iterdir() if not re.fullmatch(r"[0-9a-f]+(\.spec)?\.json", p.name)]
    return sorted(found)


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds of latencies in seconds."""
    if len(samples) < 2:
        return {"n": len(samples)}
    cuts = statistics.quantiles(samples, n=100)
    return {"n": len(samples), "p50_ms": round(cuts[49] * 1000, 2), "p99_ms": round(cuts[98] * 1000, 2)}
