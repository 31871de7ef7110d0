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
from services.framework.registry import ModelRegistry
from services.framework.routes import add_model_routes


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
        store = ModelStore(settings.models_dir, name)
        registry = ModelRegistry(
            settings, runtime_cls(settings), store, JobRunner(runtime_path(runtime_cls), settings, store), app.state.metrics
        )
        app.state.svc = registry
        await registry.activate_stored()
        yield
        registry.stop_watching()

    app = create_base_app(name, f"KryptoBot {name} service", runtime_cls.__doc__, settings, lifespan)
    add_model_routes(app, runtime_cls, settings.max_batch)
    return app
