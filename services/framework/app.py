"""``create_model_app``: every model service's HTTP surface, written once.

A service supplies a :class:`kryptobot.runtime.ModelService` subclass; this module gives
it the endpoints of ``docs/architecture.md`` (health, predict, training jobs, versions,
activation, reports, metrics), one error shape, API-key auth and request metrics.

No ``from __future__ import annotations`` here: the request models are built at run time
from the service's schemas, and FastAPI must see them as real objects.
"""
import asyncio
import inspect
import json
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any

import numpy as np
from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ConfigDict, Field, create_model

from kryptobot.errors import ModelNotReady, NotFound, Unauthorized
from kryptobot.jobs import JobRunner
from kryptobot.runtime import JobKind, ModelService, ModelVersion
from kryptobot.settings import Settings
from kryptobot.store import ModelStore
from services.framework.docs import install_docs
from services.framework.errors import install_error_handlers
from services.framework.observability import Metrics, configure_logging, install_request_middleware
from services.framework.schemas import JobStatus, ModelInfo, ModelList, job_status

log = logging.getLogger("kryptobot.service")


def _json_default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class ServiceJSONResponse(JSONResponse):
    """JSON with datetimes and numpy scalars, without FastAPI's slower generic encoder."""

    def render(self, content) -> bytes:
        return json.dumps(content, default=_json_default, allow_nan=False, separators=(",", ":")).encode()


@dataclass
class ServiceState:
    """Everything a request handler may touch; lives on ``app.state.svc``."""

    settings: Settings
    service: ModelService
    store: ModelStore
    runner: JobRunner
    metrics: Metrics
    models: dict[str, ModelVersion] = field(default_factory=dict)
    load_errors: dict[str, str] = field(default_factory=dict)
    activation_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    watchers: set = field(default_factory=set)

    def versions(self) -> dict[str, str]:
        return {line: m.stored_metadata["version"] for line, m in self.models.items()}


def get_state(request: Request) -> ServiceState:
    return request.app.state.svc


State = Annotated[ServiceState, Depends(get_state)]


def require_api_key(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Mutating endpoints need ``X-API-Key`` when ``KRYPTOBOT_API_KEY`` is set."""
    expected = request.app.state.svc.settings.api_key
    if expected and x_api_key != expected:
        raise Unauthorized("missing or wrong API key", field="X-API-Key")


ApiKey = Depends(require_api_key)


async def activate(state: ServiceState, version: str) -> ModelVersion:
    """Load, verify and warm ``version`` off the event loop, then switch to it atomically.

    Requests in flight keep the model object they started with, so none sees a half
    loaded model; a version that fails to load leaves the active one serving.
    """
    async with state.activation_lock:
        model = await run_in_threadpool(_load_and_warm, state, version)
        line = model.stored_metadata["line"]
        state.store.set_active(line, version)
        state.models = {**state.models, line: model}
        state.load_errors.pop(line, None)
        state.metrics.active.clear()
        for ln, m in state.models.items():
            state.metrics.active.labels(state.service.name, ln, m.stored_metadata["version"]).set(1)
        log.info("activated %s", version)
        return model


def _load_and_warm(state: ServiceState, version: str) -> ModelVersion:
    model = state.service.load_version(state.store, version)
    model.warmup()
    return model


async def _watch_job(state: ServiceState, job_id: str) -> None:
    """Wait for the job's process; activate what it trained (if asked)."""
    record = await run_in_threadpool(state.runner.wait, job_id)
    if record["state"] == "trained":
        try:
            if record["config"].get("activate", True):
                for version in record["versions"]:
                    await activate(state, version)
            record = state.runner.update(job_id, state="succeeded", message="done", finished_at=_now())
        except Exception as exc:  # noqa: BLE001 - the job reports it; the old model keeps serving
            log.exception("activation after job %s failed", job_id)
            record = state.runner.update(job_id, state="failed", error=f"activation failed: {exc}", finished_at=_now())
    state.metrics.jobs.labels(state.service.name, record["state"]).inc()


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat()


def create_model_app(service_cls: type[ModelService], service_path: str, settings: Settings | None = None) -> FastAPI:
    """Build the FastAPI app of one model service.

    ``service_path`` (``"module:Class"``) is how the training process imports the service.
    """
    settings = settings or Settings()
    name = service_cls.name

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        configure_logging(name, settings.log_format)
        service = service_cls(settings)
        store = ModelStore(settings.models_dir, name)
        state = ServiceState(settings, service, store, JobRunner(service_path, settings, store), metrics)
        app.state.svc = state
        for line, version in store.active().items():
            try:
                await activate(state, version)
            except Exception as exc:  # noqa: BLE001 - stay up and say why in /health/ready
                state.load_errors[line] = f"{version}: {exc}"
                log.error("could not load active %s: %s", version, exc)
        yield
        for task in list(state.watchers):
            task.cancel()

    app = FastAPI(
        title=f"KryptoBot {name} service",
        version="0.1.0",
        description=inspect.cleandoc(service_cls.__doc__ or ""),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    install_error_handlers(app)
    metrics = Metrics(name)
    install_request_middleware(app, metrics)
    _add_health_routes(app)
    _add_predict_route(app, service_cls, settings)
    for kind in service_cls.jobs():
        _add_job_route(app, kind)
    _add_job_status_routes(app)
    _add_model_routes(app, service_cls.report_example)
    _add_metrics_route(app)
    return app


def _add_health_routes(app: FastAPI) -> None:
    @app.get("/health/live", tags=["health"], summary="The process is up")
    async def live():
        return {"status": "live"}

    @app.get("/health/ready", tags=["health"], summary="200 when an active model is loaded")
    async def ready(state: State):
        if state.models:
            return {"status": "ready", "model_versions": state.versions()}
        reason = "; ".join(f"{k}: {v}" for k, v in state.load_errors.items()) or "no active model: train one with POST /train"
        return JSONResponse({"status": "not ready", "error": "ModelNotReady", "detail": reason}, status_code=503)


def _add_predict_route(app: FastAPI, service_cls: type[ModelService], settings: Settings) -> None:
    fields: dict[str, Any] = {
        "instances": (
            list[service_cls.Instance],
            Field(min_length=1, max_length=settings.max_batch, description=f"1 to {settings.max_batch} instances"),
        )
    }
    if service_cls.PredictOptions is not None:
        fields["options"] = (service_cls.PredictOptions, Field(default_factory=service_cls.PredictOptions))
    example = service_cls.predict_example() if hasattr(service_cls, "predict_example") else None
    config = ConfigDict(extra="forbid", json_schema_extra={"examples": [example]} if example else None)
    PredictRequest = create_model(f"{service_cls.name.title()}PredictRequest", __config__=config, **fields)
    PredictResponse = create_model(
        f"{service_cls.name.title()}PredictResponse",
        predictions=(list[service_cls.Prediction], ...),
        model_version=(str, Field(description="active version (lines joined by '+')")),
        model_versions=(dict[str, str], Field(description="active version per line")),
    )

    @app.post("/predict", tags=["predict"], response_model=PredictResponse, summary="Score a batch of instances")
    async def predict(request: PredictRequest, state: State):
        models = state.models  # one snapshot for the whole batch, even if a switch happens now
        if not models:
            raise ModelNotReady("no active model: train one with POST /train", field="model")
        options = getattr(request, "options", None)
        results = await run_in_threadpool(state.service.predict, models, request.instances, options)
        state.metrics.predictions.labels(state.service.name).inc(len(results))
        versions = {line: m.stored_metadata["version"] for line, m in models.items()}
        # Returned as a ready response: the service builds plain dicts of the declared shape,
        # and re-validating them through the response model would cost more than the model.
        return ServiceJSONResponse({"predictions": results, "model_version": "+".join(versions.values()), "model_versions": versions})


def _add_job_route(app: FastAPI, kind: JobKind) -> None:
    Config = kind.config

    async def start_job(state: State, config: Annotated[Config, Body()] = None):  # type: ignore[valid-type]
        config = config if config is not None else Config()
        record = state.runner.start(kind.path.strip("/"), config.model_dump(mode="json"))
        task = asyncio.create_task(_watch_job(state, record["id"]))
        state.watchers.add(task)
        task.add_done_callback(state.watchers.discard)
        return JSONResponse(job_status(record).model_dump(mode="json"), status_code=202)

    app.post(
        kind.path,
        tags=["training"],
        status_code=202,
        response_model=JobStatus,
        summary=kind.summary,
        dependencies=[ApiKey],
        responses={409: {"description": "a job is already running"}},
    )(start_job)


def _add_job_status_routes(app: FastAPI) -> None:
    JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$", description="id returned by POST /train")]

    @app.get("/train/{job_id}", tags=["training"], response_model=JobStatus, summary="State of a training job")
    async def job(job_id: JobId, state: State):
        return job_status(state.runner.get(job_id))

    @app.delete("/train/{job_id}", tags=["training"], response_model=JobStatus, dependencies=[ApiKey], summary="Cancel a running job")
    async def cancel(job_id: JobId, state: State):
        # on the event loop, not a worker thread: a status read must not land between the
        # kill and the record update (it would report the cancelled job as crashed)
        return job_status(state.runner.cancel(job_id))

    @app.get("/jobs", tags=["training"], response_model=list[JobStatus], summary="All training jobs")
    async def jobs(state: State):
        return [job_status(r) for r in state.runner.list()]


def _add_model_routes(app: FastAPI, report_example: str) -> None:
    Version = Annotated[str, Path(description="a version listed by GET /models, e.g. signal-v1")]

    @app.get("/model", tags=["models"], response_model=ModelList, summary="Active model(s) metadata")
    async def model(state: State):
        if not state.models:
            raise ModelNotReady("no active model: train one with POST /train", field="model")
        return {"models": [ModelInfo.from_metadata(m.stored_metadata, active=True) for m in state.models.values()]}

    @app.get("/models", tags=["models"], response_model=ModelList, summary="All stored versions")
    async def models(state: State):
        active = set(state.store.active().values())
        return {"models": [ModelInfo.from_metadata(m, active=m["version"] in active) for m in state.store.versions()]}

    @app.post(
        "/models/{version}/activate", tags=["models"], response_model=ModelInfo, dependencies=[ApiKey], summary="Promote or roll back"
    )
    async def activate_version(version: Version, state: State):
        state.store.version_dir(version)  # 404/422 before any loading
        model = await activate(state, version)
        return ModelInfo.from_metadata(model.stored_metadata, active=True)

    @app.get("/reports", tags=["reports"], summary="Report files of a version (default: active)")
    async def reports(state: State, version: Annotated[str | None, Query()] = None):
        versions = [version] if version else list(state.store.active().values())
        return {v: state.store.metadata(v).get("reports", []) for v in versions}

    @app.get(
        "/reports/{name}",
        tags=["reports"],
        summary="A PNG plot or JSON metrics file of a version (default: active)",
        response_class=FileResponse,
    )
    async def report(
        name: Annotated[str, Path(description="a file listed by GET /reports", examples=[report_example])],
        state: State,
        version: Annotated[str | None, Query()] = None,
    ):
        versions = [version] if version else list(state.store.active().values())
        if not versions:
            raise ModelNotReady("no active model and no version given", field="version")
        for v in versions:
            try:
                return FileResponse(state.store.report_path(v, name))
            except NotFound:
                continue
        raise NotFound(f"no report {name!r} in {', '.join(versions)}", field="name")


def _add_metrics_route(app: FastAPI) -> None:
    @app.get("/metrics", tags=["health"], summary="Prometheus metrics")
    async def metrics(state: State):
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
