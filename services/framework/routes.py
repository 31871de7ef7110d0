"""The routes every model service has, over a :class:`ModelRegistry` and the runtime contract.

No ``from __future__ import annotations``: the request models are built at run time from
the runtime's schemas, and FastAPI must see them as real objects.
"""
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ConfigDict, Field, create_model

from kryptobot.errors import ModelNotReady, NotFound
from kryptobot.runtime import JobKind, ModelRuntime
from kryptobot.schemas import PredictResponse
from services.framework.auth import ApiKey
from services.framework.encoding import FastJSONRoute, ServiceJSONResponse
from services.framework.openapi import error_responses
from services.framework.registry import ModelRegistry
from services.framework.schemas import JobStatus, ModelInfo, ModelList, job_status


async def get_registry(request: Request) -> ModelRegistry:
    # async: FastAPI runs a plain function dependency in a worker thread, a hop per request
    return request.app.state.svc


Registry = Annotated[ModelRegistry, Depends(get_registry)]
NO_MODEL = "no active model: train one with POST /train"


def add_model_routes(app: FastAPI, runtime_cls: type[ModelRuntime], max_batch: int) -> None:
    _add_ready_route(app)
    _add_predict_route(app, runtime_cls, max_batch)
    for kind in runtime_cls.jobs():
        _add_job_route(app, kind)
    _add_job_status_routes(app)
    _add_version_routes(app)
    _add_report_routes(app, runtime_cls.report_example)


def _add_ready_route(app: FastAPI) -> None:
    @app.get("/health/ready", tags=["health"], summary="200 when an active model is loaded")
    async def ready(registry: Registry, request: Request):
        if registry.models:
            body = {"status": "ready", "model_versions": registry.versions()}
            if registry.fallbacks:
                body["fallbacks"] = registry.fallbacks
            body["replication"] = request.app.state.replicator.status()  # services/framework/replication.py
            return body
        reason = "; ".join(f"{k}: {v}" for k, v in registry.load_errors.items()) or registry.not_ready_detail() or NO_MODEL
        return JSONResponse({"status": "not ready", "error": "ModelNotReady", "detail": reason}, status_code=503)


def _add_predict_route(app: FastAPI, runtime_cls: type[ModelRuntime], max_batch: int) -> None:
    fields: dict[str, Any] = {
        "instances": (
            list[runtime_cls.Instance],
            Field(min_length=1, max_length=max_batch, description=f"1 to {max_batch} instances"),
        )
    }
    if runtime_cls.PredictOptions is not None:
        fields["options"] = (runtime_cls.PredictOptions, Field(default_factory=runtime_cls.PredictOptions))
    config = ConfigDict(extra="forbid", json_schema_extra={"examples": [runtime_cls.predict_example()]})
    title = runtime_cls.name.title()
    PredictRequest = create_model(f"{title}PredictRequest", __config__=config, **fields)
    inline_bytes = runtime_cls.inline_predict_bytes

    async def predict(request: PredictRequest, registry: Registry, http: Request):
        models = registry.models  # one snapshot for the whole batch, even if a switch happens now
        if not models:
            raise ModelNotReady(registry.not_ready_detail() or NO_MODEL, field="model")
        options = getattr(request, "options", None)
        if len(await http.body()) <= inline_bytes:  # read once already: FastAPI keeps it
            # a small body is scored on the event loop: the hop to a worker thread and back
            # would cost as much as the scoring (ModelRuntime.inline_predict_bytes)
            results = registry.runtime.predict(models, request.instances, options)
        else:
            results = await run_in_threadpool(registry.runtime.predict, models, request.instances, options)
        registry.metrics.predictions.labels(registry.runtime.name).inc(len(results))
        versions = registry.versions(models)
        # Returned as a ready response: the runtime builds plain dicts of the declared shape,
        # and re-validating them through the response model would cost more than the model.
        return ServiceJSONResponse({"predictions": results, "model_version": "+".join(versions.values()), "model_versions": versions})

    # FastJSONRoute: the body (~14 KB for a raw-bars instance) decoded by pydantic-core
    # rather than the json module, the rest (validation, errors, OpenAPI) FastAPI's own
    app.router.add_api_route(
        "/predict", predict, methods=["POST"], tags=["predict"], response_model=PredictResponse[runtime_cls.Prediction],
        summary="Score a batch of instances", route_class_override=FastJSONRoute,
    )


def _add_job_route(app: FastAPI, kind: JobKind) -> None:
    Config = kind.config

    async def start_job(registry: Registry, config: Annotated[Config, Body()] = None):  # type: ignore[valid-type]
        config = config if config is not None else Config()
        record = registry.start_job(kind.path.strip("/"), config.model_dump(mode="json"))
        return JSONResponse(job_status(record).model_dump(mode="json"), status_code=202)

    app.post(
        kind.path,
        tags=["training"],
        status_code=202,
        response_model=JobStatus,
        summary=kind.summary,
        dependencies=[ApiKey],
        responses={409: {"description": "a job is already running"}, **error_responses(507)},
    )(start_job)


def _add_job_status_routes(app: FastAPI) -> None:
    JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$", description="id returned by POST /train")]

    @app.get("/train/{job_id}", tags=["training"], response_model=JobStatus, summary="State of a training job")
    async def job(job_id: JobId, registry: Registry):
        return job_status(registry.runner.get(job_id))

    @app.delete("/train/{job_id}", tags=["training"], response_model=JobStatus, dependencies=[ApiKey], summary="Cancel a running job")
    async def cancel(job_id: JobId, registry: Registry):
        # on the event loop, not a worker thread: a status read must not land between the
        # kill and the record update (it would report the cancelled job as crashed)
        return job_status(registry.runner.cancel(job_id))

    @app.get("/jobs", tags=["training"], response_model=list[JobStatus], summary="All training jobs")
    async def jobs(registry: Registry):
        return [job_status(r) for r in registry.runner.list()]


def _add_version_routes(app: FastAPI) -> None:
    Version = Annotated[str, Path(description="a version listed by GET /models, e.g. signal-v1")]

    @app.get("/model", tags=["models"], response_model=ModelList, summary="Active model(s) metadata")
    async def model(registry: Registry):
        if not registry.models:
            raise ModelNotReady(registry.not_ready_detail() or NO_MODEL, field="model")
        return {"models": [_info(registry, m.stored_metadata, True) for m in registry.models.values()]}

    @app.get("/models", tags=["models"], response_model=ModelList, summary="All stored versions")
    async def models(registry: Registry):
        active = set(registry.store.active().values())
        return {"models": [_info(registry, m, m["version"] in active) for m in registry.store.versions()]}

    @app.post(
        "/models/{version}/activate", tags=["models"], response_model=ModelInfo, dependencies=[ApiKey], summary="Promote or roll back",
        responses=error_responses(507),  # the pointer is written to the store's disk
    )
    async def activate_version(version: Version, registry: Registry):
        registry.store.version_dir(version)  # 404/422 before any loading
        model = await registry.activate(version)
        return _info(registry, model.stored_metadata, True)


def _info(registry: ModelRegistry, meta: dict, active: bool) -> ModelInfo:
    """A version as GET /model(s) shows it, with the promotion gate's verdict on it."""
    return ModelInfo.from_metadata({**meta, "promotion": registry.store.promotion(meta["version"])}, active=active)


def _add_report_routes(app: FastAPI, report_example: str) -> None:
    @app.get("/reports", tags=["reports"], summary="Report files of a version (default: active)")
    async def reports(registry: Registry, version: Annotated[str | None, Query()] = None):
        versions = [version] if version else list(registry.store.active().values())
        return {v: registry.store.metadata(v).get("reports", []) for v in versions}

    @app.get(
        "/reports/{name}",
        tags=["reports"],
        summary="A PNG plot or JSON metrics file of a version (default: active)",
        response_class=FileResponse,
    )
    async def report(
        name: Annotated[str, Path(description="a file listed by GET /reports", examples=[report_example])],
        registry: Registry,
        version: Annotated[str | None, Query()] = None,
    ):
        versions = [version] if version else list(registry.store.active().values())
        if not versions:
            raise ModelNotReady("no active model and no version given", field="version")
        for v in versions:
            try:
                return FileResponse(registry.store.report_path(v, name))
            except NotFound:
                continue
        raise NotFound(f"no report {name!r} in {', '.join(versions)}", field="name")
