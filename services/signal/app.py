"""Signal service: RandomForest meta-labeller (port 8001)."""
from kryptobot.models.signal.runtime import SignalRuntime
from services.framework import create_model_app


def create_app():
    return create_model_app(SignalRuntime)
