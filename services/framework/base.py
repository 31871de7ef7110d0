"""The base app every service is built on, the trader included: Swagger UI and ReDoc from
local assets, one error shape (documented in the OpenAPI, :mod:`.openapi`), request ids and
access logs, Prometheus metrics, ``/health/live`` and ``/metrics``.

No ``from __future__ import annotations``: FastAPI reads the route signatures at run time.
"""
import inspect
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kryptobot.settings import Settings
from services.framework.docs import install_docs
from services.framework.errors import install_error_handlers
from services.framework.guards import BodyLimitMiddleware, CrossSiteGuard
from services.framework.observability import Metrics, install_request_middleware
from services.framework.openapi import install_openapi


def create_base_app(name: str, title: str, description: str | None, settings: Settings, lifespan: Any) -> FastAPI:
    """A FastAPI app with the shared endpoints and middleware; ``app.state.settings`` and
    ``app.state.metrics`` are set before any request."""
    app = FastAPI(
        title=title,
        version="0.1.0",
        description=inspect.cleandoc(description or ""),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    metrics = Metrics(name)
    app.state.settings = settings
    app.state.metrics = metrics
    install_docs(app)
    install_error_handlers(app)
    # added before the request middleware, so they run inside it: a refusal still gets a request id
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(CrossSiteGuard)
    install_request_middleware(app, metrics)
    install_openapi(app)

    @app.get("/health/live", tags=["health"], summary="The process is up")
    async def live():
        return {"status": "live"}

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus(request: Request):
        return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
