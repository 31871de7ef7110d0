"""Wire schemas shared by several services (pydantic only: usable without the web layer,
scikit-learn or TensorFlow, so clients parse answers with them)."""
from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator

from kryptobot.data import BAR_COLUMNS, DataSpec, validate_bars
from kryptobot.data.base import Symbol, check_bar_matrix, check_timestamp_order, increasing_datetimes, timestamps_ns


#: bars one instance may carry: enough for years of hourly bars in one backtest call, and a
#: bound on the windows one request can make the anomaly or forecast service score
MAX_BARS = 50_000


class Bars(BaseModel):
    """OHLCV bars in columns (compact JSON): equal-length lists, oldest first."""

    model_config = ConfigDict(extra="forbid")

    timestamp: list[datetime] = Field(min_length=1, max_length=MAX_BARS)
    open: list[FiniteFloat]
    high: list[FiniteFloat]
    low: list[FiniteFloat]
    close: list[FiniteFloat]
    volume: list[FiniteFloat]

    @model_validator(mode="after")
    def _same_length(self) -> "Bars":
        n = len(self.timestamp)
        for name in ("open", "high", "low", "close", "volume"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"'{name}' has {len(getattr(self, name))} values but 'timestamp' has {n}")
        return self

    def columns(self) -> pd.DataFrame:
        """The bars as a frame, not yet validated (for code that validates them itself)."""
        return pd.DataFrame({name: getattr(self, name) for name in BAR_COLUMNS})

    def arrays(self, field: str = "bars") -> dict[str, np.ndarray]:
        """The bars' numbers as float64 arrays ``open`` .. ``volume``, after the checks of
        :meth:`to_frame` (same rules, same errors naming ``field``) without building a frame:
        the serving path's cost is a few microseconds per column instead of pandas'."""
        # the timestamps are only checked: in order and in range, most need no conversion
        stamps = None if increasing_datetimes(self.timestamp) else timestamps_ns(self.timestamp, field)
        matrix = np.array([self.open, self.high, self.low, self.close, self.volume], dtype=np.float64)
        check_bar_matrix(matrix, field)
        if stamps is not None:
            check_timestamp_order(stamps, field)
        return dict(zip(BAR_COLUMNS[1:], matrix))

    def to_frame(self, field: str = "bars") -> pd.DataFrame:
        """A validated bar frame; raises DataError naming ``field`` (NaN, prices <= 0, order)."""
        return validate_bars(self.columns(), field=field)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "Bars":
        return cls(
            timestamp=[ts.isoformat() for ts in pd.to_datetime(frame["timestamp"])],
            **{c: frame[c].astype(float).round(6).tolist() for c in ("open", "high", "low", "close", "volume")},
        )


class TrainConfigBase(BaseModel):
    """Fields every training request has."""

    model_config = ConfigDict(extra="forbid")

    data: DataSpec = Field(default_factory=DataSpec, description="which market data to train on")
    activate: Literal["if_better"] | bool = Field(
        "if_better",
        description="if_better: activate the new version only when the promotion gate passes it (at least as good "
        "as the naive baseline and the active version on its holdout, see GET /models' promotion); "
        "true: activate it anyway (the verdict is still recorded); false: store it inactive",
    )


class BarsInstance(BaseModel):
    """Recent bars of one symbol, oldest first (the anomaly and forecast services' input)."""

    model_config = ConfigDict(extra="forbid")

    symbol: Symbol | None = Field(None, description="optional, echoed back (e.g. SPY)")
    bars: Bars


class ClassifierInstance(BaseModel):
    """A technical signal to score: give either ``features`` or ``bars`` (not both)."""

    model_config = ConfigDict(extra="forbid")

    symbol: Symbol | None = Field(None, description="optional, echoed back (e.g. SPY)")
    side: Literal["buy", "sell"] = Field("buy", description="direction of the technical signal")
    features: dict[str, FiniteFloat] | None = Field(None, description="precomputed named features")
    bars: Bars | None = Field(None, description="raw bars; features are computed for the last bar")

    @model_validator(mode="after")
    def _one_input(self) -> "ClassifierInstance":
        if (self.features is None) == (self.bars is None):
            raise ValueError("give exactly one of 'features' or 'bars'")
        return self


class Answer(BaseModel):
    """Base of what a service answers: NaN and infinity are not numbers a client can act on
    (the services never send them; a broken one that does is refused when parsed)."""

    model_config = ConfigDict(allow_inf_nan=False)


P = TypeVar("P", bound=BaseModel)


class PredictResponse(Answer, Generic[P]):
    """Every model service's ``/predict`` answer: ``PredictResponse[<its Prediction>]``."""

    predictions: list[P]
    model_version: str = Field(description="active version (lines joined by '+')")
    model_versions: dict[str, str] = Field(description="active version per line")
