"""What the model services serve right now (``GET /model``), and which of it has expired.

A cycle asks a layer's service for its active versions only when it needs them: the
forecast's for the cache key, a classifier's when its threshold is ``"auto"``, any layer's
when it has an expiry. A version *expires* (FreqAI's ``expired_hours``) when its training
data end more than ``retraining.<layer>.expired_hours`` before the bar being decided: it
knows nothing of the market since, so it is not used and the decision is degraded with
the rule ``model_expired:<layer>``.
"""
from __future__ import annotations

import asyncio
from typing import Mapping, Sequence

import pandas as pd

from kryptobot.errors import KryptoError
from kryptobot.trading.decisions import Layers
from kryptobot.trading.settings import TraderConfig
from services.framework.schemas import ModelInfo
from services.trader.clients import Deadline, ModelClient
from services.trader.thresholds import auto_layers

ActiveModels = dict[str, list[ModelInfo] | None]  # layer -> GET /model's versions (None: no answer)


def needed(config: TraderConfig, layers: Layers) -> list[str]:
    """The enabled layers whose active versions a cycle must know."""
    schedules = config.trader.retraining.layers()
    wanted = {"forecast"} | set(auto_layers(config)) | {n for n, s in schedules.items() if s.expired_hours > 0}
    return [n for n in layers.enabled() if n in wanted]


async def fetch(clients: Mapping[str, ModelClient], names: Sequence[str], request_id: str | None,
                deadline: Deadline | None = None) -> ActiveModels:
    """GET /model of each named service, concurrently, within ``deadline``; a service that cannot answer gives None."""
    async def one(name: str) -> list[ModelInfo] | None:
        try:
            return list((await clients[name].model(request_id, deadline)).models)
        except KryptoError:
            return None

    return dict(zip(names, await asyncio.gather(*(one(n) for n in names))))


def _naive(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_convert(None) if ts.tzinfo is not None else ts


def trained_until(models: Sequence[ModelInfo]) -> pd.Timestamp | None:
    """The end of the stalest active line's training data (None: no version says)."""
    ends = [_naive(m.data_range["end"]) for m in models if m.data_range and m.data_range.get("end")]
    return min(ends, default=None)


def expired(config: TraderConfig, models: ActiveModels, bar) -> dict[str, str]:
    """Layer -> why its active version is too old to decide ``bar`` (a timestamp) with."""
    out = {}
    at = _naive(bar)
    for name, schedule in config.trader.retraining.layers().items():
        if schedule.expired_hours <= 0 or not models.get(name):
            continue
        until = trained_until(models[name])
        if until is None:
            continue
        age = (at - until) / pd.Timedelta(hours=1)
        if age > schedule.expired_hours:
            versions = "+".join(m.version for m in models[name])
            out[name] = f"{versions} was trained on data up to {until.date()}, {age:.0f} h before this bar (expired_hours {schedule.expired_hours:g})"
    return out
