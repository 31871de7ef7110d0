"""``create_model_app``: every model service's HTTP surface, written once.

A service supplies a :class:`kryptobot.runtime.ModelRuntime` subclass; this gives it the
endpoints of ``docs/architecture.md`` on the shared base app (:mod:`.base`): the model
registry (:mod:`.registry`) serves the active versions, the routes (:mod:`.routes`) call
only the runtime contract.
"""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from kryptobot.jobs import JobRunner
from kryptobot.runtime import ModelRuntime
from kryptobot.settings import Settings
from kryptobot.store import ModelStore
from services.framework.base import create_base_app
from services.framework.observability import configure_logging
from services.framework.openapi import declare_responses, error_responses
from services.framework.registry import ModelRegistry
from services.framework.replication import Replicator, replica_id
from services.framework.routes import add_model_routes
from services.framework.schemas import NotReadyBody
from services.framework.train_lock import LOCK_FILE, TrainLock

#: What the model routes can answer besides what their shape implies (see :mod:`.openapi`):
#: 503 where an active model is needed, the 409 of cancelling a finished job, the 404 of an
#: unknown ``?version=``, and the two kinds of report file.
MODEL_ROUTE_RESPONSES = {
    ("GET", "/health/ready"): error_responses(503, model=NotReadyBody),
    ("POST", "/predict"): error_responses(503),
    ("GET", "/model"): error_responses(503),
    ("DELETE", "/train/{job_id}"): error_responses(409),
    ("GET", "/reports"): error_responses(404),
    ("GET", "/reports/{name}"): {
        200: {"description": "The file", "content": {"image/png": {}, "application/json": {}}},
        **error_responses(503),
    },
}


def runtime_path(runtime_cls: type[ModelRuntime]) -> str:
    """``"module:Class"``: how the training process imports the runtime."""
    return f"{runtime_cls.__module__}:{runtime_cls.__qualname__}"


def create_model_app(runtime_cls: type[ModelRuntime], settings: Settings | None = None) -> FastAPI:
    """Build the FastAPI app of one model service."""
    settings = settings or Settings()
    name = runtime_cls.name

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        configure_logging(name, settings.log_format)
        store = ModelStore(settings.models_dir, name, settings.signing_key_bytes())
        replica = replica_id()
        train_lock = TrainLock(store.dir / LOCK_FILE, replica)
        # other replicas may share the store: their jobs are orphans only while none holds the lock
        runner = JobRunner(runtime_path(runtime_cls), settings, store, fail_orphans=False)
        train_lock.while_idle(runner.fail_orphans)
        registry = ModelRegistry(settings, runtime_cls(settings), store, runner, app.state.metrics, train_lock)
        app.state.svc = registry
        app.state.replicator = Replicator(registry, settings, replica)
        await registry.activate_stored()
        await app.state.replicator.start()
        yield
        await app.state.replicator.stop()
        registry.stop_watching()

    app = create_base_app(name, f"KryptoBot {name} service", runtime_cls.__doc__, settings, lifespan)
    add_model_routes(app, runtime_cls, settings.max_batch)
    declare_responses(app, MODEL_ROUTE_RESPONSES)
    return app
