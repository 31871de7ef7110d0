"""Crashes against the model store: SIGKILL a training child and its service at random
points of training, committing and activating; a full disk while saving; a flipped byte in
an artifact. After each, the restarted service trains again (no job stuck running or
trained, no 409 forever), serves ``/predict`` and has no staging directory or half
version left. Real processes (the tiny runtime's service and its job child), a real tmpfs.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

from kryptobot.store import VERSION_RE
from tests.live import ROOT
from tests.reliability.figures import record, scale
from tests.reliability.model_service import (
    EXAMPLE,
    SMALL_JOB,
    Service,
    alive,
    finished_job,
    kill_group,
    post_train,
    store_leftovers,
    stuck_jobs,
    wait_until,
)

#: whose death each kill is: the job's process, its service (the child lives on as an
#: orphan), both, or the service while it activates a version
TARGETS = ("service", "both", "child", "both", "activate")
KEEP_ALL = {"KRYPTOBOT_KEEP_VERSIONS": "10000"}  # retention must not look like a lost version


def job_record(store: Path, job_id: str) -> dict:
    return json.loads((store / "jobs" / f"{job_id}.json").read_text())


def committed_versions(store: Path) -> set[str]:
    return {p.name for p in store.iterdir() if VERSION_RE.match(p.name) and (p / "metadata.json").is_file()}


def check_after_restart(client, store: Path, orphan_pid: int | None) -> dict:
    """The invariants after a crash; returns what was wrong, counted."""
    # an orphaned child that outlived its service must not bring its job back to life
    wait_until(lambda: not alive(orphan_pid), 30)
    problems = {"stuck": len(stuck_jobs(client)), "leftovers": store_leftovers(store)}
    promised = {v for j in client.get("/jobs").json() for v in j["versions"]}
    active = set(json.loads((store / "active.json").read_text()).values())
    problems["lost"] = sorted((promised | active) - committed_versions(store))
    resp = client.post("/predict", json=EXAMPLE)
    problems["predict"] = resp.status_code
    assert resp.status_code == 200, resp.text
    assert resp.json()["model_version"] in committed_versions(store)
    return problems


def test_sigkill_at_random_points_of_train_commit_and_activate(tmp_path):
    rng = random.Random(14)
    models = tmp_path / "models"
    store = models / "tiny"
    service = Service(models, tmp_path, env=KEEP_ALL)
    client = service.start()
    started = time.monotonic()
    first = finished_job(client, post_train(client).json()["id"])
    assert first["state"] == "succeeded", first
    # spans the child's start-up, fit and commit and the activation: kills land anywhere in it
    duration = time.monotonic() - started

    kills = scale(5, 60)
    figures = {"kills": 0, "service_kills": 0, "child_kills": 0, "activate_kills": 0, "restarts": 0,
               "stuck_states": 0, "conflicts_after_restart": 0, "lost_versions": 0, "leftovers": 0,
               "phase_at_kill": {}, "job_seconds": round(duration, 2)}
    try:
        for i in range(kills):
            target = TARGETS[i % len(TARGETS)]
            orphan = None
            if target == "activate":
                versions = sorted(committed_versions(store), key=lambda v: int(VERSION_RE.match(v)["n"]))
                activating = threading.Thread(target=_post_quietly, args=(client, f"/models/{rng.choice(versions)}/activate"))
                activating.start()
                time.sleep(rng.uniform(0, 0.03))
                service.kill()
                activating.join(10)
                phase = "activate"
            else:
                resp = post_train(client)
                if resp.status_code == 409:
                    figures["conflicts_after_restart"] += 1
                assert resp.status_code == 202, f"kill {i}: /train does not work after the last restart: {resp.text}"
                job_id = resp.json()["id"]
                time.sleep(rng.uniform(0, duration))
                child = job_record(store, job_id)["pid"]
                phase = job_record(store, job_id)["state"]
                if target in ("child", "both"):
                    figures["child_kills"] += kill_group(child)
                if target in ("service", "both"):
                    service.kill()
                    orphan = child
                if target == "child":
                    finished_job(client, job_id)  # the service notices its child died
            figures["kills"] += 1
            figures["service_kills" if target != "activate" else "activate_kills"] += target != "child"
            figures["phase_at_kill"][phase] = figures["phase_at_kill"].get(phase, 0) + 1
            if target != "child":
                client.close()
                client = service.start()
                figures["restarts"] += 1
            problems = check_after_restart(client, store, orphan)
            figures["stuck_states"] += problems["stuck"]
            figures["lost_versions"] += len(problems["lost"])
            figures["leftovers"] += len(problems["leftovers"])
            assert problems["stuck"] == 0 and not problems["lost"] and not problems["leftovers"], (i, target, phase, problems)
        resp = post_train(client)
        assert resp.status_code == 202, resp.text
        assert finished_job(client, resp.json()["id"])["state"] == "succeeded"
    finally:
        figures["versions_committed"] = len(committed_versions(store))
        record("crash_store_sigkill", figures)
        client.close()
        service.stop()


def _killed_while_saving(models: Path, flag: Path) -> list[str]:
    """Run a process into the middle of a save, SIGKILL it there; what it left in the store."""
    flag.unlink(missing_ok=True)
    child = subprocess.Popen([sys.executable, "-m", "tests.reliability.saving_child", str(models), str(flag)],
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    assert wait_until(flag.exists, 60), "the saving child never got to its save"
    kill_group(child.pid)
    child.wait()
    left = store_leftovers(models / "tiny")  # a staging directory and a temp file
    assert any(p.startswith(".staging-") for p in left) and any(p.startswith(".active.json.") for p in left), left
    return left


def test_a_process_killed_while_saving_leaves_no_staging_directory_or_temp_file(tmp_path):
    """Deterministic where the loop above is random: a save and an atomic write take
    milliseconds. What a dead writer left goes when the service sees one of its jobs die
    (killed, or cancelled) and when it restarts."""
    models, flag = tmp_path / "models", tmp_path / "saving"
    service = Service(models, tmp_path, env=KEEP_ALL)
    client = service.start()
    try:
        assert finished_job(client, post_train(client).json()["id"])["state"] == "succeeded"
        for end in ("killed", "cancelled", "restart"):
            _killed_while_saving(models, flag)
            if end == "restart":
                client.close()
                service.kill()
                client = service.start()
            else:
                job_id = post_train(client, {"gate": str(tmp_path / "never")}).json()["id"]
                if end == "killed":
                    assert wait_until(lambda: job_record(models / "tiny", job_id)["pid"], 10)
                    kill_group(job_record(models / "tiny", job_id)["pid"])
                    assert finished_job(client, job_id)["state"] == "failed"
                else:
                    assert client.delete(f"/train/{job_id}").status_code == 200
            assert store_leftovers(models / "tiny") == [], end
        assert client.post("/predict", json=EXAMPLE).status_code == 200
    finally:
        client.close()
        service.stop()


def _post_quietly(client, path: str) -> None:
    try:
        client.post(path)
    except Exception:  # noqa: BLE001 - the service is killed under this request on purpose
        pass


class SmallDisk:
    """A tmpfs of a few hundred KiB as the models directory; ``fill(free)`` leaves about
    ``free`` bytes, ``release()`` frees the filler."""

    def __init__(self, path: Path, size_kib: int = 512):
        self.path = path
        path.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)], check=True)
        self.filler = path / "filler"

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int) -> None:
        self.release()
        with open(self.filler, "wb") as fh:
            fh.write(b"\0" * max(0, self.free() - leave - 4096))
        while self.free() > leave:  # tmpfs counts whole pages: top up to the exact page
            with open(self.filler, "ab") as fh:
                fh.write(b"\0" * 4096)

    def release(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


def test_a_full_disk_while_saving_fails_the_job_and_training_works_once_there_is_room(tmp_path):
    disk = SmallDisk(tmp_path / "disk")
    store = disk.path / "tiny"
    service = Service(disk.path, tmp_path, env=KEEP_ALL)
    client = service.start()
    figures = {"disk": "tmpfs", "attempts": 0, "train_refused_507": 0, "jobs_failed": 0, "jobs_succeeded": 0,
               "stuck_states": 0, "leftovers": 0, "server_errors": 0}
    try:
        assert finished_job(client, post_train(client).json()["id"])["state"] == "succeeded"
        for pages in [p for p in range(0, 7) for _ in range(scale(1, 8))]:
            figures["attempts"] += 1
            disk.fill(pages * 4096)
            resp = post_train(client)
            if resp.status_code == 202:
                job_id = resp.json()["id"]
                wait_until(lambda: not alive(job_record(store, job_id).get("pid")), 60, 0.1)
                answers = [client.get(f"/train/{job_id}") for _ in range(3)]  # while the disk is still full
                figures["server_errors"] += sum(a.status_code >= 500 and a.status_code != 507 for a in answers)
                disk.release()
                state = finished_job(client, job_id)["state"]
                figures["jobs_failed" if state == "failed" else "jobs_succeeded"] += 1
            else:
                assert resp.status_code == 507, resp.text  # a full disk is said so, not a bare 500
                assert resp.json()["error"] == "InsufficientStorage"
                figures["train_refused_507"] += 1
                disk.release()
            stuck = wait_until(lambda: not stuck_jobs(client), 10) is None
            figures["stuck_states"] += stuck
            figures["leftovers"] += len(store_leftovers(store))
            assert not stuck and not store_leftovers(store), (pages, client.get("/jobs").json(), store_leftovers(store))
            assert client.post("/predict", json=EXAMPLE).status_code == 200
        assert figures["server_errors"] == 0
        resp = post_train(client)
        assert resp.status_code == 202 and finished_job(client, resp.json()["id"])["state"] == "succeeded"
    finally:
        record("crash_store_full_disk", figures)
        client.close()
        service.stop()
        disk.unmount()


def test_a_flipped_byte_in_an_artifact_falls_back_and_training_works(tmp_path):
    rng = random.Random(7)
    models = tmp_path / "models"
    store = models / "tiny"
    service = Service(models, tmp_path, env=KEEP_ALL)
    client = service.start()
    figures = {"flips": 0, "restarts": 0, "fallbacks": 0, "refused_activations": 0}
    try:
        for _ in range(2):
            assert finished_job(client, post_train(client).json()["id"])["state"] == "succeeded"
        for _ in range(scale(1, 10)):
            active = json.loads((store / "active.json").read_text())["tiny"]
            artifact = store / active / "artifacts" / "model.json"
            data = bytearray(artifact.read_bytes())
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            artifact.write_bytes(bytes(data))
            figures["flips"] += 1
            refused = client.post(f"/models/{active}/activate")
            assert refused.status_code == 500 and refused.json()["error"] == "IntegrityError", refused.text
            figures["refused_activations"] += 1
            client.close()
            service.kill()
            client = service.start()
            figures["restarts"] += 1
            ready = client.get("/health/ready").json()
            assert ready["model_versions"]["tiny"] != active and active in ready["fallbacks"]["tiny"], ready
            figures["fallbacks"] += 1
            assert client.post("/predict", json=EXAMPLE).status_code == 200
            job = post_train(client, {**SMALL_JOB, "seed": rng.randrange(100)})
            assert job.status_code == 202 and finished_job(client, job.json()["id"])["state"] == "succeeded"
            assert not store_leftovers(store) and not stuck_jobs(client)
    finally:
        record("crash_store_flipped_byte", figures)
        client.close()
        service.stop()

