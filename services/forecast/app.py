"""Forecast service: LSTM and GRU price forecasters with calibrated intervals (port 8004)."""
from kryptobot.models.forecast.runtime import ForecastRuntime
from services.framework import create_model_app


def create_app():
    return create_model_app(ForecastRuntime)
