"""The trader's side of the model services' wire contract.

Every answer is parsed with the answering service's own response schema (the
``kryptobot.models.<name>.schemas`` modules, importable without scikit-learn or
TensorFlow); what the decision rules need is then read off the typed objects into the
domain's :class:`~kryptobot.trading.decisions.ModelOutputs`. A body that does not parse is
the service being unavailable, never a crash (see :class:`services.trader.clients.ModelClient`).
"""
from __future__ import annotations

from pydantic import BaseModel

from kryptobot.models.anomaly.schemas import AnomalyInstance, AnomalyPrediction, AnomalyPredictOptions
from kryptobot.models.ensemble.schemas import EnsemblePrediction
from kryptobot.models.forecast.schemas import ForecastInstance, ForecastPath, ForecastPrediction, ForecastPredictOptions
from kryptobot.models.signal.schemas import SignalPrediction
from kryptobot.schemas import Bars, ClassifierInstance
from kryptobot.trading.decisions import ModelOutputs

#: the ``Prediction`` each layer's service answers with
PREDICTIONS: dict[str, type[BaseModel]] = {
    "signal": SignalPrediction,
    "ensemble": EnsemblePrediction,
    "anomaly": AnomalyPrediction,
    "forecast": ForecastPrediction,
}


def predict_body(instances: list[BaseModel], options: BaseModel | None = None) -> dict:
    body: dict = {"instances": [i.model_dump(mode="json", exclude_none=True) for i in instances]}
    if options is not None:
        body["options"] = options.model_dump(mode="json", exclude_defaults=True)
    return body


def classifier_body(symbol: str, bars: Bars | None = None, features: dict[str, float] | None = None) -> ClassifierInstance:
    return ClassifierInstance(symbol=symbol, side="buy", bars=bars, features=features)


def anomaly_body(symbol: str, bars: Bars, last_only: bool) -> dict:
    return predict_body([AnomalyInstance(symbol=symbol, bars=bars)], AnomalyPredictOptions(last_only=last_only))


def forecast_body(symbol: str, bars: Bars, rolling: bool = False) -> dict:
    return predict_body([ForecastInstance(symbol=symbol, bars=bars)], ForecastPredictOptions(rolling=rolling))


def signal_reading(p: SignalPrediction) -> ModelOutputs:
    return ModelOutputs(signal_probability=p.probability)


def ensemble_reading(p: EnsemblePrediction) -> ModelOutputs:
    # a hard-voting ensemble has no probability: its weighted vote share is its score
    return ModelOutputs(ensemble_score=p.probability if p.probability is not None else p.vote_share)


def anomaly_reading(anomaly: bool, score: float) -> ModelOutputs:
    return ModelOutputs(anomaly=anomaly, anomaly_score=score)


def forecast_reading(trend: float, confidence: float) -> ModelOutputs:
    return ModelOutputs(forecast_trend=trend, forecast_confidence=confidence)


def path_reading(path: ForecastPath) -> ModelOutputs:
    return forecast_reading(path.trend, path.confidence)
