"""The serving side of the model store: which version of each line is loaded, activation
(load, verify, warm, then one swap) and what happens when a training job ends."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from fastapi.concurrency import run_in_threadpool

from kryptobot.files import utc_now
from kryptobot.jobs import JobRunner
from kryptobot.runtime import ModelRuntime, ModelVersion
from kryptobot.settings import Settings
from kryptobot.store import ModelStore
from services.framework.observability import Metrics

log = logging.getLogger("kryptobot.service")


@dataclass
class ModelRegistry:
    """Everything a model service's request handler may touch; lives on ``app.state.svc``."""

    settings: Settings
    runtime: ModelRuntime
    store: ModelStore
    runner: JobRunner
    metrics: Metrics
    models: dict[str, ModelVersion] = field(default_factory=dict)
    load_errors: dict[str, str] = field(default_factory=dict)
    activation_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    watchers: set = field(default_factory=set)

    def versions(self, models: dict[str, ModelVersion] | None = None) -> dict[str, str]:
        """Active version per line (of ``models``, a snapshot, when given)."""
        return {line: m.version for line, m in (self.models if models is None else models).items()}

    async def activate_stored(self) -> None:
        """At start-up: load every line's active version; a failure is reported, not fatal."""
        for line, version in self.store.active().items():
            try:
                await self.activate(version)
            except Exception as exc:  # noqa: BLE001 - stay up and say why in /health/ready
                self.load_errors[line] = f"{version}: {exc}"
                log.error("could not load active %s: %s", version, exc)

    async def activate(self, version: str) -> ModelVersion:
        """Load, verify and warm ``version`` off the event loop, then switch to it atomically.

        Requests in flight keep the model object they started with, so none sees a half
        loaded model; a version that fails to load leaves the active one serving.
        """
        async with self.activation_lock:
            model = await run_in_threadpool(self._load_and_warm, version)
            line = model.line if model.stored_metadata is None else model.stored_metadata["line"]
            self.store.set_active(line, version)
            self.models = {**self.models, line: model}
            self.load_errors.pop(line, None)
            self.metrics.active.clear()
            for ln, m in self.models.items():
                self.metrics.active.labels(self.runtime.name, ln, m.version).set(1)
            log.info("activated %s", version)
            return model

    def _load_and_warm(self, version: str) -> ModelVersion:
        model = self.runtime.load_version(self.store, version)
        model.warmup()
        return model

    def start_job(self, kind: str, config: dict) -> dict:
        """Start a training job's process and watch it; the record as it is now."""
        record = self.runner.start(kind, config)
        task = asyncio.create_task(self._watch_job(record["id"]))
        self.watchers.add(task)
        task.add_done_callback(self.watchers.discard)
        return record

    async def _watch_job(self, job_id: str) -> None:
        """Wait for the job's process; activate what it trained (if asked)."""
        record = await run_in_threadpool(self.runner.wait, job_id)
        if record["state"] == "trained":
            try:
                if record["config"].get("activate", True):
                    for version in record["versions"]:
                        await self.activate(version)
                record = self.runner.update(job_id, state="succeeded", message="done", finished_at=utc_now())
            except Exception as exc:  # noqa: BLE001 - the job reports it; the old model keeps serving
                log.exception("activation after job %s failed", job_id)
                record = self.runner.update(job_id, state="failed", error=f"activation failed: {exc}", finished_at=utc_now())
        self.metrics.jobs.labels(self.runtime.name, record["state"]).inc()

    def stop_watching(self) -> None:
        for task in list(self.watchers):
            task.cancel()
