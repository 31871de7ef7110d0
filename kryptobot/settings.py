"""Typed settings: process settings from the environment, and the seed's JSON files.

Process settings come from ``KRYPTOBOT_*`` environment variables. The JSON files under
``config/`` keep the names and keys of the original design; each is validated on load
and a key in the environment ``KRYPTOBOT_<FILE>__<KEY>`` (e.g.
``KRYPTOBOT_FORECASTING_SETTINGS__UPDATE_FREQUENCY=6``) overrides the file's value.
A wrong key or value raises ConfigError naming the file and the key.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """A settings file or variable is wrong; the message names the file and key."""


class Settings(BaseSettings):
    """Process-level settings shared by every service (env prefix ``KRYPTOBOT_``)."""

    model_config = SettingsConfigDict(env_prefix="KRYPTOBOT_", extra="ignore")

    models_dir: Path = Path("models")
    config_dir: Path = Path("config")
    data_source: Literal["synthetic", "csv", "sample"] = "synthetic"
    csv_dir: Path | None = None
    api_key: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    max_batch: int = Field(1000, ge=1)
    log_format: Literal["auto", "json", "text"] = "auto"
    tf_threads: int = Field(2, ge=1, le=256, description="TensorFlow's intra- and inter-op thread pools (anomaly, forecast)")


class FileSettings(BaseModel):
    """Base of the JSON settings files: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MLSettings(FileSettings):
    """``config/ml_settings.json``."""

    ml_enabled: bool = True
    anomaly_detection_enabled: bool = True
    min_confidence_threshold: float = Field(0.6, ge=0.0, le=1.0)
    position_size_multiplier: float = Field(1.0, gt=0.0)


class EnsembleSettings(FileSettings):
    """``config/ensemble_settings.json``."""

    ensemble_enabled: bool = True
    confidence_threshold: float = Field(0.6, ge=0.0, le=1.0)
    position_size_multiplier: float = Field(1.2, gt=0.0)


class ForecastingSettings(FileSettings):
    """``config/forecasting_settings.json``."""

    enabled: bool = True
    model_types: list[Literal["lstm", "gru"]] = Field(default_factory=lambda: ["lstm", "gru"], min_length=1)
    sequence_length: int = Field(60, ge=5, le=1000)
    forecast_horizon: int = Field(5, ge=1, le=250)
    confidence_threshold: float = Field(0.7, ge=0.0, le=1.0)
    min_trend_strength: float = Field(0.02, ge=0.0)
    use_for_entry: bool = True
    use_for_exit: bool = True
    use_for_position_sizing: bool = True
    position_size_multiplier: float = Field(1.5, gt=0.0)
    symbols: list[str] = Field(default_factory=lambda: ["SPY", "QQQ", "AAPL", "MSFT", "AMZN", "GOOGL", "META", "TSLA"])
    update_frequency: float = Field(24, gt=0, description="hours a cached forecast stays valid")


SETTINGS_FILES: dict[type[BaseModel], str] = {
    MLSettings: "ml_settings.json",
    EnsembleSettings: "ensemble_settings.json",
    ForecastingSettings: "forecasting_settings.json",
}

M = TypeVar("M", bound=BaseModel)


def load_json_settings(model: type[M], path: Path | str, *, environ: dict | None = None) -> M:
    """Load and validate one JSON settings file; a missing file gives the defaults."""
    path = Path(path)
    data: dict = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object")
    prefix = f"KRYPTOBOT_{path.stem.upper()}__"
    for name, raw in (os.environ if environ is None else environ).items():
        if name.startswith(prefix):
            key = name[len(prefix):].lower()
            try:
                data[key] = json.loads(raw)
            except json.JSONDecodeError:
                data[key] = raw
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"key {'.'.join(str(p) for p in err['loc'])!r}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc


def load_settings_file(model: type[M], config_dir: Path | str) -> M:
    """Load one of the seed's settings files from ``config_dir`` by its model type."""
    return load_json_settings(model, Path(config_dir) / SETTINGS_FILES[model])
