"""One trained forecaster (an ``lstm`` or ``gru`` version): network, pipeline, calibration.

The network maps a window of scaled bar features to the scaled cumulative log returns of
the next ``horizon`` bars (direct multi-output). Around it:

* **Intervals** (split-conformal, per horizon step, normalised): the score of a
  calibration sample is ``|y_k - yhat_k| / sigma`` (``sigma``: the input window's
  return volatility); ``q_k`` is the conformal quantile of those scores, and the
  interval is ``yhat_k +/- q_k * sigma``, in log-return space, mapped to prices from the
  last close. Quantiles are stored for every level of :data:`COVERAGE_LEVELS`.
* **Confidence**: the probability that the realised change over the horizon has the
  sign of the forecast trend, ``sigmoid(b * |yhat_H| / sigma)``; ``b`` is fitted by
  logistic regression on the calibration block. 0.5 is a coin flip; ``b < 0`` (a model
  whose direction is worse than chance on held-out data) gives less than 0.5.

Serving runs the network through :class:`kryptobot.models.neural.CompiledModel`
(one traced, XLA-compiled ``tf.function``), never ``model.predict`` per request.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kryptobot import plots
from kryptobot.evaluation import conformal_quantile
from kryptobot.models.common import neural
from kryptobot.models.common.sequences import FeatureScaler
from kryptobot.models.forecast.data import feature_columns, last_window, min_bars
from kryptobot.models.forecast.schemas import COVERAGE_LEVELS
from kryptobot.runtime import ModelVersion

MODEL_FILE = "forecaster.keras"
PIPELINE_FILE = "pipeline.json"
PIPELINE_VERSION = 1


def build_network(model_type: str, sequence_length: int, n_features: int, horizon: int, units: int,
                  dropout: float, learning_rate: float):
    """Two recurrent layers (``lstm`` or ``gru``), each followed by dropout and batch normalisation,
    then a dense head with one output per horizon step."""
    keras = neural.tf().keras
    recurrent = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[model_type]
    inputs = keras.Input((sequence_length, n_features))
    x = recurrent(units, return_sequences=True)(inputs)
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.BatchNormalization()(x)
    x = recurrent(max(units // 2, 4))(x)
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Dense(horizon)(x)
    model = keras.Model(inputs, outputs, name=f"{model_type}_forecaster")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model


@dataclass
class Pipeline:
    """Everything besides the network weights that a forecast needs (saved as JSON)."""

    model_type: str
    inputs: str
    features: list[str]
    sequence_length: int
    horizon: int
    scaler: dict
    target_scale: list[float]  # per step: the network predicts y / target_scale
    sigma_floor: float  # sigma never drops below this (a flat window would give zero-width intervals)
    quantiles: dict[str, list[float]] = field(default_factory=dict)  # coverage -> q per step
    confidence_slope: float = 0.0
    pipeline_version: int = PIPELINE_VERSION

    def quantile(self, coverage: float) -> np.ndarray:
        return np.asarray(self.quantiles[coverage_key(coverage)])


def coverage_key(coverage: float) -> str:
    return f"{coverage:g}"


def fit_calibration(pred: np.ndarray, y: np.ndarray, sigma: np.ndarray, levels=COVERAGE_LEVELS) -> tuple[dict, float]:
    """Conformal quantiles per level and step, and the confidence slope, from the calibration block.

    ``sigma`` must be the floored window volatility that serving uses.
    """
    scores = np.abs(y - pred) / sigma[:, None]
    quantiles = {
        coverage_key(c): [conformal_quantile(scores[:, k], c) for k in range(y.shape[1])] for c in levels
    }
    return quantiles, fit_confidence_slope(np.abs(pred[:, -1]) / sigma, hits(pred[:, -1], y[:, -1]))


def hits(pred_final: np.ndarray, y_final: np.ndarray) -> np.ndarray:
    """1 where the forecast's direction over the horizon was right."""
    return (np.sign(pred_final) == np.sign(y_final)).astype(np.float64)


def fit_confidence_slope(z: np.ndarray, hit: np.ndarray) -> float:
    """``b`` of ``P(hit) = sigmoid(b * z)`` by (mildly L2-regularised) maximum likelihood.

    No intercept: a forecast of no move has no directional edge, so P = 0.5 at z = 0.
    Two pseudo-samples at z = 0 (one hit, one miss) leave the fit unchanged (sigmoid(0)
    is 0.5 whatever b is) but let it run when the calibration block has a single class;
    the regularisation then keeps b finite.
    """
    from sklearn.linear_model import LogisticRegression

    z = np.concatenate([z, [0.0, 0.0]])[:, None]
    hit = np.concatenate([hit, [0.0, 1.0]]).astype(int)
    return float(LogisticRegression(fit_intercept=False, C=1.0).fit(z, hit).coef_[0, 0])


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


@dataclass
class Forecasts:
    """A batch of forecasts in log-return space (``(n, horizon)`` arrays) and each one's confidence."""

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    confidence: np.ndarray


@dataclass
class PricePath:
    """One forecast in prices: the path over the horizon, its interval bounds, its confidence."""

    price: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    confidence: float

    @classmethod
    def from_forecast(cls, f: Forecasts, i: int, last_close: float) -> "PricePath":
        """Row ``i`` of a batch of log-return forecasts, mapped to prices from ``last_close``."""
        return cls(*(last_close * np.exp(a[i]) for a in (f.mean, f.lower, f.upper)), float(f.confidence[i]))

    def trend(self, last_close: float) -> float:
        """Forecast change over the horizon as a fraction of the last close (0.02 = +2%)."""
        return float(self.price[-1] / last_close - 1.0)


def combine(paths: list[PricePath], last_close: float) -> PricePath:
    """The models' mean path, the union of their intervals and a pooled confidence.

    The union covers whenever any model's interval does, so its coverage is at least
    each model's. The confidence is a linear opinion pool for the combined direction:
    a model that agrees contributes its confidence p, one that disagrees 1 - p. Models
    with different horizons are combined over the shortest one.
    """
    h = min(len(p.price) for p in paths)
    price = np.mean([p.price[:h] for p in paths], axis=0)
    direction = np.sign(price[-1] - last_close)
    pooled = [p.confidence if np.sign(p.price[h - 1] - last_close) == direction else 1.0 - p.confidence for p in paths]
    return PricePath(
        price,
        np.min([p.lower[:h] for p in paths], axis=0),
        np.max([p.upper[:h] for p in paths], axis=0),
        float(np.mean(pooled)),
    )


@dataclass
class TrainingReport:
    """What ``save`` turns into report files; kept only on a freshly trained version."""

    results: dict
    history: dict[str, list[float]]
    actual_vs_predicted: dict  # symbol, x (timestamps), actual, predicted (log returns at the horizon)
    forecast_plot: dict  # kwargs of plots.forecast_band for this model alone
    combined_plot: dict | None = None  # kwargs of plots.forecast_band for all models of the job


class ForecastModel(ModelVersion):
    """A fitted LSTM or GRU forecaster and the pipeline around it; immutable once built."""

    def __init__(self, keras_model, pipeline: Pipeline, info: dict, report: TrainingReport | None = None):
        self.line = pipeline.model_type
        self.keras_model = keras_model
        self.pipeline = pipeline
        self.scaler = FeatureScaler.from_dict(pipeline.scaler)
        self.columns = feature_columns(pipeline.features)
        self.target_scale = np.asarray(pipeline.target_scale, dtype=np.float64)
        self.info = info
        self.report = report
        self._compiled = neural.CompiledModel(keras_model, (pipeline.sequence_length, len(pipeline.features)))

    @property
    def sequence_length(self) -> int:
        return self.pipeline.sequence_length

    @property
    def horizon(self) -> int:
        return self.pipeline.horizon

    @property
    def min_bars(self) -> int:
        return min_bars(self.sequence_length)

    # -- forecasting -----------------------------------------------------------------
    def predict_returns(self, batch: np.ndarray) -> np.ndarray:
        """Cumulative log returns ``(n, horizon)`` of scaled windows ``(n, L, F)``; one compiled call."""
        return self._compiled(batch).astype(np.float64) * self.target_scale

    def prepare(self, rows: np.ndarray) -> tuple[np.ndarray, float]:
        """The scaled input window ``(L, F)`` and its sigma from ``forecast_data.recent_features`` rows."""
        X, sigma = last_window(rows, self.columns, self.sequence_length)
        return self.scaler.transform(X), sigma

    def forecast(self, batch: np.ndarray, sigma: np.ndarray, coverage: float) -> Forecasts:
        return self.intervals(self.predict_returns(batch), sigma, coverage)

    def intervals(self, mean: np.ndarray, sigma: np.ndarray, coverage: float) -> Forecasts:
        """Bounds and confidence around forecasts ``mean`` (log returns) made from windows of volatility ``sigma``."""
        s = self.effective_sigma(sigma)
        half = self.pipeline.quantile(coverage)[None, :] * s[:, None]
        confidence = sigmoid(self.pipeline.confidence_slope * np.abs(mean[:, -1]) / s)
        return Forecasts(mean, mean - half, mean + half, confidence)

    def effective_sigma(self, sigma: np.ndarray) -> np.ndarray:
        """Window volatility, floored (a flat window must not give a zero-width interval)."""
        return np.maximum(np.asarray(sigma, dtype=np.float64), self.pipeline.sigma_floor)

    # -- persistence -----------------------------------------------------------------
    def save(self, artifacts: Path, reports: Path) -> None:
        self.keras_model.save(artifacts / MODEL_FILE)
        (artifacts / PIPELINE_FILE).write_text(json.dumps(asdict(self.pipeline), indent=2))
        if self.report is not None:
            self._write_reports(reports, self.report)

    def _write_reports(self, reports: Path, report: TrainingReport) -> None:
        kind = self.line
        (reports / f"{kind}_evaluation_results.json").write_text(json.dumps(report.results, indent=2, default=str))
        plots.lines(reports / f"{kind}_training_history.png", report.history, f"{kind.upper()} training", "epoch",
                    "MSE (scaled targets)")
        avp = report.actual_vs_predicted
        plots.lines(
            reports / f"{kind}_actual_vs_predicted.png",
            {"actual": avp["actual"], f"{kind} forecast": avp["predicted"], "naive (no change)": [0.0] * len(avp["actual"])},
            f"{avp['symbol']}, test block: log return over the next {self.horizon} bars",
            "forecast origin", "cumulative log return", x=avp["x"],
        )
        plots.forecast_band(reports / f"{kind}_forecast.png", **report.forecast_plot)
        if report.combined_plot is not None:
            plots.forecast_band(reports / "combined_forecast.png", **report.combined_plot)

    @classmethod
    def load(cls, artifacts: Path, metadata: dict) -> "ForecastModel":
        data = json.loads((artifacts / PIPELINE_FILE).read_text())
        if data.get("pipeline_version") != PIPELINE_VERSION:
            raise ValueError(f"pipeline version {data.get('pipeline_version')} is not {PIPELINE_VERSION}: retrain")
        keras_model = neural.tf().keras.models.load_model(artifacts / MODEL_FILE, compile=False)
        return cls(keras_model, Pipeline(**data), metadata)

    def metadata(self) -> dict:
        return self.info

    def warmup(self) -> None:
        self._compiled.warmup()
