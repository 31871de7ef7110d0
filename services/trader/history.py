"""``GET /equity`` and ``GET /bars/{symbol}``: the account's and the market's history, for
charts (the dashboard draws them; any client may read them).
"""
from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

import numpy as np
import pandas as pd
from pandas.errors import OutOfBoundsDatetime
from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from kryptobot.data import check_symbol
from kryptobot.errors import DataNotFound, InvalidInput
from kryptobot.features import build_features, min_bars
from kryptobot.schemas import Bars
from kryptobot.trading.equity import equity_curve
from kryptobot.trading.market import strategy_signals

router = APIRouter()
ORDERS_REPLAYED = 1_000_000  # every fill: cash is replayed from the first one


class EquityPoint(BaseModel):
    time: str = Field(description="when the cycle (or, for the last point, this request) valued the account")
    bar: str | None = Field(None, description="the latest bar the cycle decided on")
    cash: float
    market_value: float
    equity: float


class EquityCurve(BaseModel):
    initial_cash: float
    points: list[EquityPoint] = Field(description="one per decision cycle, oldest first; the last is the account now")


class Indicators(BaseModel):
    """Per bar, aligned with ``bars`` (null during an indicator's warm-up)."""

    technical: list[str] = Field(description="the primary strategy's signal on each bar: buy, sell or none")
    bb_upper: list[float | None] = Field(description="upper Bollinger band, in price")
    bb_lower: list[float | None] = Field(description="lower Bollinger band, in price")
    rsi: list[float | None]
    atr: list[float | None] = Field(description="average true range, in price")


class BarHistory(BaseModel):
    symbol: str
    end_index: int | None = Field(description="index of the last bar at or before ``end`` (null: none in the range)")
    bars: Bars
    indicators: Indicators


@router.get("/equity", tags=["trading"], summary="The account's equity after each decision cycle, from the ledger",
            response_model=EquityCurve)
async def equity(request: Request, limit: Annotated[int, Query(ge=1, le=100_000, description="latest decisions read for the marks")] = 5000):
    broker = request.app.state.trader.broker

    def replay() -> dict:
        portfolio = broker.portfolio()
        orders = {o["id"]: o for o in broker.orders(ORDERS_REPLAYED)}
        # the fills, not the orders: a partly filled order moved only what it filled
        fills = [{"time": f["filled_at"], "symbol": orders[f["order_id"]]["symbol"], "side": orders[f["order_id"]]["side"],
                  "quantity": f["quantity"], "price": f["price"], "commission": f["commission"]}
                 for f in broker.fills(ORDERS_REPLAYED)[::-1] if f["order_id"] in orders]
        points = equity_curve(portfolio["initial_cash"], fills, broker.decisions(limit)[::-1])
        now = pd.Timestamp.now(tz="UTC").isoformat()
        points.append({"time": now, "bar": points[-1]["bar"] if points else None, "cash": portfolio["cash"],
                       "market_value": portfolio["market_value"], "equity": portfolio["equity"]})
        return {"initial_cash": portfolio["initial_cash"], "points": points}

    return await asyncio.to_thread(replay)


@router.get("/bars/{symbol:path}", tags=["trading"], summary="Bars the trader decides on, with the strategy's indicators",
            response_model=BarHistory)
async def bars(
    request: Request,
    symbol: Annotated[str, PathParam(description="e.g. SPY or BTC/USDT")],
    end: Annotated[datetime | None, Query(description="last bar (default: the latest)")] = None,
    start: Annotated[datetime | None, Query(description="first bar (default: n bars before end)")] = None,
    n: Annotated[int, Query(ge=1, le=2000, description="at most this many bars up to end")] = 200,
    after: Annotated[int, Query(ge=0, le=250, description="bars after end too (what happened next)")] = 0,
):
    symbol = check_symbol(symbol)
    first, last = _utc(start, "start"), _utc(end, "end")
    if first is not None and last is not None and first > last:
        raise InvalidInput(f"start {start} is after end {end}", field="start")
    state = request.app.state.trader
    strategy = state.config.trader.strategy
    return await asyncio.to_thread(_history, state.engine.provider, symbol, first, last, n, after, strategy)


def _utc(moment: datetime | None, field: str) -> np.datetime64 | None:
    """As the bars' timestamps are: naive UTC (None stays None)."""
    if moment is None:
        return None
    try:
        ts = pd.Timestamp(moment)
        return np.datetime64((ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts).as_unit("ns"))
    except (OutOfBoundsDatetime, OverflowError, ValueError) as exc:
        raise InvalidInput(f"{field} {moment} is outside the years bars can have (1677-2262)", field=field) from exc


def _history(provider, symbol: str, start, end, n: int, after: int, strategy) -> dict:
    frame = provider.get_bars(symbol)
    stamps = frame["timestamp"].to_numpy()
    stop = len(frame) if end is None else int(np.searchsorted(stamps, end, side="right"))
    first = max(0, stop - n)
    if start is not None:
        first = max(first, int(np.searchsorted(stamps, start)))
    last = min(len(frame), stop + after)
    if first >= last:
        raise DataNotFound(f"no {symbol} bars in that range", field="end")
    params = strategy.feature_params()
    # the indicators are computed with their warm-up before the first bar shown, as a cycle does
    warm = max(0, first - min_bars(params))
    window = frame.iloc[warm:last].reset_index(drop=True)
    features = build_features(window, params)
    signals = strategy_signals(window, strategy)
    shown = slice(first - warm, last - warm)
    close = window["close"].to_numpy(dtype=float)[shown]

    def values(column) -> list[float | None]:
        return [None if not np.isfinite(v) else float(v) for v in np.asarray(column, dtype=float)]

    return {
        "symbol": symbol,
        "end_index": stop - first - 1 if stop > first else None,
        "bars": Bars.from_frame(window.iloc[shown]),
        "indicators": {
            "technical": signals["side"].iloc[shown].tolist(),
            "bb_upper": values(close * (1 + features["bb_upper"].to_numpy()[shown])),
            "bb_lower": values(close * (1 + features["bb_lower"].to_numpy()[shown])),
            "rsi": values(features["rsi"].to_numpy()[shown]),
            "atr": values(signals["atr"].to_numpy()[shown]),
        },
    }
