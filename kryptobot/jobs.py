"""Background training jobs, each in its own process.

Training is CPU-heavy (and TensorFlow holds the GIL in places), so it never runs in the
serving process: :class:`JobRunner` starts ``python -m kryptobot.jobs <job file>`` and the
child reports state and progress by atomically rewriting its JSON job file. A job that
crashes or is killed cannot touch the active model: versions are only committed complete
(see :mod:`kryptobot.store`) and only the serving process activates them.

States: ``queued`` -> ``running`` -> ``trained`` (child done, versions committed) ->
``succeeded`` (the parent put them through the promotion gate, :mod:`kryptobot.promotion`)
| ``failed`` | ``cancelled``.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid
from pathlib import Path

from kryptobot.errors import Conflict, KryptoError, NotFound
from kryptobot.settings import Settings
from kryptobot.files import atomic_write_json, utc_now
from kryptobot.store import ModelStore

ACTIVE_STATES = ("queued", "running", "trained")
FINAL_STATES = ("succeeded", "failed", "cancelled")


def import_runtime(path: str):
    """``"package.module:ClassName"`` -> the class."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class JobRunner:
    """Starts, tracks and cancels one service's training jobs (at most one at a time)."""

    def __init__(self, runtime_path: str, settings: Settings, store: ModelStore, fail_orphans: bool = True):
        """``fail_orphans=False`` when other replicas share the store: one of them may be
        running a job now, so only unreadable records are replaced; the caller runs
        :meth:`fail_orphans` when no job can be running."""
        self.runtime_path = runtime_path
        self.settings = settings
        self.store = store
        self.dir = store.dir / "jobs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._procs: dict[str, subprocess.Popen] = {}
        self.fail_orphans(running=fail_orphans)
        self.prune(settings.keep_jobs)

    def start(self, kind: str, config: dict) -> dict:
        running = self.running()
        if running is not None:
            raise Conflict(f"training job {running['id']} is still {running['state']}", field="job")
        self.prune(self.settings.keep_jobs)  # here too: a service may run for months between restarts
        job_id = uuid.uuid4().hex[:12]
        record = {
            "id": job_id,
            "kind": kind,
            "state": "queued",
            "progress": 0.0,
            "message": "queued",
            "config": config,
            "metrics": None,
            "error": None,
            "versions": [],
            "created_at": utc_now(),
            "started_at": None,
            "finished_at": None,
            "pid": None,
        }
        spec = {
            "runtime": self.runtime_path,
            "kind": kind,
            "models_dir": str(self.settings.models_dir),
            "csv_dir": str(self.settings.csv_dir) if self.settings.csv_dir else None,
            "market_data_dir": str(self.settings.market_data_dir),
            "config_dir": str(self.settings.config_dir),
        }
        proc = None
        try:
            atomic_write_json(self._spec_path(job_id), spec)
            atomic_write_json(self._path(job_id), record)
            proc = subprocess.Popen(
                [sys.executable, "-m", "kryptobot.jobs", str(self._path(job_id))],
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to the service must not kill a job half-way
            )
            record = self.update(job_id, pid=proc.pid)
        except OSError:
            # a full disk: no half-made job may stay behind, least of all a child nobody
            # watches (it would leave its record `trained`, refusing every later job)
            if proc is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            self._spec_path(job_id).unlink(missing_ok=True)
            self._path(job_id).unlink(missing_ok=True)
            raise
        self._procs[job_id] = proc
        return record

    def get(self, job_id: str) -> dict:
        path = self._path(job_id)
        if not path.exists() or not job_id.isalnum():
            raise NotFound(f"unknown job {job_id!r}", field="job_id")
        record = json.loads(path.read_text())
        proc = self._procs.get(job_id)
        if record["state"] in ("queued", "running") and proc is not None and proc.poll() is not None:
            # The child exited without reporting an end: killed or crashed hard, maybe mid-write.
            code = proc.returncode
            self.store.remove_stale_staging()
            record = self.update(
                job_id,
                state="failed",
                error=f"training process exited with code {code} before finishing",
                finished_at=utc_now(),
            )
        return record

    def list(self) -> list[dict]:
        return sorted(
            (self.get(p.stem) for p in self.dir.glob("*.json") if not p.name.endswith(".spec.json")),
            key=lambda r: r["created_at"],
        )

    def running(self) -> dict | None:
        for record in self.list():
            if record["state"] in ACTIVE_STATES:
                return record
        return None

    def cancel(self, job_id: str) -> dict:
        record = self.get(job_id)
        if record["state"] in FINAL_STATES or record["state"] == "trained":
            raise Conflict(f"job {job_id} is already {record['state']}", field="job_id")
        proc = self._procs.get(job_id)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.store.remove_stale_staging()  # what it was writing when killed
        return self.update(job_id, state="cancelled", error="cancelled by request", finished_at=utc_now())

    def wait(self, job_id: str, timeout: float | None = None) -> dict:
        """Block until the child process exits (call from a worker thread)."""
        proc = self._procs.get(job_id)
        if proc is not None:
            proc.wait(timeout=timeout)
        return self.get(job_id)

    def update(self, job_id: str, **changes) -> dict:
        record = json.loads(self._path(job_id).read_text())
        record.update(changes)
        atomic_write_json(self._path(job_id), record)
        return record

    def prune(self, keep_last: int) -> int:
        """Forget all but the newest ``keep_last`` finished job records (never a running one)."""
        finished = [r for r in self.list() if r["state"] in FINAL_STATES]
        old = finished[: max(0, len(finished) - keep_last)]
        for record in old:
            self._path(record["id"]).unlink(missing_ok=True)
            self._spec_path(record["id"]).unlink(missing_ok=True)
            self._procs.pop(record["id"], None)
        return len(old)

    def fail_orphans(self, running: bool = True) -> None:
        """Jobs left queued, running or trained by a previous process of this service can
        never finish (their watcher died with it); an unreadable record (a torn write, a
        full disk) becomes a failed one instead of stopping the service from starting.
        ``running=True`` only when no process sharing the store can be running a job."""
        for path in self.dir.glob("*.json"):
            if path.name.endswith(".spec.json"):
                continue
            try:
                record = json.loads(path.read_text())
                if not isinstance(record, dict) or "state" not in record:
                    raise ValueError("not a job record")
            except (OSError, ValueError) as exc:
                atomic_write_json(path, _unreadable_record(path.stem, exc))
                continue
            if running and record["state"] in ACTIVE_STATES:
                _kill_orphan(record.get("pid"), path)  # else it would write its states over this one
                record.update(state="failed", error="interrupted: the service restarted", finished_at=utc_now())
                atomic_write_json(path, record)

    def _path(self, job_id: str) -> Path:
        return self.dir / f"{job_id}.json"

    def _spec_path(self, job_id: str) -> Path:
        return self.dir / f"{job_id}.spec.json"


def _kill_orphan(pid: int | None, job_file: Path) -> None:
    """SIGKILL the process group of a job whose service died, when it still runs here: the
    pid must be a ``kryptobot.jobs`` process of this very job file, not a reused pid."""
    try:
        argv = Path(f"/proc/{int(pid)}/cmdline").read_bytes().split(b"\0")
    except (OSError, TypeError, ValueError):
        return  # gone, or on another host (a replica's), or no /proc
    if b"kryptobot.jobs" in argv and str(job_file).encode() in argv:
        try:
            os.killpg(int(pid), signal.SIGKILL)  # its own session: the group is the job
        except ProcessLookupError:
            pass


def _unreadable_record(job_id: str, exc: Exception) -> dict:
    return {
        "id": job_id, "kind": "unknown", "state": "failed", "progress": 0.0, "message": None,
        "config": {}, "metrics": None, "error": f"the job record was unreadable ({exc}); replaced at start-up",
        "versions": [], "created_at": utc_now(), "started_at": None, "finished_at": utc_now(), "pid": None,
    }


class JobAbandoned(SystemExit):
    """The job's record already ended (failed by a restarted service, cancelled): its
    process stops without writing, so an orphan never brings its job back to life."""


def _own_record(job_file: Path) -> dict:
    """The job's record, as the job process may still change it."""
    record = json.loads(job_file.read_text())
    if record.get("state") in FINAL_STATES:
        raise JobAbandoned(f"job {record.get('id')} is already {record['state']}: stopping without writing")
    return record


class _ChildReporter:
    """Progress callback used inside the job process; rewrites the job file (throttled)."""

    def __init__(self, path: Path):
        self.path = path
        self._last = 0.0

    def __call__(self, fraction: float | None = None, message: str | None = None, force: bool = False, **extra):
        now = time.monotonic()
        if not force and now - self._last < 0.25:
            return
        self._last = now
        record = _own_record(self.path)
        if fraction is not None:
            record["progress"] = round(max(0.0, min(1.0, float(fraction))), 4)
        if message is not None:
            record["message"] = message
        if extra:
            record.setdefault("details", {}).update(extra)
        atomic_write_json(self.path, record)


def run_job(job_file: Path) -> int:
    """Entry point of the job process: train, commit the versions, report."""
    from kryptobot.runtime import TrainContext

    job_file = Path(job_file)
    spec = json.loads(job_file.with_suffix(".spec.json").read_text())
    record = json.loads(job_file.read_text())
    report = _ChildReporter(job_file)

    def finish(**changes):
        rec = _own_record(job_file)
        rec.update(changes, finished_at=utc_now() if changes.get("state") != "trained" else None)
        atomic_write_json(job_file, rec)

    try:
        runtime_cls = import_runtime(spec["runtime"])
        settings = Settings(models_dir=spec["models_dir"], csv_dir=spec["csv_dir"], config_dir=spec["config_dir"],
                            market_data_dir=spec["market_data_dir"])
        runtime = runtime_cls(settings)
        store = ModelStore(settings.models_dir, runtime.name, settings.signing_key_bytes())
        kind = next(k for k in runtime.jobs() if k.path.strip("/") == spec["kind"])
        config = kind.config.model_validate(record["config"])
        finish(state="running", started_at=utc_now(), message="loading data")
        ctx = TrainContext(settings=settings, store=store, runtime=runtime, progress=report)
        trained = getattr(runtime, kind.method)(config, ctx)
        versions = []
        for model in trained:
            report(message=f"saving {model.line}", force=True)
            versions.append(store.save(model))
        metrics = {store.metadata(v)["line"]: store.metadata(v).get("metrics") for v in versions}
        store.prune(keep_last=max(settings.keep_versions, len(versions)))  # here, where versions are made
        finish(state="trained", progress=1.0, message="trained; activating", versions=versions, metrics=metrics)
        return 0
    except KryptoError as exc:
        finish(state="failed", error=f"{type(exc).__name__}: {exc.message}")
        return 1
    except Exception as exc:  # noqa: BLE001 - the job must report whatever went wrong
        traceback.print_exc()
        finish(state="failed", error=f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(run_job(Path(sys.argv[1])))
