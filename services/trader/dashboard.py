"""The dashboard: a web page at ``/dashboard`` that shows what a client of the services sees.

The page (``services/trader/dashboard/``: plain HTML, JavaScript and CSS, with Apache
ECharts vendored under ``vendor/``, so it works offline) reads only the public HTTP APIs.
The model services are reached through ``/dashboard/api/{service}/{path}``, a read-through
proxy on the trader's origin (a browser refuses cross-origin calls without CORS): it
forwards only the allow-listed reads, ``POST /predict``, ``POST /train`` and
``POST /models/{version}/activate``, with the caller's ``X-API-Key``; the service checks it.
"""
from __future__ import annotations

import re
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from kryptobot.errors import InvalidInput, NotFound, ServiceUnavailable
from kryptobot.trading.backtest import MODES
from services.table import BY_NAME, MODEL_SERVICES
from services.trader.history import router as history_router

ASSETS = Path(__file__).with_name("dashboard")
PROXY_TIMEOUT_SECONDS = 120.0  # a /predict of a few hundred bars through a recurrent net
MAX_BODY_BYTES = 8 * 1024 * 1024
_NAME = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*"  # no leading dot: never '..'
FORWARDED = {
    "GET": re.compile(rf"^(models|model|jobs|reports|health/ready|metrics|train/[0-9a-f]{{1,32}}|reports/{_NAME})$"),
    "POST": re.compile(rf"^(predict|train|models/{_NAME}/activate)$"),
}
QUERY = ("version",)  # the only query parameter the forwarded reads take
HEADERS = ("x-api-key", "content-type", "accept")


def install_dashboard(app: FastAPI) -> None:
    """``/dashboard`` (the page), its proxy and the chart data routes (:mod:`.history`)."""
    app.include_router(history_router)

    @app.get("/dashboard", include_in_schema=False)
    async def page():
        return RedirectResponse("/dashboard/")

    # the page's own plumbing, not part of the trader's API: left out of its OpenAPI
    @app.get("/dashboard/api/config", include_in_schema=False)
    async def config(request: Request):
        trader = request.app.state.trader.config.trader
        return {
            "services": [{"name": n, "training_example": BY_NAME[n].training_body(quick=True)} for n in MODEL_SERVICES],
            "backtest_modes": list(MODES),
            "watchlist": trader.watchlist,
        }

    @app.api_route("/dashboard/api/{service}/{path:path}", methods=["GET", "POST"], include_in_schema=False)
    async def proxy(service: str, path: str, request: Request):
        if service not in MODEL_SERVICES:
            raise NotFound(f"unknown service {service!r}; the model services are {list(MODEL_SERVICES)}", field="service")
        if not FORWARDED[request.method].match(path):
            raise NotFound(f"{request.method} /{path} is not forwarded to {service}", field="path")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise InvalidInput(f"body of {len(body)} bytes; at most {MAX_BODY_BYTES} are forwarded", field="body")
        state = request.app.state.trader
        headers = {k: v for k, v in request.headers.items() if k.lower() in HEADERS}
        headers["X-Request-ID"] = request.state.request_id
        params = {k: v for k, v in request.query_params.items() if k in QUERY}
        url = f"{state.env.url(service).rstrip('/')}/{path}"
        try:
            # the live clients' connection pool; the circuit breakers stay theirs alone
            answer = await state.clients[service].http.request(
                request.method, url, params=params, content=body or None, headers=headers, timeout=PROXY_TIMEOUT_SECONDS)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"{service} unavailable: {type(exc).__name__}: {exc}", field=service) from exc
        kept = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "cache-control")}
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    app.mount("/dashboard", StaticFiles(directory=ASSETS, html=True), name="dashboard")
