"""Where heavy work runs: this machine's processes, or a Ray cluster.

A caller asks :func:`workers` for the place its settings name (``KRYPTOBOT_RAY_ADDRESS``,
``Settings.ray_address``) and maps a function over its inputs there, with one call
whatever the place::

    pool = parallel.workers(settings.ray_address)
    results = pool.map(run_fold, tasks, n_jobs=spec.n_jobs)

* No address: joblib's loky processes on this machine (one task in the calling process
  when only one runs at a time).
* An address: Ray tasks (one CPU each) on the cluster whose head answers there; this
  process connects once and stays connected. Plain Ray tasks rather than joblib's Ray
  backend: that backend rewires joblib's ``PicklingPool`` for the whole process and starts
  a fresh actor pool (new processes, imports paid again) for every ``Parallel`` call,
  where tasks reuse the cluster's warm workers and fail one by one.

What a caller must provide: ``fn`` a top-level function of an importable module and
inputs of plain values, so they pickle by reference and by value. Ray workers import
``fn``'s module: on this machine (``make ray``'s head) they run this venv's Python, which
finds the project through its editable install, and Ray also puts the driver's working
directory on their path; on a real cluster every node must run the project's image (same
Python, same packages, the project installed) and see the files the inputs name at the
same paths.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

from joblib import Parallel, delayed

from kryptobot.errors import KryptoError, ServiceUnavailable

CONNECT_TIMEOUT_SECONDS = 3.0  # a head that does not accept a TCP connection in this long is down
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Ray swaps a loopback address for the machine's outward IP, where a head started on
# 127.0.0.1 does not listen, unless this is 0 (ray._private.services.resolve_ip_for_localhost)
_LOOPBACK_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_CONNECTING = threading.Lock()


@dataclass(frozen=True)
class Workers:
    """Where a batch of heavy work runs: ``"local"`` (this machine's processes) or ``"ray"``
    (the cluster whose head answers at ``address``)."""

    backend: Literal["local", "ray"]
    address: str | None = None

    def count(self, n_jobs: int | None, tasks: int) -> int:
        """Tasks run at once: ``n_jobs`` (default: every core of this machine, or of the
        cluster), at most one per task."""
        cores = _cluster_cpus(self.address) if self.backend == "ray" else (os.cpu_count() or 1)
        return max(1, min(tasks, n_jobs or cores))

    def map(self, fn: Callable[[Any], Any], items: Sequence, n_jobs: int | None = None) -> list:
        """``[fn(item) for item in items]``, in that order, ``count(n_jobs)`` at a time.

        A task's exception is raised here (on Ray, as an exception of the same type); the
        tasks still running are then cancelled.
        """
        if not items:
            return []
        at_once = self.count(n_jobs, len(items))
        if self.backend == "local":
            return Parallel(n_jobs=at_once, backend="loky")(delayed(fn)(item) for item in items)
        return _ray_map(fn, list(items), at_once)

    def summary(self) -> dict:
        return {"backend": self.backend, "address": self.address}


def workers(address: str | None) -> Workers:
    """The place heavy work runs: the Ray cluster at ``address`` (connected now, once per
    process), or this machine's processes when ``address`` is None.

    Raises ServiceUnavailable naming the address when no head answers there, within
    seconds (Ray itself would retry for minutes).
    """
    if address is None:
        return Workers("local")
    _connect(address)
    return Workers("ray", address)


def worker_info() -> dict:
    """Where the calling code runs: host, process, and the Ray node when it runs as a Ray task."""
    info = {"host": socket.gethostname(), "pid": os.getpid(), "ray_node_id": None}
    if "ray" in sys.modules:  # never imported by work that runs locally
        import ray

        if ray.is_initialized() and ray.get_runtime_context().get_task_id() is not None:
            info["ray_node_id"] = ray.get_runtime_context().get_node_id()
    return info


def _host_port(address: str) -> tuple[str, int] | None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def _connect(address: str) -> None:
    target = _host_port(address)
    if target is not None:
        try:
            socket.create_connection(target, timeout=CONNECT_TIMEOUT_SECONDS).close()
        except OSError as exc:
            raise ServiceUnavailable(f"no Ray head answers at {address} (KRYPTOBOT_RAY_ADDRESS): {exc}") from exc
    loopback = target is not None and target[0] in LOOPBACK and not address.startswith("ray://")
    with _CONNECTING:
        if loopback and "ray" not in sys.modules:
            os.environ.setdefault(_LOOPBACK_VAR, "0")  # read by Ray when it is imported, just below
        try:
            import ray
        except ImportError as exc:
            raise KryptoError(f"KRYPTOBOT_RAY_ADDRESS is {address} but Ray is not installed here "
                              "(the project's `ray` extra)") from exc

        if ray.is_initialized():  # Ray keeps one connection per process: the first address wins
            if target is not None and not address.startswith("ray://"):
                connected = ray.get_runtime_context().gcs_address
                if not _same_place(target, _host_port(connected)):
                    raise KryptoError(f"this process is connected to the Ray cluster at {connected}, not {address}")
            return
        if loopback and os.environ.get(_LOOPBACK_VAR) != "0":
            raise KryptoError(f"Ray was imported before connecting to {address}: set {_LOOPBACK_VAR}=0 in the environment "
                              "so that it keeps the loopback address")
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        except ConnectionError as exc:
            raise ServiceUnavailable(f"the Ray head at {address} (KRYPTOBOT_RAY_ADDRESS) refused the connection: {exc}") from exc


def _same_place(a: tuple[str, int], b: tuple[str, int] | None) -> bool:
    try:
        return b is not None and a[1] == b[1] and socket.gethostbyname(a[0]) == socket.gethostbyname(b[0])
    except OSError:
        return False


def _cluster_cpus(address: str | None) -> int:
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus < 1:
        raise ServiceUnavailable(f"the Ray cluster at {address} has no CPU to run tasks on")
    return cpus


def _ray_map(fn: Callable, items: list, at_once: int) -> list:
    import ray

    # one CPU per task, as a loky process; one retry when a worker or its node is lost
    remote = ray.remote(num_cpus=1, max_retries=1)(fn)
    results: list = [None] * len(items)
    waiting = list(enumerate(items))[::-1]
    running: dict = {}
    try:
        for _ in range(len(items)):  # one task finishes per round
            while waiting and len(running) < at_once:
                index, item = waiting.pop()
                running[remote.remote(item)] = index
            (done,), _ = ray.wait(list(running), num_returns=1)
            results[running.pop(done)] = ray.get(done)
    except BaseException:
        for ref in running:
            ray.cancel(ref)
        raise
    return results
