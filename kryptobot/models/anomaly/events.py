"""Dated market shocks: the ground truth the anomaly detector is scored against on real history.

Real data has no planted anomalies, but it has days every market participant remembers.
These are US market-wide shocks (index moves of several percent in a day, or the flash
crash's intraday collapse); a single stock need not have moved much on each of them,
which is why recall is reported next to baselines scored on the same (symbol, day) pairs
rather than against 100%.

The list was fixed before any detector was scored against it, and is not tuned to one:
the days named in the issue (2000-2002 falls, September-October 2008, 2010-05-06,
2011-08-08, 2015-08-24, 2018-02-05, 1987-10-19) and, for September-October 2008, the
S&P 500's largest daily moves of those two months. Days outside a data set's range are
simply not scored.

Source of the dates and moves: daily closes of the S&P 500, Dow Jones Industrial Average
and Nasdaq Composite, as listed in Wikipedia's "List of largest daily changes in the
S&P 500 Index" / "... in the Dow Jones Industrial Average" / "... in the Nasdaq
Composite", and the CFTC-SEC report "Findings regarding the market events of May 6,
2010" (30 September 2010).
"""
from __future__ import annotations

import pandas as pd

#: (trading day, what happened); the day is the first session the shock shows in daily bars
MARKET_SHOCKS: tuple[tuple[str, str], ...] = (
    ("1987-10-19", "Black Monday: S&P 500 -20.5%, Dow -22.6%"),
    ("2000-04-14", "dot-com crash: Nasdaq -9.7%"),
    ("2001-09-17", "first session after 9/11: Dow -7.1%"),
    ("2002-07-19", "accounting-scandal sell-off: Dow -4.6%"),
    ("2002-07-24", "rebound from the 2002 lows: Dow +6.4%"),
    ("2008-09-15", "Lehman Brothers files for bankruptcy: S&P 500 -4.7%"),
    ("2008-09-29", "House rejects the bank bail-out (TARP): S&P 500 -8.8%"),
    ("2008-10-09", "end of the worst week of 2008: S&P 500 -7.6%"),
    ("2008-10-13", "rebound on bank rescue plans: S&P 500 +11.6%"),
    ("2008-10-15", "S&P 500 -9.0%"),
    ("2008-10-28", "S&P 500 +10.8%"),
    ("2010-05-06", "flash crash: Dow -9% intraday, -3.2% at the close"),
    ("2011-08-08", "first session after the US credit downgrade: S&P 500 -6.7%"),
    ("2015-08-24", "China devaluation sell-off: Dow -1,089 points at the open, S&P 500 -3.9%"),
    ("2018-02-05", "volatility spike ('Volmageddon'): Dow -4.6%"),
    ("2020-03-16", "COVID-19 crash: S&P 500 -12.0%"),
)

SOURCE = (
    "US market-wide shock days (kryptobot/models/anomaly/events.py): S&P 500 / Dow / Nasdaq daily closes "
    "(Wikipedia's lists of their largest daily changes) and the CFTC-SEC report on 2010-05-06"
)


def shock_days() -> pd.DatetimeIndex:
    """The calendar's days, sorted."""
    return pd.DatetimeIndex(pd.to_datetime([day for day, _ in MARKET_SHOCKS])).sort_values()


def describe(day) -> str:
    """What happened on ``day`` (one of the calendar's days)."""
    return dict(MARKET_SHOCKS)[pd.Timestamp(day).date().isoformat()]
