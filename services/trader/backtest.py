"""Backtests through the model services: batch calls for every bar's model outputs, then
the replay of :mod:`kryptobot.trading.backtest`.

Per symbol, the model services are asked in batches (signal/ensemble: named features of
every buy signal, computed with the model's own feature pipeline; anomaly: every window
of the range in one call; forecast: a forecast per bar with ``options.rolling``). Models
are used only on bars after the end of their training data: the backtest starts there
and says so.
"""
from __future__ import annotations

import asyncio
import uuid

import pandas as pd

from kryptobot.data import get_provider
from kryptobot.errors import InvalidInput, KryptoError
from kryptobot.features import FeatureParams
from kryptobot.schemas import Bars
from kryptobot.trading.backtest import BacktestRequest, SymbolHistory, output_summary, replay, symbol_history
from services.framework.schemas import ModelInfo
from services.trader import wire
from services.trader.clients import ModelClient
from kryptobot.trading.decisions import LAYERS
from kryptobot.trading.settings import TraderConfig

BACKTEST_TIMEOUT_SECONDS = 300.0  # one whole-history batch per service and symbol


async def run_backtest(request: BacktestRequest, config: TraderConfig, clients: dict[str, ModelClient],
                       csv_dir=None, max_batch: int = 1000, request_id: str | None = None) -> dict:
    """The report (metrics per mode vs buy-and-hold) and the equity curves.

    ``max_batch``: instances per /predict call (the services' ``KRYPTOBOT_MAX_BATCH``);
    ``request_id`` is sent to the services with every call.
    """
    symbols = request.symbols or config.trader.watchlist
    infos = await _model_infos(clients, request_id)
    trained_until = max((pd.Timestamp(i.data_range["end"]).tz_localize(None) for i in infos.values() if i and i.data_range),
                        default=None)
    start = pd.Timestamp(request.start) if request.start else None
    note = None
    if trained_until is not None and (start is None or start <= trained_until):
        if start is not None:
            note = f"start moved from {start.date()} to after the models' training data (ends {trained_until.date()})"
        start = (trained_until + pd.Timedelta(days=1)).normalize()
    provider = get_provider(config.trader.data_source, csv_dir=csv_dir)
    feature_params = FeatureParams.from_dict(_pipeline(infos.get("signal")))
    end = None if request.end is None else pd.Timestamp(request.end)
    loaded = await asyncio.gather(
        *(asyncio.to_thread(symbol_history, provider, s, start, end, feature_params, config.trader.strategy) for s in symbols))
    histories = {s: h for s, h in zip(symbols, loaded) if h is not None}
    if not histories:
        raise InvalidInput(f"no bars to backtest between {start} and {request.end}", field="start")
    await _collect_outputs(histories, clients, infos, max_batch, request_id)
    cash = request.initial_cash or config.trader.initial_cash
    traded = {s: h.bars for s, h in histories.items()}
    results, curves = await asyncio.to_thread(replay, histories, traded, config, request.modes, cash)  # CPU: off the event loop
    return {
        "id": uuid.uuid4().hex[:12],
        "symbols": list(histories),
        "start": str(min(b["timestamp"].iat[0] for b in traded.values()).date()),
        "end": str(max(b["timestamp"].iat[-1] for b in traded.values()).date()),
        "models_trained_until": None if trained_until is None else str(trained_until.date()),
        "note": note,
        "layers_available": [name for name in LAYERS if infos.get(name)],
        "model_versions": {name: info.version for name, info in infos.items() if info},
        "bars": sum(len(b) for b in traded.values()),
        "model_outputs": output_summary(histories),
        "results": results,
        "curves": curves,
    }


async def _model_infos(clients: dict[str, ModelClient], request_id: str | None = None) -> dict[str, ModelInfo | None]:
    """GET /model of each service (None: down or untrained, its layer is unavailable): the
    line trained on the latest data, with ``version`` naming every active line."""
    async def one(name: str) -> ModelInfo | None:
        try:
            models = (await clients[name].model(request_id)).models
        except KryptoError:
            return None
        latest = max(models, key=lambda m: (m.data_range or {}).get("end") or "")
        return latest.model_copy(update={"version": "+".join(m.version for m in models)})

    names = list(clients)
    return dict(zip(names, await asyncio.gather(*(one(n) for n in names))))


def _pipeline(info: ModelInfo | None) -> dict:
    params = dict(((info.params if info else None) or {}).get("feature_pipeline") or {})
    params.pop("version", None)
    return params


async def _collect_outputs(histories: dict[str, SymbolHistory], clients, infos, max_batch: int, request_id: str | None) -> None:
    """Fill ``history.outputs`` with every service's answer for the days it matters."""
    tasks = []
    for symbol, h in histories.items():
        buys = h.bars["timestamp"][h.signals["side"] == "buy"].tolist()
        for name in ("signal", "ensemble"):
            if infos.get(name) and buys:
                tasks.append(_classifier(name, symbol, h, buys, clients[name], infos[name].features, max_batch, request_id))
        if infos.get("anomaly"):
            tasks.append(_anomaly(symbol, h, clients["anomaly"], request_id))
        if infos.get("forecast"):
            tasks.append(_forecast(symbol, h, clients["forecast"], request_id))
    await asyncio.gather(*tasks)


async def _classifier(name: str, symbol: str, h: SymbolHistory, days: list, client: ModelClient, columns: list[str],
                      max_batch: int, request_id: str | None) -> None:
    rows = h.features.set_axis(h.window["timestamp"]).loc[days, columns]
    instances = [wire.classifier_body(symbol, features=r) for r in rows.to_dict("records")]
    reading = wire.signal_reading if name == "signal" else wire.ensemble_reading
    for start in range(0, len(instances), max_batch):
        try:
            preds = (await client.predict(wire.predict_body(instances[start : start + max_batch]), request_id)).predictions
        except KryptoError:  # the layer is then unavailable (degraded) on those days
            continue
        for day, pred in zip(days[start : start + max_batch], preds):
            h.outputs.setdefault(day, {})[name] = reading(pred)


def _day(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_convert(None) if ts.tzinfo else ts


async def _anomaly(symbol: str, h: SymbolHistory, client: ModelClient, request_id: str | None) -> None:
    body = wire.anomaly_body(symbol, Bars.from_frame(h.window), last_only=False)
    try:
        w = (await client.predict(body, request_id)).predictions[0].windows
    except KryptoError:
        return
    for ts, flag, score in zip(w.timestamp, w.anomaly, w.score):
        h.outputs.setdefault(_day(ts), {})["anomaly"] = wire.anomaly_reading(flag, score)


async def _forecast(symbol: str, h: SymbolHistory, client: ModelClient, request_id: str | None) -> None:
    body = wire.forecast_body(symbol, Bars.from_frame(h.window), rolling=True)
    try:
        rolling = (await client.predict(body, request_id)).predictions[0].rolling
    except KryptoError:
        return
    if rolling is None:
        return
    for ts, trend, conf in zip(rolling.timestamp, rolling.trend, rolling.confidence):
        h.outputs.setdefault(_day(ts), {})["forecast"] = wire.forecast_reading(trend, conf)


