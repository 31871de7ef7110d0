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
from typing import Annotated, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """A settings file or variable is wrong; the message names the file and key."""


class Settings(BaseSettings):
    """Process-level settings shared by every service (env prefix ``KRYPTOBOT_``)."""

    model_config = SettingsConfigDict(env_prefix="KRYPTOBOT_", extra="ignore")

    models_dir: Path = Path("models")
    config_dir: Path = Path("config")
    data_source: Literal["synthetic", "csv", "sample", "local"] = "synthetic"
    csv_dir: Path | None = None
    market_data_dir: Path = Field(Path("var/market-data"), description="the local store `kryptobot download-data` fills (source `local`)")
    # download-data's clients; the names Alpaca's own tools read are accepted too
    alpaca_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("KRYPTOBOT_ALPACA_API_KEY", "ALPACA_API_KEY"))
    alpaca_secret_key: SecretStr | None = Field(None, validation_alias=AliasChoices("KRYPTOBOT_ALPACA_SECRET_KEY", "ALPACA_SECRET_KEY"))
    alpaca_data_url: str | None = Field(None, description="instead of https://data.alpaca.markets (a proxy, or a test server)")
    ccxt_config: dict = Field(default_factory=dict, description="JSON merged into every ccxt exchange's config, e.g. urls, options, apiKey")
    api_key: str | None = None
    host: str = Field("127.0.0.1", description="address `python -m services.serve` listens on")
    port: int | None = Field(None, ge=1, le=65535, description="its port (default: the service table's)")
    allow_open: bool = Field(False, description="listen beyond loopback without an API key (the operator's explicit yes)")
    signing_key: SecretStr | None = Field(
        None, description="HMAC key that signs every model version; when set, unsigned or wrongly signed versions are refused"
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    replication: bool = Field(
        True,
        description="model services: follow the versions other replicas of the same store activate "
        "(Redis pub/sub when Redis answers, and the store's active pointer every replication_poll_seconds)",
    )
    replication_poll_seconds: float = Field(
        3.0, ge=0.1, le=3600, description="how often a model service re-reads the store's active pointer (lost messages, no Redis)"
    )
    max_batch: int = Field(1000, ge=1)
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="largest request body a service reads (413 above)")
    log_format: Literal["auto", "json", "text"] = "auto"
    keep_versions: int = Field(20, ge=2, le=10_000, description="versions kept per line (never the active or the previous one)")
    keep_jobs: int = Field(100, ge=1, le=100_000, description="finished training-job records kept")
    tf_threads: int = Field(2, ge=1, le=256, description="TensorFlow's intra- and inter-op thread pools (anomaly, forecast)")
    ray_address: str | None = Field(
        None, min_length=1, description="a Ray cluster's head (host:port of its GCS, e.g. 127.0.0.1:6389) that runs the heavy work "
        "(walk-forward folds); unset: this machine's processes (kryptobot.parallel)"
    )

    def signing_key_bytes(self) -> bytes | None:
        return self.signing_key.get_secret_value().encode() if self.signing_key else None


#: a threshold of the seed's files: a number, or "auto" (resolved from the active model
#: version's out-of-sample sweep by :mod:`kryptobot.thresholds`; the trader reports the number)
Threshold = Annotated[float, Field(ge=0.0, le=1.0)] | Literal["auto"]


class FileSettings(BaseModel):
    """Base of the JSON settings files: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MLSettings(FileSettings):
    """``config/ml_settings.json``."""

    ml_enabled: bool = True
    anomaly_detection_enabled: bool = True
    min_confidence_threshold: Threshold = 0.6
    position_size_multiplier: float = Field(1.0, gt=0.0)


class EnsembleSettings(FileSettings):
    """``config/ensemble_settings.json``."""

    ensemble_enabled: bool = True
    confidence_threshold: Threshold = 0.6
    position_size_multiplier: float = Field(1.2, gt=0.0)


class ForecastingSettings(FileSettings):
    """``config/forecasting_settings.json``."""

    enabled: bool = True
    model_types: list[Literal["lstm", "gru"]] = Field(default_factory=lambda: ["lstm", "gru"], min_length=1)
    sequence_length: int = Field(60, ge=5, le=1000)
    forecast_horizon: int = Field(5, ge=1, le=250)
    confidence_threshold: Threshold = 0.7
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
