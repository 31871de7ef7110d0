"""``Bars.arrays``, the serving path's checks without a frame: the same rules, numbers and
errors as ``Bars.to_frame`` (``validate_bars``), and the same features."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from kryptobot.data.base import increasing_datetimes
from kryptobot.errors import DataError
from kryptobot.features import FeatureParams, latest_features, latest_features_of
from kryptobot.models.common.examples import example_bars
from kryptobot.schemas import Bars

BASE = example_bars(170)


def bars(**changes) -> Bars:
    return Bars(**{**BASE, **changes})


def outcome(call):
    try:
        return "ok", call()
    except DataError as exc:
        return "error", (exc.to_dict()["error"], str(exc), exc.field)


def test_same_numbers_and_features_as_the_frame():
    b = bars()
    frame = b.to_frame()
    arrays = b.arrays()
    for name in ("open", "high", "low", "close", "volume"):
        assert arrays[name].dtype == np.float64
        assert np.array_equal(arrays[name], frame[name].to_numpy())
    assert latest_features_of(arrays) == latest_features(b.columns()) == latest_features_of(frame)


def _timestamps(shift_hours: list[float], tz=None) -> list[datetime]:
    start = datetime(2021, 3, 1, tzinfo=tz)
    return [start + timedelta(hours=h) for h in shift_hours]


HOURS = list(range(len(BASE["close"])))
PLUS2 = timezone(timedelta(hours=2))
CASES = {
    "zero price": {"open": [0.0] + BASE["open"][1:]},
    "negative volume": {"volume": BASE["volume"][:-1] + [-1.0]},
    "high below low": {"high": [BASE["low"][0] / 2] + BASE["high"][1:]},
    "two broken columns, the first named": {"low": [-1.0] + BASE["low"][1:], "volume": [-1.0] + BASE["volume"][1:]},
    "duplicate timestamp": {"timestamp": _timestamps(HOURS[:5] + [4] + HOURS[6:])},
    "unsorted timestamps": {"timestamp": _timestamps(HOURS[:5] + [6, 5] + HOURS[7:])},
    "value and order both wrong: the value first": {"timestamp": _timestamps([0, 0] + HOURS[2:]), "close": [-1.0] + BASE["close"][1:]},
    "aware, increasing": {"timestamp": _timestamps(HOURS, PLUS2)},
    # the same instant written in two offsets is a duplicate
    "aware, one instant twice": {"timestamp": _timestamps(HOURS[:3], timezone.utc) + _timestamps([4], PLUS2)
                                 + _timestamps(HOURS[4:], timezone.utc)},
    "naive and aware mixed": {"timestamp": _timestamps(HOURS[:1]) + _timestamps(HOURS[1:], timezone.utc)},
    "outside the safe span": {"timestamp": [t.replace(year=1650) for t in _timestamps(HOURS)]},
}


@pytest.mark.parametrize("changes", CASES.values(), ids=CASES.keys())
def test_same_verdict_as_the_frame(changes):
    b = bars(**changes)
    got = outcome(lambda: b.arrays(field="instances[2].bars"))
    expected = outcome(lambda: b.to_frame(field="instances[2].bars"))
    assert got[0] == expected[0]
    if got[0] == "error":
        assert got[1] == expected[1]
        assert got[1][2].startswith("instances[2].bars.")
    else:
        assert all(np.array_equal(got[1][c], expected[1][c].to_numpy()) for c in got[1])


def test_increasing_datetimes_vouches_only_for_what_is_safe():
    assert increasing_datetimes(_timestamps(HOURS))
    assert increasing_datetimes(_timestamps(HOURS, PLUS2))
    assert increasing_datetimes([])
    assert not increasing_datetimes(_timestamps([0, 0, 1]))
    assert not increasing_datetimes(_timestamps([0, 2, 1]))
    assert not increasing_datetimes(_timestamps([0]) + _timestamps([1], timezone.utc))
    assert not increasing_datetimes([datetime(1650, 1, 1), datetime(1650, 1, 2)])
    assert not increasing_datetimes([datetime(2199, 12, 31), datetime(2200, 1, 2)])


def test_too_few_bars_name_the_field():
    short = Bars(**{k: v[:100] for k, v in BASE.items()})
    with pytest.raises(Exception) as err:
        latest_features_of(short.arrays(), FeatureParams(), field="instances[0].bars")
    assert err.value.field == "instances[0].bars" and "at least" in str(err.value)


@pytest.mark.parametrize("year", [1500, 2300])
def test_a_timestamp_beyond_what_nanoseconds_hold_is_refused_not_wrapped(year):
    """pandas keeps far dates in a coarser unit; a cast to nanoseconds would wrap them into
    another century and serve a 200 on nonsense."""
    far = [datetime(year, 1, 1) + timedelta(days=i) for i in range(len(BASE["timestamp"]))]
    b = bars(timestamp=far)
    for call in (b.arrays, b.to_frame):
        verdict, detail = outcome(call)
        assert verdict == "error" and "out of range" in detail[1] and detail[2].endswith("timestamp"), detail
