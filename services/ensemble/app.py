"""Ensemble service: voting ensemble of RandomForest, GradientBoosting and AdaBoost (port 8003)."""
from kryptobot.models.ensemble.runtime import EnsembleRuntime
from services.framework import create_model_app


def create_app():
    return create_model_app(EnsembleRuntime)
