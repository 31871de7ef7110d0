"""Bar timeframes and market calendars: the one table every layer reads.

A timeframe is a bar's duration in exchange notation (``1m`` ... ``1d``, ``1w``), with its
pandas offset. A calendar says when a market trades: ``24/7`` (crypto: every day, all day)
or ``exchange`` (stocks: 252 sessions a year of 6.5 hours). Together they give the number
of bars in a year, which annualised metrics need (:func:`periods_per_year`).
"""
from __future__ import annotations

from typing import Literal

import pandas as pd

from kryptobot.errors import InvalidInput

#: timeframe -> pandas offset; every offset is a fixed duration, so it is also a Timedelta
TIMEFRAMES: dict[str, str] = {
    "1m": "1min",
    "3m": "3min",
    "5m": "5min",
    "15m": "15min",
    "30m": "30min",
    "1h": "1h",
    "2h": "2h",
    "4h": "4h",
    "6h": "6h",
    "8h": "8h",
    "12h": "12h",
    "1d": "1D",
    "1w": "7D",
}
CALENDARS = ("24/7", "exchange")

#: a timeframe in a request schema (pydantic lists the allowed values in its 422)
Timeframe = Literal[tuple(TIMEFRAMES)]  # type: ignore[valid-type]
Calendar = Literal[CALENDARS]  # type: ignore[valid-type]

DAYS_PER_YEAR = {"24/7": 365.0, "exchange": 252.0}
WEEKS_PER_YEAR = {"24/7": 365.0 / 7, "exchange": 52.0}
#: the hours of bars a trading day has: a regular US session is 09:30-16:00
SESSION_HOURS = {"24/7": 24.0, "exchange": 6.5}


def check_timeframe(timeframe: str, field: str = "timeframe") -> str:
    """Return ``timeframe`` if it is one of :data:`TIMEFRAMES`, else raise InvalidInput naming ``field``."""
    if not isinstance(timeframe, str) or timeframe not in TIMEFRAMES:
        raise InvalidInput(f"unknown timeframe {timeframe!r}; allowed: {', '.join(TIMEFRAMES)}", field=field)
    return timeframe


def check_calendar(calendar: str, field: str = "calendar") -> str:
    if calendar not in CALENDARS:
        raise InvalidInput(f"unknown calendar {calendar!r}; allowed: {', '.join(CALENDARS)}", field=field)
    return calendar


def timeframe_delta(timeframe: str) -> pd.Timedelta:
    """A bar's duration: ``timeframe_delta("4h") == pd.Timedelta(hours=4)``."""
    return pd.Timedelta(TIMEFRAMES[check_timeframe(timeframe)])


def timeframe_seconds(timeframe: str) -> int:
    return int(timeframe_delta(timeframe).total_seconds())


def is_intraday(timeframe: str) -> bool:
    return timeframe_delta(timeframe) < pd.Timedelta(days=1)


def periods_per_year(timeframe: str, calendar: str) -> float:
    """Bars in a year of ``calendar`` at ``timeframe``: the annualisation factor of a per-bar
    mean (x n) or volatility (x sqrt n).

    ``24/7``: 365 days of 24 hours (``1h`` -> 8760). ``exchange``: 252 sessions of 6.5 hours
    (``1d`` -> 252, ``1h`` -> 1638, ``1w`` -> 52); a bar longer than the session counts once
    a day, as the exchange prints one such bar per session.
    """
    check_calendar(calendar)
    delta = timeframe_delta(timeframe)
    if delta >= pd.Timedelta(days=7):
        return WEEKS_PER_YEAR[calendar] * (pd.Timedelta(days=7) / delta)
    if delta >= pd.Timedelta(days=1):
        return DAYS_PER_YEAR[calendar] * (pd.Timedelta(days=1) / delta)
    bars_per_day = max(1.0, pd.Timedelta(hours=SESSION_HOURS[calendar]) / delta)
    return DAYS_PER_YEAR[calendar] * bars_per_day
