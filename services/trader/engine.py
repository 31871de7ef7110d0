"""One live decision cycle: market data -> technical signals -> model services -> rules -> orders.

Symbols are processed concurrently; each asks only the services its decision can use
(entry candidates: signal, ensemble, anomaly; every symbol: the cached forecast). Before
deciding, a cycle reads the active versions it needs (:mod:`.active_models`): thresholds
set to "auto" become numbers (:mod:`.thresholds`), and an expired version is not asked.

One deadline per cycle (``cycle_deadline_seconds``), started when the cycle starts: the
model calls share it (:class:`~services.trader.clients.Deadline`), and a layer not
answered by then is unavailable with the rule ``deadline:<layer>``. The cycle then
decides, records and returns as usual, so the cycle lock is never held longer than the
deadline plus the local work (market data, the ledger).
"""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import asdict, dataclass
from typing import Mapping

import pandas as pd
from pydantic import ValidationError

from kryptobot.data import get_provider
from kryptobot.errors import Conflict, KryptoError, ServiceUnavailable
from kryptobot.models.forecast.schemas import ForecastPath
from kryptobot.trading.broker import Broker
from kryptobot.trading.decisions import Decision, Holding, Layers, ModelOutputs, buy_quantity, decide, outputs_from
from kryptobot.trading.market import MODEL_BARS, SymbolView, bar_id, view
from kryptobot.trading.settings import TraderConfig
from services.framework.schemas import ModelInfo
from services.trader import active_models, wire
from services.trader.cache import ForecastCache
from services.trader.clients import Deadline, ModelClient
from services.trader.settings import TraderEnv
from services.trader.thresholds import numbers, resolve_thresholds

log = logging.getLogger("kryptobot.trader.insight")
BACKSTOP_GRACE_SECONDS = 0.25


@dataclass(frozen=True)
class ForecastModels:
    version: str  # 'gru-v1+lstm-v2': a new version is a new cache key
    horizon: int  # bars ahead of the combined forecast
    bars: int  # bars to send: the longest window + 1, at least MODEL_BARS


class Engine:
    def __init__(self, config: TraderConfig, env: TraderEnv, clients: dict[str, ModelClient], cache: ForecastCache, broker: Broker):
        self.config = config
        self.env = env
        self.clients = clients
        self.cache = cache
        self.broker = broker
        self.provider = get_provider(config.trader.data_source, csv_dir=env.csv_dir, market_data_dir=env.market_data_dir)

    async def cycle(self, as_of=None, symbols: list[str] | None = None, layers: Layers | None = None, request_id: str | None = None) -> dict:
        cycle_id = request_id or uuid.uuid4().hex[:16]
        deadline = Deadline(self.config.trader.cycle_deadline_seconds)
        self._refuse_the_past(as_of)
        layers = layers or Layers.from_config(self.config)
        symbols = symbols or self.config.trader.watchlist
        loaded = await asyncio.gather(*(asyncio.to_thread(self._view, s, as_of) for s in symbols), return_exceptions=True)
        views, unreadable = _split_views(symbols, loaded)
        active = await active_models.fetch(self.clients, active_models.needed(self.config, layers), cycle_id, deadline)
        config, thresholds = resolve_thresholds(self.config, active)  # the rules see numbers, never "auto"
        forecast_models = self._forecast_models(active.get("forecast"))
        # the venue's word first (orders whose outcome is unknown, cash, holdings): a live
        # broker that cannot say what the account holds stops the cycle before any order
        await asyncio.to_thread(self.broker.sync, {v.symbol: v.last_close for v in views})
        held = self.broker.positions()
        wanted = {v.symbol: _wanted(v, v.symbol in held, layers) for v in views}
        stale = {v.symbol: {n: why for n, why in active_models.expired(config, active, v.last_timestamp).items() if n in wanted[v.symbol]}
                 for v in views}
        outputs = await asyncio.gather(*(self._ask(v, wanted[v.symbol], forecast_models, cycle_id, stale[v.symbol], deadline)
                                         for v in views))
        await asyncio.to_thread(self.broker.mark, {v.symbol: v.last_close for v in views if v.symbol in held})
        decisions, orders = [], []
        for symbol, error in unreadable.items():  # one symbol without data must not stop the others
            body = {**asdict(Decision(symbol, "skip", "none", None, rules=[f"no_market_data:{error.message}"])),
                    "last_bar": None, "layers": layers.enabled()}
            await asyncio.to_thread(self.broker.record_decision, cycle_id, body)
            log_insight(body, cycle_id)
            decisions.append(body)
        for v, (out, why) in zip(views, outputs):
            decision = decide(v.symbol, v.technical, _holding(held.get(v.symbol), v), v.last_close, v.atr, out, config, layers)
            decision.rules.extend(f"model_expired:{n}" for n in stale[v.symbol])
            decision.rules.extend(f"deadline:{n}" for n, reason in why.items() if reason.startswith("deadline"))
            body = {**asdict(decision), "last_bar": v.last_timestamp.isoformat(), "layers": layers.enabled(),
                    "thresholds": numbers(thresholds)}
            if stale[v.symbol]:
                body["expired"] = stale[v.symbol]
            if why:
                body["unavailable_reasons"] = why
            order = await asyncio.to_thread(self._execute, body, v, cycle_id)
            if order is not None:
                body["order"] = order
                orders.append(order)
            # completes the row an order's transaction wrote, if any, rather than adding one
            await asyncio.to_thread(self.broker.record_decision, cycle_id, body)
            log_insight(body, cycle_id)
            decisions.append(body)
        return {"cycle_id": cycle_id, "decisions": decisions, "orders": orders, "degraded": any(d["degraded"] for d in decisions),
                "thresholds": thresholds}

    def _refuse_the_past(self, as_of) -> None:
        """A live cycle on a day before the ledger's last traded bar would fill at that day's
        prices and re-mark the portfolio backwards in time: that is a backtest's job."""
        if as_of is None or self.config.trader.replay_past:
            return
        last = self.broker.last_traded_bar()
        if last is not None and pd.Timestamp(as_of) < pd.Timestamp(last).normalize():
            raise Conflict(f"as_of {as_of} is before the ledger's last traded bar ({last}); use POST /backtest for the past",
                           field="as_of")

    def _view(self, symbol: str, as_of) -> SymbolView:
        return view(self.provider, symbol, self.config.trader.history_bars, self.config.trader.strategy, as_of,
                    self.config.trader.timeframe)

    def _execute(self, decision: dict, v: SymbolView, cycle_id: str) -> dict | None:
        """Turn a buy/sell decision into an idempotent order: at most one per symbol and bar.

        A bar is decided once, as in the backtest: a cycle run again on the same bar (the
        scheduler, a retried request) must not re-enter a position it just exited, nor
        fill the same order twice. The broker writes the decision row with the order, in
        one transaction: a crash after it leaves no order without its decision.
        """
        action = decision["action"]
        if action not in ("buy", "sell"):
            return None
        client_order_id = f"{v.symbol}:{bar_id(v.last_timestamp)}"
        if self.broker.has_order(client_order_id):
            decision["action"] = "hold"
            decision["rules"].append("already_traded_this_bar")
            return None
        if action == "buy":
            t = self.config.trader
            portfolio = self.broker.portfolio()
            quantity = buy_quantity(portfolio["equity"], portfolio["cash"], decision["size_fraction"], v.last_close,
                                    t.slippage, t.commission)
        else:
            position = self.broker.positions().get(v.symbol)
            if position is None:  # sold since this cycle read the positions (another replica's cycle on this bar)
                decision["rules"].append(f"order_rejected:no {v.symbol} position left to sell")
                return None
            quantity = position["quantity"]
        try:
            fill = self.broker.submit(client_order_id, v.symbol, action, quantity, v.last_close, decision={"rules": decision["rules"]},
                                      stop=decision["stop"], target=decision["target"], bar=v.last_timestamp.isoformat(),
                                      journal=(cycle_id, decision))
        except KryptoError as exc:
            decision["rules"].append(f"order_rejected:{exc.message}")
            return None
        return asdict(fill)

    def _forecast_models(self, models: list[ModelInfo] | None) -> ForecastModels | None:
        """The forecast service's active models (its GET /model of this cycle), for the cache key."""
        if not models:
            return None
        params = [m.params or {} for m in models]
        return ForecastModels(
            version="+".join(sorted(m.version for m in models)),
            horizon=min(p.get("forecast_horizon", self.config.forecasting.forecast_horizon) for p in params),
            bars=max([MODEL_BARS] + [p.get("sequence_length", 0) + 1 for p in params]),
        )

    async def _ask(self, v: SymbolView, wanted: list[str], forecast: ForecastModels | None, request_id: str,
                   expired: Mapping[str, str], deadline: Deadline) -> tuple[ModelOutputs, dict[str, str]]:
        """The ``wanted`` layers' answers, and why each asked layer that did not answer is
        unavailable (``deadline: ...`` when the cycle's time ran out); an ``expired`` layer
        is not asked, it is unavailable."""
        ask = {
            "signal": lambda: self._classifier("signal", v, request_id, deadline),
            "ensemble": lambda: self._classifier("ensemble", v, request_id, deadline),
            "anomaly": lambda: self._anomaly(v, request_id, deadline),
            "forecast": lambda: self._forecast(v, forecast, request_id, deadline),
        }

        async def in_time(name: str) -> ModelOutputs:
            # the clients keep to the deadline themselves; this backstop (the forecast cache's
            # Redis calls) fires a little later, so that it never cancels a client while it
            # closes a connection it gave up on: a connection cancelled mid-close stays open
            if deadline.left() <= 0:
                raise deadline.reached(name)
            try:
                async with asyncio.timeout(deadline.left() + BACKSTOP_GRACE_SECONDS):
                    return await ask[name]()
            except TimeoutError:
                raise deadline.reached(name) from None

        calls = {name: in_time(name) for name in wanted if name not in expired}
        results = await asyncio.gather(*calls.values(), return_exceptions=True)
        values, unavailable, why = {}, [name for name in wanted if name in expired], {}
        for name, result in zip(calls, results):
            if isinstance(result, Exception):
                if not isinstance(result, KryptoError):
                    raise result
                unavailable.append(name)
                why[name] = result.message
                log.warning("%s for %s: %s", name, v.symbol, result, extra={"request_id": request_id})
                continue
            values[name] = result
        return outputs_from(values, tuple(unavailable)), why

    async def _classifier(self, name: str, v: SymbolView, request_id: str, deadline: Deadline) -> ModelOutputs:
        body = wire.predict_body([wire.classifier_body(v.symbol, bars=v.last_bars(MODEL_BARS))])
        prediction = (await self.clients[name].predict(body, request_id, deadline)).predictions[0]
        return wire.signal_reading(prediction) if name == "signal" else wire.ensemble_reading(prediction)

    async def _anomaly(self, v: SymbolView, request_id: str, deadline: Deadline) -> ModelOutputs:
        # every loaded bar: the detector's window is its own setting (up to 250 bars plus
        # their lookback), and with last_only it scores only the tail of what it is sent
        body = wire.anomaly_body(v.symbol, v.last_bars(len(v.bars)), last_only=True)
        prediction = (await self.clients["anomaly"].predict(body, request_id, deadline)).predictions[0]
        return wire.anomaly_reading(prediction.anomaly, prediction.score)

    async def _forecast(self, v: SymbolView, models: ForecastModels | None, request_id: str, deadline: Deadline) -> ModelOutputs:
        if models is None:
            # GET /model failed earlier in this cycle: the breaker's state says whether it is still being tried
            raise ServiceUnavailable(f"the forecast service did not say which models it serves (circuit "
                                     f"{self.clients['forecast'].breaker.state})", field="forecast")
        body = wire.forecast_body(v.symbol, v.last_bars(models.bars))

        async def fetch() -> dict:
            prediction = (await self.clients["forecast"].predict(body, request_id, deadline)).predictions[0]
            return prediction.combined.model_dump(mode="json")

        key = self.cache.key(v.symbol, models.version, models.horizon, v.last_timestamp.isoformat())
        value, _ = await self.cache.get_or_fetch(key, fetch, deadline)
        try:  # what the cache gave back is parsed like an answer: a poisoned value is no forecast
            return wire.path_reading(ForecastPath.model_validate(value))
        except ValidationError as exc:
            raise ServiceUnavailable(f"cached forecast for {v.symbol} is malformed: {exc.error_count()} error(s)",
                                     field="forecast") from exc


def _wanted(v: SymbolView, holding: bool, layers: Layers) -> list[str]:
    """The layers a decision on ``v`` can use: all of them for an entry candidate, else the forecast."""
    entry = v.technical == "buy" and not holding
    return [name for name in layers.enabled() if entry or name == "forecast"]


def _split_views(symbols: list[str], loaded: list) -> tuple[list[SymbolView], dict[str, KryptoError]]:
    """The symbols' views, and the data error of each symbol that has none. When no symbol
    has data the request itself is wrong (a day before any history, say): its error is raised."""
    for result in loaded:
        if isinstance(result, BaseException) and not isinstance(result, KryptoError):
            raise result
    views = [r for r in loaded if isinstance(r, SymbolView)]
    if not views:
        raise loaded[0]
    return views, {s: r for s, r in zip(symbols, loaded) if isinstance(r, KryptoError)}


def _holding(position: dict | None, v: SymbolView) -> Holding | None:
    if position is None:
        return None
    return Holding(position["avg_price"], position["stop"], position["target"], v.bars_since(position["opened_bar"]))


def log_insight(decision: dict, request_id: str) -> None:
    """One structured line per decision: the JSON document after ``ml_insight`` says what
    each model answered and which rules fired, so logs can be searched and aggregated."""
    insight = {k: decision[k] for k in ("symbol", "action", "technical", "price", "size_fraction", "rules", "degraded",
                                         "unavailable", "outputs", "last_bar", "layers")}
    log.info("ml_insight %s", json.dumps(insight, default=str), extra={"request_id": request_id})
