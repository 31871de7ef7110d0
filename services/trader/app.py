"""Trader service (port 8000): decision cycles, paper trading, backtests."""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kryptobot.data.base import UniqueSymbols
from kryptobot.errors import Busy, InvalidInput, KryptoError, NotFound
from kryptobot.store import REPORT_NAME_RE
from kryptobot.trading.backtest import BacktestRequest
from kryptobot.trading.broker import Broker, open_broker
from kryptobot.trading.decisions import LAYERS, Layers
from kryptobot.trading.settings import TraderConfig
from services.framework.auth import ApiKey
from services.framework.base import create_base_app
from services.framework.observability import Metrics, configure_logging
from services.framework.openapi import error_responses
from services.table import MODEL_SERVICES
from services.trader.backtest import BACKTEST_TIMEOUT_SECONDS, run_backtest, save_reports, walk_forward
from services.trader.cache import ForecastCache
from services.trader.clients import CircuitBreaker, ModelClient
from services.trader.dashboard import install_dashboard
from services.trader.engine import Engine
from services.trader.leader import Leadership
from services.trader.scheduler import build_scheduler
from services.trader.schemas import (
    BacktestReport,
    CycleResult,
    Order,
    Portfolio,
    Position,
    StoredDecision,
    TraderReadiness,
)
from services.trader.settings import TraderEnv

log = logging.getLogger("kryptobot.trader")

DESCRIPTION = "Technical signals checked, sized and vetoed by the ML services; paper trading with a durable ledger; backtests."


@dataclass
class TraderState:
    env: TraderEnv
    config: TraderConfig
    engine: Engine
    clients: dict[str, ModelClient]
    backtest_clients: dict[str, ModelClient]
    cache: ForecastCache
    broker: Broker
    metrics: Metrics
    cycle_lock: asyncio.Lock
    backtests: asyncio.Semaphore
    leadership: Leadership


def get_state(request: Request) -> TraderState:
    return request.app.state.trader


State = Annotated[TraderState, Depends(get_state)]


class CycleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"symbols": ["SPY", "AAPL"]}]})

    symbols: UniqueSymbols | None = Field(None, min_length=1, max_length=100, description="default: the watchlist")
    as_of: date | None = Field(None, description="decide on the bars up to this day (default: the latest bar)")
    layers: list[str] | None = Field(None, description=f"ML layers to use (default: the settings' switches); any of {list(LAYERS)}")

    @field_validator("layers")
    @classmethod
    def _layers(cls, value):
        if value is not None and any(v not in LAYERS for v in value):
            raise ValueError(f"unknown layer(s) {[v for v in value if v not in LAYERS]}; choose from {list(LAYERS)}")
        return value


def create_app(env: TraderEnv | None = None) -> FastAPI:
    env = env or TraderEnv()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        configure_logging("trader", env.log_format)
        metrics = app.state.metrics
        config = TraderConfig.load(env.config_dir)
        t = config.trader
        http = httpx.AsyncClient(limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))
        urls = env.urls(MODEL_SERVICES)
        clients = {n: ModelClient(n, urls[n], http, t.request_timeout_seconds, t.retries, CircuitBreaker()) for n in MODEL_SERVICES}
        # a backtest's whole-history batches take longer than a cycle's calls, and must not
        # be retried nor open the live circuits when one of them times out
        backtest_clients = {n: ModelClient(n, urls[n], http, BACKTEST_TIMEOUT_SECONDS, 0, CircuitBreaker()) for n in MODEL_SERVICES}
        cache = ForecastCache(env.redis_url, config.forecasting.update_frequency, env.cache_prefix, registry=metrics.registry)
        broker = open_broker(t, env.ledger_path, **env.exchange_credentials(), ccxt_config=env.ccxt_config,
                             database_url=env.database_url_value(), keep_decisions=env.keep_decisions)
        try:  # a live broker settles what a crash left unknown before anything else
            await asyncio.to_thread(broker.sync, {})
        except KryptoError as exc:
            log.warning("broker sync at start-up failed (each cycle syncs first): %s", exc)
        engine = Engine(config, env, clients, cache, broker)
        cycle_lock = asyncio.Lock()
        # cycles every schedule_minutes and the layers' retraining rules (None: neither is set),
        # run by the leader among replicas only (an election only when there is a schedule)
        scheduler = build_scheduler(config, urls, engine.cycle, cycle_lock, http, env.api_key, leads=lambda: leadership.is_leader)
        leadership = Leadership(env.redis_url, env.leader_key, env.leader_lease_seconds if scheduler else 0.0, metrics.registry)
        state = TraderState(env, config, engine, clients, backtest_clients, cache, broker, metrics, cycle_lock,
                            asyncio.Semaphore(env.max_concurrent_backtests), leadership)
        app.state.trader = state
        leadership.start()
        if scheduler:
            scheduler.start()
        yield
        if scheduler:
            scheduler.shutdown(wait=False)
        await leadership.stop()  # the lease released: another replica takes over at once
        await http.aclose()
        await cache.close()
        broker.close()

    app = create_base_app("trader", "KryptoBot trader", DESCRIPTION, env, lifespan)
    _routes(app)
    install_dashboard(app)
    return app


def _routes(app: FastAPI) -> None:
    @app.get("/health/ready", tags=["health"], summary="200 when the ledger is open; reports each dependency",
             response_model=TraderReadiness)
    async def ready(state: State):
        return {
            "status": "ready",
            "redis": await state.cache.ping(),
            "services": {n: c.breaker.state for n, c in state.clients.items()},
            "leader": state.leadership.status(),
        }

    @app.post("/cycle", tags=["trading"], summary="Run one decision cycle for the watchlist now",
              response_model=CycleResult, response_model_exclude_unset=True, responses=error_responses(404, 409, 503),
              dependencies=[ApiKey])
    async def cycle(body: CycleRequest, request: Request, state: State):
        layers = None if body.layers is None else Layers.only(*body.layers)
        async with state.cycle_lock:  # one cycle at a time: orders of a bar are decided once
            return await state.engine.cycle(body.as_of, body.symbols, layers, request.state.request_id)

    @app.get("/decisions", tags=["trading"], summary="The latest decisions, newest first",
             response_model=list[StoredDecision], response_model_exclude_unset=True)
    async def decisions(state: State, limit: Annotated[int, Query(ge=1, le=1000)] = 100):
        return state.broker.decisions(limit)

    @app.get("/orders", tags=["trading"], summary="The latest orders, newest first", response_model=list[Order])
    async def orders(state: State, limit: Annotated[int, Query(ge=1, le=1000)] = 100):
        return state.broker.orders(limit)

    @app.get("/positions", tags=["trading"], summary="Open positions by symbol", response_model=dict[str, Position])
    async def positions(state: State):
        return state.broker.positions()

    @app.get("/portfolio", tags=["trading"], summary="Cash, market value, equity and return", response_model=Portfolio)
    async def portfolio(state: State):
        return state.broker.portfolio()

    @app.post("/backtest", tags=["backtest"], summary="Replay the rules over history for each mode vs buy-and-hold "
                                                      "(the active models, or walk-forward: retrained before each fold)",
              response_model=BacktestReport, responses=error_responses(404, 429, 503), dependencies=[ApiKey])
    async def backtest(body: BacktestRequest, request: Request, state: State):
        if state.backtests.locked():  # each one holds CPU for seconds to minutes: a queue would only hide that
            raise Busy(f"{state.env.max_concurrent_backtests} backtest(s) already running; try again when it ends",
                       field="backtest")
        async with state.backtests:
            return await _backtest(body, request, state)

    async def _backtest(body: BacktestRequest, request: Request, state: State):
        if body.walk_forward is not None:  # trains in this process's worker processes: minutes, off the event loop
            report = await asyncio.to_thread(walk_forward, body, state.config, state.env, None, state.env.max_batch)
        else:
            report = await run_backtest(body, state.config, state.backtest_clients, state.env.csv_dir, state.env.max_batch,
                                        request.state.request_id, market_data_dir=state.env.market_data_dir)
        names = await asyncio.to_thread(save_reports, report, state.env.reports_dir, state.env.keep_reports)
        return JSONResponse({**report, "reports": names})

    @app.get("/reports/{name}", tags=["backtest"], summary="backtest_report.json or equity_curve.png (latest, or by id)",
             response_class=FileResponse, responses={200: {"content": {"image/png": {}, "application/json": {}}}})
    async def reports(name: Annotated[str, PathParam(description="a name listed by POST /backtest", examples=["backtest_report.json"])],
                      state: State):
        if not REPORT_NAME_RE.match(name):
            raise InvalidInput(f"malformed report name {name!r}", field="name")
        path = state.env.reports_dir / name
        if not path.is_file():
            raise NotFound(f"no report {name!r}: run POST /backtest first", field="name")
        return FileResponse(path)
