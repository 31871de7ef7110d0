"""Response schemas of the trader: what the engine, the ledger and the backtest return.

They describe the plain dicts those build, they do not reshape them: every model keeps the
fields it does not list, and the routes whose dicts leave fields out serialise with
``response_model_exclude_unset``, so a body is the same with or without its model.
Decisions are read back from ledgers written by older versions too, so only what every
version recorded is required of them.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Side = Literal["buy", "sell"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TraderReadiness(_Open):
    status: Literal["ready"]
    redis: bool = Field(description="the forecast cache answers")
    services: dict[str, str] = Field(description="circuit breaker per model service: closed, open or half-open")
    leader: dict | None = Field(None, description="the scheduler's leader election: whether this replica leads, "
                                                  "the lease's holder at the last attempt")


class Fill(_Open):
    """An order as the broker filled it (``duplicate``: the same order id had filled before)."""

    order_id: int
    client_order_id: str = Field(description="<symbol>:<bar day>: one order per symbol and bar")
    symbol: str
    side: Side
    quantity: float
    price: float = Field(description="fill price, slippage included")
    commission: float
    duplicate: bool = False


class Outputs(_Open):
    """What each model service said (null: not asked, or no answer)."""

    signal_probability: float | None = None
    ensemble_score: float | None = None
    anomaly: bool | None = None
    anomaly_score: float | None = None
    forecast_trend: float | None = None
    forecast_confidence: float | None = None


class Decision(_Open):
    """One symbol at one bar: the action, its size and barriers, and every rule that fired."""

    symbol: str
    action: Literal["buy", "sell", "hold", "skip"]
    degraded: bool = Field(description="a model service that should have answered did not")
    technical: Literal["buy", "sell", "none"] | None = None
    price: float | None = Field(None, description="the close decided on (null: no market data)")
    size_fraction: float | None = None
    stop: float | None = None
    target: float | None = None
    rules: list[str] = Field(default_factory=list)
    unavailable: list[str] = Field(default_factory=list)
    outputs: Outputs | None = None
    last_bar: str | None = Field(None, description="timestamp of the bar decided on")
    layers: list[str] | None = Field(None, description="the ML layers the decision could use")
    order: Fill | None = Field(None, description="the order it placed, if any")
    thresholds: dict[str, float] | None = Field(None, description="the threshold of each layer it was decided with")
    expired: dict[str, str] | None = Field(None, description="layers whose active version had expired, and why (not asked)")
    unavailable_reasons: dict[str, str] | None = Field(
        None, description="each asked layer that did not answer, and why ('deadline: ...' when the cycle's deadline came first)")


class StoredDecision(Decision):
    id: int
    cycle_id: str
    created_at: str


class ThresholdUsed(_Open):
    """A layer's threshold in one cycle: as set, as a number, and why that number."""

    setting: float | Literal["auto"]
    threshold: float
    reason: str = Field(description='"fixed in the settings", or how the active version\'s sweep resolved "auto"')
    version: str | None = Field(None, description="the version whose threshold sweep decided (auto only)")


class CycleResult(_Open):
    cycle_id: str = Field(description="the request's X-Request-ID, or a new id")
    decisions: list[Decision]
    orders: list[Fill]
    degraded: bool
    thresholds: dict[str, ThresholdUsed] | None = Field(None, description="signal, ensemble and forecast thresholds of this cycle")


class Order(_Open):
    id: int
    client_order_id: str
    created_at: str
    symbol: str
    side: Side
    quantity: float
    price: float = Field(description="the fill's average price (the decided price while it is not filled)")
    commission: float
    status: str = Field(description="filled, or for an exchange order: sent, partial, canceled, missing...")
    decision: dict = Field(description="the rules that placed it")
    stop: float | None = None
    target: float | None = None
    bar: str | None = Field(None, description="the bar it was decided on")
    venue_order_id: str | None = Field(None, description="the exchange's id of it")


class Position(_Open):
    symbol: str
    quantity: float
    avg_price: float
    last_price: float
    stop: float | None = None
    target: float | None = None
    opened_bar: str | None = None


class Portfolio(_Open):
    cash: float
    market_value: float
    equity: float
    initial_cash: float
    return_: float = Field(alias="return", description="equity / initial_cash - 1")
    positions: dict[str, Position]


class Performance(_Open):
    """One mode's equity curve summarised (daily bars; null where it is undefined)."""

    total_return: float
    cagr: float | None = None
    sharpe: float | None = None
    max_drawdown: float
    win_rate: float | None = None
    mean_trade_return: float | None = None
    mean_trade_return_ci95: list[float] | None = None
    trades: int
    exposure: float
    final_equity: float | None = None
    degraded_decisions: int | None = Field(None, description="absent for buy_and_hold")
    rules: dict[str, int] | None = Field(None, description="how often each rule fired (absent for buy_and_hold)")


class OutputSummary(_Open):
    """A service's answers on the traded days: the anomaly rate, or quantiles of its score."""

    answers: int
    anomaly_rate: float | None = None
    p10: float | None = None
    p50: float | None = None
    p90: float | None = None
    max: float | None = None


class BacktestReport(_Open):
    id: str
    symbols: list[str]
    start: str
    end: str
    models_trained_until: str | None
    note: str | None
    layers_available: list[str]
    model_versions: dict[str, str | None]
    bars: int
    model_outputs: dict[str, OutputSummary]
    results: dict[str, Performance] = Field(description="per mode, and buy_and_hold")
    reports: list[str] = Field(description="files under GET /reports/{name}")
