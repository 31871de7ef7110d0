"""Anomaly service: LSTM autoencoder anomaly detector (port 8002)."""
from kryptobot.models.anomaly.runtime import AnomalyRuntime
from services.framework import create_model_app


def create_app():
    return create_model_app(AnomalyRuntime)
