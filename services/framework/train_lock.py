"""At most one training job per model store, across every replica that mounts it.

The lock is an exclusive ``flock`` on ``<models_dir>/<service>/train.lock``, on the store's
own volume rather than in Redis: it guards exactly the store the jobs write to, works for a
service that runs without Redis, and the kernel drops it the moment the holding process dies
(SIGKILL included), so there is no lease to renew or expiry to tune. The file's content names
the holder (replica, job, since) for the 409 the other replicas answer.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable

from kryptobot.errors import Conflict
from kryptobot.files import utc_now

log = logging.getLogger("kryptobot.service")
LOCK_FILE = "train.lock"
_HOLDER_BYTES = 4096
_HOLDER_READS = 20


class TrainLock:
    """Taken by :meth:`acquire` when a job starts, released by :meth:`release` once the
    job's watcher is done with it (promotion included)."""

    def __init__(self, path: Path, replica: str):
        self.path = Path(path)
        self.replica = replica
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, kind: str) -> None:
        """Take the lock for a ``kind`` job, or raise Conflict (409) naming who holds it."""
        if self._fd is not None:
            # checked here, not left to flock: on NFS Linux emulates flock with POSIX locks,
            # which one process can take twice
            raise Conflict(self._describe(self._read(self._fd)), field="job")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o664)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(fd)
            os.close(fd)
            raise Conflict(self._describe(holder), field="job") from None
        except OSError as exc:  # a filesystem without locks: serve on, one job per process
            log.warning("cannot lock %s (%s): training jobs are serialised per replica only", self.path, exc)
        self._fd = fd
        try:
            self._write({"replica": self.replica, "pid": os.getpid(), "kind": kind, "job": None, "since": utc_now()})
        except OSError:  # a full disk: a lock kept here would refuse every later job
            self.release()
            raise

    def record_job(self, job_id: str) -> None:
        """Name the started job in the lock file (what a refused replica reports)."""
        if self._fd is not None:
            try:
                self._write({**self._read(self._fd), "job": job_id})
            except OSError:  # a full disk: the name is for messages only, the job must be watched
                pass

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    def while_idle(self, action: Callable[[], object]) -> bool:
        """Run ``action`` only if no replica holds the lock (holding it meanwhile); whether it ran."""
        try:
            self.acquire("maintenance")
        except Conflict:
            return False
        try:
            action()
            return True
        finally:
            self.release()

    def _describe(self, holder: dict) -> str:
        if not holder.get("replica"):
            return "another replica is starting a training job of this service"
        job = f"training job {holder['job']}" if holder.get("job") else f"a {holder.get('kind', 'training')} job"
        where = "this replica" if holder["replica"] == self.replica else f"replica {holder['replica']}"
        return f"{job} is running on {where} (since {holder.get('since')}); one job per service at a time"

    def _write(self, holder: dict) -> None:
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(holder).encode(), 0)

    @classmethod
    def _read_holder(cls, fd: int) -> dict:
        """The holder's record; the holder writes it just after taking the lock, so an empty
        file is re-read for a moment (at most ~0.1 s, only on a refusal) before the 409 goes
        out without a name."""
        for _ in range(_HOLDER_READS):
            holder = cls._read(fd)
            if holder.get("replica"):
                return holder
            time.sleep(0.005)
        return holder

    @staticmethod
    def _read(fd: int) -> dict:
        try:
            holder = json.loads(os.pread(fd, _HOLDER_BYTES, 0) or b"{}")
        except ValueError:  # caught mid-write: the message stays generic
            return {}
        return holder if isinstance(holder, dict) else {}
