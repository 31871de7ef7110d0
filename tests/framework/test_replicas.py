"""Replicas that agree (services/framework/replication.py) and one training job per store
(services/framework/train_lock.py): several real uvicorn processes of the tiny runtime on one
model store, real Redis pub/sub, real HTTP."""
from __future__ import annotations

import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from kryptobot.store import ModelStore
from tests.framework.tiny_runtime import TinyModel
from tests.live import wait_for_job

FACTORY = "tests.framework.tiny_runtime:create_app"
POINT = {"instances": [{"x1": 1.0, "x2": 0.0}]}
#: two versions whose answers differ, so an answer shows which weights produced it
WEIGHTS = {"tiny-v1": ([2.0, -1.0], 0.0), "tiny-v2": ([-2.0, 1.0], 0.0)}
#: long enough that only a pub/sub message can switch a replica within the test's wait
NO_POLL = "600"
WAIT = 10.0  # seconds a replica gets to converge (behaviour, not timing: bench/bench_replication.py times it)


def seed_store(models_dir: Path) -> ModelStore:
    """A store with tiny-v1 (active) and tiny-v2, written as a training job would."""
    store = ModelStore(models_dir, "tiny")
    for version, (coef, intercept) in WEIGHTS.items():
        assert store.save(TinyModel(coef, intercept, {}, {"accuracy": 0.9, "baseline": 0.5})) == version
    store.set_active("tiny", "tiny-v1")
    return store


@pytest.fixture
def replica(start_server):
    """Start a tiny-runtime replica with ``env``; each is stopped when its test ends."""
    started = []

    def start(env: dict[str, str]):
        started.append(start_server(FACTORY, env=env))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def nowhere():
    """A Redis URL nothing answers: a port held bound, never listening (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


def replica_env(models_dir: Path, redis_url: str, poll: str = NO_POLL, **extra: str) -> dict[str, str]:
    return {"KRYPTOBOT_MODELS_DIR": str(models_dir), "KRYPTOBOT_REDIS_URL": redis_url,
            "KRYPTOBOT_REPLICATION_POLL_SECONDS": poll, **extra}


def serving(server) -> str:
    resp = httpx.post(f"{server.url}/predict", json=POINT, timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    # the answer comes from that version's weights, not only its name
    assert (body["predictions"][0]["label"] == 1) == (body["model_version"] == "tiny-v1"), body
    return body["model_version"]


def replication(server) -> dict:
    return httpx.get(f"{server.url}/health/ready", timeout=10).json()["replication"]


def wait_until(check, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen in {timeout}s")


def test_activation_on_one_replica_reaches_the_other_by_pubsub(replica, redis_url, tmp_path):
    store = seed_store(tmp_path / "models")
    a, b = (replica(replica_env(tmp_path / "models", redis_url)) for _ in range(2))
    for replica in (a, b):
        wait_until(lambda: replication(replica)["pubsub"] == "subscribed", "subscribing")
    assert serving(a) == serving(b) == "tiny-v1"
    listener = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(replication(a)["channel"])

    resp = httpx.post(f"{a.url}/models/tiny-v2/activate", timeout=30)
    assert resp.status_code == 200, resp.text
    assert serving(a) == "tiny-v2"
    # the pointer check runs only every 600 s here: the message switched b
    wait_until(lambda: serving(b) == "tiny-v2", "b serving tiny-v2")
    assert replication(b)["followed"] == 1 and replication(a)["followed"] == 0
    # b followed without writing the pointer back: one announcement, a's, and no more writes
    pointer = (store.dir / "active.json").stat()
    time.sleep(0.5)
    # ignore_subscribe_messages answers None for the subscription's confirmation: read a while
    messages = [m for m in (listener.get_message(timeout=0.05) for _ in range(10)) if m is not None]
    assert [json.loads(m["data"])["replica"] for m in messages] == [replication(a)["replica"]]
    assert (store.dir / "active.json").stat().st_ino == pointer.st_ino  # a write replaces the file
    assert store.active() == {"tiny": "tiny-v2"}
    listener.close()

    # and back, the other way round: b activates, a follows
    assert httpx.post(f"{b.url}/models/tiny-v1/activate", timeout=30).status_code == 200
    wait_until(lambda: serving(a) == "tiny-v1", "a serving tiny-v1")
    assert store.active() == {"tiny": "tiny-v1"}


def test_the_pointer_check_converges_after_the_publisher_died(replica, redis_url, tmp_path):
    store = seed_store(tmp_path / "models")
    env = replica_env(tmp_path / "models", redis_url, poll="1")
    a, b = replica(env), replica(env)
    assert serving(a) == serving(b) == "tiny-v1"
    a.kill()  # SIGKILL: no message, no clean shutdown

    # a third party (an operator's script, a replica that died right after) writes the
    # pointer and announces nothing
    store.set_active("tiny", "tiny-v2")
    wait_until(lambda: serving(b) == "tiny-v2", "the survivor serving tiny-v2")
    assert replication(b)["followed"] == 1


def test_without_redis_a_replica_starts_serves_and_still_follows_the_pointer(replica, nowhere, tmp_path):
    store = seed_store(tmp_path / "models")
    alone = replica(replica_env(tmp_path / "models", nowhere, poll="0.2"))
    off = replica(replica_env(tmp_path / "models", nowhere, poll="0.2", KRYPTOBOT_REPLICATION="false"))
    assert serving(alone) == serving(off) == "tiny-v1"
    wait_until(lambda: replication(alone)["pubsub"].startswith("unreachable: ConnectionError"), "reporting Redis unreachable")
    assert "Redis at 127.0.0.1" in alone.log_text() and "every 0.2s only" in alone.log_text()
    assert replication(off)["pubsub"] == "off" and replication(off)["enabled"] is False

    store.set_active("tiny", "tiny-v2")
    wait_until(lambda: serving(alone) == "tiny-v2", "the lone replica following the pointer")
    time.sleep(1.0)  # five of its pointer checks had it followed
    assert serving(off) == "tiny-v1", "replication off: the replica keeps its own view"

    # a version the pointer names that does not load here: keep serving, say why
    v3 = store.save(TinyModel([1.0, 1.0], 0.0, {}, {}))
    (store.dir / v3 / "artifacts" / "model.json").write_text('{"coef": [9, 9], "intercept": 0}')
    store.set_active("tiny", v3)
    ready = wait_until(lambda: (r := httpx.get(f"{alone.url}/health/ready", timeout=10).json()).get("fallbacks") and r, "a fallback")
    assert f"cannot follow the active pointer to {v3}" in ready["fallbacks"]["tiny"] and "serving tiny-v2" in ready["fallbacks"]["tiny"]
    assert serving(alone) == "tiny-v2"


def _job_pid(models_dir: Path, job_id: str) -> int | None:
    return json.loads((models_dir / "tiny" / "jobs" / f"{job_id}.json").read_text()).get("pid")


def test_one_training_job_per_store_across_replicas(replica, redis_url, tmp_path):
    seed_store(tmp_path / "models")
    env = replica_env(tmp_path / "models", redis_url)
    replicas = [replica(env), replica(env)]
    gate = {"gate": str(tmp_path / "never")}  # the job waits on a file that never appears: it surely runs

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda r: httpx.post(f"{r.url}/train", json=gate, timeout=30), replicas))
    assert sorted(r.status_code for r in answers) == [202, 409], [r.text for r in answers]
    holder = replicas[[r.status_code for r in answers].index(202)]
    other = replicas[[r.status_code for r in answers].index(409)]
    job = answers[[r.status_code for r in answers].index(202)].json()
    refused = answers[[r.status_code for r in answers].index(409)].json()
    assert refused["error"] == "Conflict" and refused["field"] == "job"
    assert f"replica {os.uname().nodename}-{holder.proc.pid} " in refused["detail"], refused
    # once started, the job is named too; the holder refuses a second job, naming itself
    again = httpx.post(f"{other.url}/train", json=gate, timeout=30).json()
    assert f"training job {job['id']} is running on replica " in again["detail"], again
    again = httpx.post(f"{holder.url}/train", json=gate, timeout=30)
    assert again.status_code == 409 and f"{job['id']} is running on this replica" in again.json()["detail"]
    # a replica starting meanwhile leaves the running job alone (it is no orphan)
    replica(env)
    assert httpx.get(f"{holder.url}/train/{job['id']}", timeout=10).json()["state"] in ("queued", "running")

    child = _job_pid(tmp_path / "models", job["id"])
    holder.kill()  # the kernel drops a dead process's lock: no expiry to wait for
    if child:  # the job's process outlives its replica (its own session): end it
        try:
            os.killpg(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    taken = httpx.post(f"{other.url}/train", json=gate, timeout=30)
    assert taken.status_code == 202, taken.text
    # the dead replica's job was marked failed, not left running for ever
    dead = httpx.get(f"{other.url}/train/{job['id']}", timeout=10).json()
    assert dead["state"] == "failed", dead
    assert httpx.delete(f"{other.url}/train/{taken.json()['id']}", timeout=30).json()["state"] == "cancelled"
    # a cancelled job gives the lock back (once its watcher saw the process end)
    started = wait_until(lambda: (r := httpx.post(f"{other.url}/train", json={}, timeout=30)).status_code == 202 and r, "a new job")
    with httpx.Client(base_url=other.url, timeout=30) as client:
        assert wait_for_job(client, started.json()["id"], timeout=60)["state"] == "succeeded"


@pytest.fixture(autouse=True)
def _no_leftover_gate(tmp_path):
    yield
    (tmp_path / "never").touch()  # any job still waiting on it finishes instead of waiting 60 s
