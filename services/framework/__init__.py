"""The shared model-service framework: one app factory for every model service."""
from services.framework.app import create_model_app

__all__ = ["create_model_app"]
