"""The serving side of the model store: which version of each line is loaded, activation
(load, verify, warm, then one swap) and what happens when a training job ends."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Callable

from fastapi.concurrency import run_in_threadpool

from kryptobot.files import utc_now
from kryptobot.jobs import JobRunner
from kryptobot.runtime import ModelRuntime, ModelVersion
from kryptobot.settings import Settings
from kryptobot.store import CorruptPointer, ModelStore
from services.framework.observability import Metrics
from services.framework.train_lock import TrainLock

log = logging.getLogger("kryptobot.service")


@dataclass
class ModelRegistry:
    """Everything a model service's request handler may touch; lives on ``app.state.svc``."""

    settings: Settings
    runtime: ModelRuntime
    store: ModelStore
    runner: JobRunner
    metrics: Metrics
    train_lock: TrainLock  # one job at a time across the replicas sharing the store
    models: dict[str, ModelVersion] = field(default_factory=dict)
    load_errors: dict[str, str] = field(default_factory=dict)
    fallbacks: dict[str, str] = field(default_factory=dict)  # line -> why another version serves
    activation_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    watchers: set = field(default_factory=set)
    #: called with (line, version) after this replica wrote the pointer (replication announces it)
    on_activate: list[Callable[[str, str], None]] = field(default_factory=list)

    def versions(self, models: dict[str, ModelVersion] | None = None) -> dict[str, str]:
        """Active version per line (of ``models``, a snapshot, when given)."""
        return {line: m.version for line, m in (self.models if models is None else models).items()}

    async def activate_stored(self) -> None:
        """At start-up: serve every line's active version, or fall back, never crash-loop.

        An active version that no longer loads (a flipped byte, a bad signature, a library
        that cannot read it) gives way to the newest older version of its line that loads; a
        damaged ``active.json`` to the newest loadable version of every line, and is then
        rewritten. Each fallback is logged and named in ``/health/ready``.
        """
        for name in self.store.remove_stale_staging():
            log.warning("removed %s, left by a training process killed while saving", name)
        try:
            pointers, repair = self.store.active(), False
        except CorruptPointer as exc:
            log.error("%s; falling back to the newest loadable version of each line", exc)
            pointers, repair = {m["line"]: None for m in self.store.versions()}, True
        for line, version in pointers.items():
            chosen = await self._activate_or_fall_back(line, version)
            if chosen is None and repair:
                self.load_errors[line] = "active.json was damaged and no stored version of this line loads"
        if repair:
            self.store.replace_active(self.versions())

    async def _activate_or_fall_back(self, line: str, version: str | None) -> str | None:
        """Serve ``version`` (the pointer's) or the newest older version that loads.

        The pointer is not rewritten here: replicas share it, and a version one replica
        cannot load (its disk, its libraries) must not roll the others back. The fallback
        is this replica's, named in its ``/health/ready``; a damaged pointer is repaired by
        the caller.
        """
        problems = []
        if version is not None:
            try:
                await self.activate(version, write_pointer=False)
                return version
            except Exception as exc:  # noqa: BLE001 - stay up and say why in /health/ready
                problems.append(f"{version}: {exc}")
                log.error("could not load active %s: %s", version, exc)
        for meta in reversed(self.store.versions(line)):
            if meta["version"] == version or (self.store.promotion(meta["version"]) or {}).get("activated") is False:
                continue  # nor one the promotion gate (or activate=false) kept from serving
            try:
                await self.activate(meta["version"], write_pointer=False)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{meta['version']}: {exc}")
                continue
            reason = f"fell back to {meta['version']}" + (f" because {problems[0]}" if problems else "")
            self.fallbacks[line] = reason
            log.warning("%s: %s", line, reason)
            return meta["version"]
        if problems:
            self.load_errors[line] = "; ".join(problems)
        return None

    async def activate(self, version: str, *, write_pointer: bool = True) -> ModelVersion:
        """Load, verify and warm ``version`` off the event loop, then switch to it atomically.

        Requests in flight keep the model object they started with, so none sees a half
        loaded model; a version that fails to load leaves the active one serving.
        ``write_pointer=False`` follows a pointer another replica wrote: no write, no announcement.
        """
        async with self.activation_lock:
            model = await run_in_threadpool(self._load_and_warm, version)
            line = model.line if model.stored_metadata is None else model.stored_metadata["line"]
            if write_pointer:
                self.store.set_active(line, version)
            self.models = {**self.models, line: model}
            self.load_errors.pop(line, None)
            self.metrics.active.clear()
            for ln, m in self.models.items():
                self.metrics.active.labels(self.runtime.name, ln, m.version).set(1)
            log.info("activated %s", version)
        if write_pointer:
            for listener in self.on_activate:
                listener(line, version)
        return model

    def _load_and_warm(self, version: str) -> ModelVersion:
        model = self.runtime.load_version(self.store, version)
        model.warmup()
        return model

    def start_job(self, kind: str, config: dict) -> dict:
        """Start a training job's process and watch it; the record as it is now. Conflict
        (409) naming the holder while any replica sharing the store runs a job."""
        self.train_lock.acquire(kind)
        try:
            self.runner.fail_orphans()  # holding the lock, no job runs: any left running died with its replica
            record = self.runner.start(kind, config)
        except BaseException:
            self.train_lock.release()
            raise
        self.train_lock.record_job(record["id"])
        task = asyncio.create_task(self._watch_job(record["id"]))
        self.watchers.add(task)
        task.add_done_callback(self.watchers.discard)
        return record

    async def _watch_job(self, job_id: str) -> None:
        """Wait for the job's process; put what it trained through the promotion gate; then
        let the next job start."""
        try:
            await self._finish_job(job_id)
        finally:
            self.train_lock.release()

    async def _finish_job(self, job_id: str) -> None:
        record = await run_in_threadpool(self.runner.wait, job_id)
        if record["state"] == "trained":
            try:
                outcomes = {v: await self._promote(v, record["config"].get("activate", "if_better")) for v in record["versions"]}
                details = {**(record.get("details") or {}), "promotion": outcomes}
                message = "; ".join(f"{v}: {o['outcome']}" for v, o in outcomes.items()) or "done"
                record = self.runner.update(job_id, state="succeeded", message=message, details=details, finished_at=utc_now())
            except Exception as exc:  # noqa: BLE001 - the job reports it; the old model keeps serving
                log.exception("activation after job %s failed", job_id)
                record = self.runner.update(job_id, state="failed", error=f"activation failed: {exc}", finished_at=utc_now())
        self.metrics.jobs.labels(self.runtime.name, record["state"]).inc()

    async def _promote(self, version: str, activate: str | bool) -> dict:
        """The gate's verdict on a freshly trained ``version`` against its line's active one,
        acted on as ``activate`` says ("if_better", true, false), and recorded with the version."""
        candidate = self.store.metadata(version)
        line = candidate["line"]
        champion_version = self.versions().get(line)
        champion = None if champion_version is None else self.store.metadata(champion_version)
        try:
            verdict = self.runtime.promotion(candidate, champion).to_dict()
        except Exception as exc:  # noqa: BLE001 - a broken rule must not activate anything by accident
            log.exception("promotion check of %s failed", version)
            verdict = {"promote": False, "reason": f"the promotion check failed: {exc}"}
        activated = activate is True or (activate == "if_better" and verdict["promote"])
        if activated:
            outcome = f"activated: {verdict['reason']}" if verdict["promote"] else (
                f"activated on request (activate=true) although: {verdict['reason']}")
        elif activate is False:
            outcome = f"stored inactive on request (activate=false); the gate says: {verdict['reason']}"
        else:
            outcome = f"stored inactive: {verdict['reason']}"
        record = {**verdict, "activate": activate, "activated": activated, "outcome": outcome, "decided_at": utc_now()}
        if activated:
            await self.activate(version)
        self.store.set_promotion(version, record)
        log.info("%s: %s", version, outcome)
        return record

    def not_ready_detail(self) -> str | None:
        """Why a line with stored versions serves nothing: its newest version's promotion
        outcome (None when every line with versions serves, or nothing was ever trained)."""
        reasons = []
        for line in self.runtime.lines:
            if line in self.models:
                continue
            stored = self.store.versions(line)
            promotion = self.store.promotion(stored[-1]["version"]) if stored else None
            if promotion and not promotion.get("activated"):
                reasons.append(
                    f"{line}: {stored[-1]['version']} was {promotion['outcome']}; activate it with "
                    f"POST /models/{stored[-1]['version']}/activate or train again"
                )
        return "; ".join(reasons) or None

    def stop_watching(self) -> None:
        for task in list(self.watchers):
            task.cancel()
