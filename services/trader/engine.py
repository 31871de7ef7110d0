"""One live decision cycle: market data -> technical signals -> model services -> rules -> orders.

Symbols are processed concurrently; each asks only the services its decision can use
(entry candidates: signal, ensemble, anomaly; every symbol: the cached forecast).
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import asdict

from kryptobot.data import get_provider
from kryptobot.errors import KryptoError, ServiceUnavailable
from services.trader.broker import PaperBroker
from services.trader.cache import ForecastCache
from services.trader.clients import ModelClient
from services.trader.decisions import Layers, ModelOutputs, decide
from services.trader.market import SymbolView, view
from services.trader.settings import TraderConfig, TraderEnv

log = logging.getLogger("kryptobot.trader.insight")
MODEL_BARS = 200  # >= the feature pipeline's 154 bars and the forecaster's sequence_length + 1


class Engine:
    def __init__(self, config: TraderConfig, env: TraderEnv, clients: dict[str, ModelClient], cache: ForecastCache, broker: PaperBroker):
        self.config = config
        self.env = env
        self.clients = clients
        self.cache = cache
        self.broker = broker
        self.provider = get_provider(config.trader.data_source, csv_dir=env.csv_dir)

    async def cycle(self, as_of=None, symbols: list[str] | None = None, layers: Layers | None = None, request_id: str | None = None) -> dict:
        cycle_id = request_id or uuid.uuid4().hex[:16]
        layers = layers or Layers.from_config(self.config)
        symbols = symbols or self.config.trader.watchlist
        views = await asyncio.gather(
            *(asyncio.to_thread(view, self.provider, s, self.config.trader.history_bars, as_of) for s in symbols)
        )
        forecast_version = await self._forecast_version(layers, cycle_id)
        held = self.broker.positions()
        outputs = await asyncio.gather(*(self._ask(v, v.symbol in held, layers, forecast_version, cycle_id) for v in views))
        await asyncio.to_thread(self.broker.mark, {v.symbol: v.last_close for v in views if v.symbol in held})
        decisions, orders = [], []
        for v, out in zip(views, outputs):
            decision = decide(v.symbol, v.technical, v.symbol in held, out, self.config, layers)
            body = {**asdict(decision), "last_bar": v.last_timestamp.isoformat(), "price": v.last_close, "layers": layers.enabled()}
            order = await asyncio.to_thread(self._execute, body, v)
            if order is not None:
                body["order"] = order
                orders.append(order)
            await asyncio.to_thread(self.broker.record_decision, cycle_id, body)
            log.info("ML insight %s: %s (%s)", v.symbol, decision.action, ", ".join(decision.rules),
                     extra={"request_id": cycle_id})
            decisions.append(body)
        return {"cycle_id": cycle_id, "decisions": decisions, "orders": orders, "degraded": any(d["degraded"] for d in decisions)}

    def _execute(self, decision: dict, v: SymbolView) -> dict | None:
        """Turn a buy/sell decision into an idempotent paper order (one per symbol, bar and action)."""
        action = decision["action"]
        if action not in ("buy", "sell"):
            return None
        client_order_id = f"{v.symbol}:{v.last_timestamp.date()}:{action}"
        if action == "buy":
            equity = self.broker.portfolio()["equity"]
            quantity = round(equity * decision["size_fraction"] / v.last_close, 6)
        else:
            quantity = self.broker.positions()[v.symbol]["quantity"]
        try:
            fill = self.broker.submit(client_order_id, v.symbol, action, quantity, v.last_close, decision={"rules": decision["rules"]})
        except KryptoError as exc:
            decision["rules"].append(f"order_rejected:{exc.message}")
            return None
        return asdict(fill)

    async def _forecast_version(self, layers: Layers, request_id: str) -> str | None:
        if not layers.forecast:
            return None
        try:
            models = (await self.clients["forecast"].model(request_id))["models"]
            return "+".join(sorted(m["version"] for m in models))
        except (ServiceUnavailable, KryptoError):
            return None

    async def _ask(self, v: SymbolView, holding: bool, layers: Layers, forecast_version: str | None, request_id: str) -> ModelOutputs:
        entry = v.technical == "buy" and not holding
        calls = {}
        if entry and layers.signal:
            calls["signal"] = self._classifier("signal", v, request_id)
        if entry and layers.ensemble:
            calls["ensemble"] = self._classifier("ensemble", v, request_id)
        if entry and layers.anomaly:
            calls["anomaly"] = self.clients["anomaly"].predict(
                {"instances": [{"symbol": v.symbol, "bars": v.bars_json(MODEL_BARS)}], "options": {"last_only": True}}, request_id)
        if layers.forecast:
            calls["forecast"] = self._forecast(v, forecast_version, request_id)
        results = await asyncio.gather(*calls.values(), return_exceptions=True)
        values, unavailable = {}, []
        for name, result in zip(calls, results):
            if isinstance(result, Exception):
                if not isinstance(result, KryptoError):
                    raise result
                unavailable.append(name)
                log.warning("%s for %s: %s", name, v.symbol, result, extra={"request_id": request_id})
                continue
            values[name] = result
        return outputs_from(values, tuple(unavailable))

    async def _classifier(self, name: str, v: SymbolView, request_id: str) -> dict:
        body = {"instances": [{"symbol": v.symbol, "side": "buy", "bars": v.bars_json(MODEL_BARS)}]}
        return (await self.clients[name].predict(body, request_id))["predictions"][0]

    async def _forecast(self, v: SymbolView, version: str | None, request_id: str) -> dict:
        if version is None:
            raise ServiceUnavailable("forecast service has no answer for its model version", field="forecast")
        body = {"instances": [{"symbol": v.symbol, "bars": v.bars_json(MODEL_BARS)}]}

        async def fetch() -> dict:
            return (await self.clients["forecast"].predict(body, request_id))["predictions"][0]["combined"]

        key = self.cache.key(v.symbol, version, self.config.forecasting.forecast_horizon, v.last_timestamp.isoformat())
        value, _ = await self.cache.get_or_fetch(key, fetch)
        return value


def outputs_from(values: dict, unavailable: tuple[str, ...]) -> ModelOutputs:
    """ModelOutputs from the services' prediction JSON (one per service name)."""
    ensemble = values.get("ensemble")
    anomaly = values.get("anomaly")
    forecast = values.get("forecast")
    return ModelOutputs(
        signal_probability=values["signal"]["probability"] if "signal" in values else None,
        ensemble_score=None if ensemble is None else (ensemble["probability"] if ensemble["probability"] is not None else ensemble["vote_share"]),
        anomaly=None if anomaly is None else anomaly["predictions"][0]["anomaly"],
        anomaly_score=None if anomaly is None else anomaly["predictions"][0]["score"],
        forecast_trend=None if forecast is None else forecast["trend"],
        forecast_confidence=None if forecast is None else forecast["confidence"],
        unavailable=unavailable,
    )
