"""Settings files keep the seed's names and keys; wrong ones stop start-up with a clear message."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kryptobot.settings import (
    ConfigError,
    EnsembleSettings,
    ForecastingSettings,
    MLSettings,
    load_json_settings,
    load_settings_file,
)

CONFIG = Path(__file__).resolve().parents[2] / "config"


def test_shipped_files_load():
    assert load_settings_file(MLSettings, CONFIG).min_confidence_threshold == 0.6
    assert load_settings_file(EnsembleSettings, CONFIG).position_size_multiplier == 1.2
    forecasting = load_settings_file(ForecastingSettings, CONFIG)
    assert (forecasting.sequence_length, forecasting.forecast_horizon, forecasting.update_frequency) == (60, 5, 24)


def test_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "ml_settings.json"
    path.write_text(json.dumps({"ml_enabled": True, "min_confidense_threshold": 0.7}))
    with pytest.raises(ConfigError, match=r"ml_settings\.json.*min_confidense_threshold"):
        load_json_settings(MLSettings, path, environ={})


def test_bad_value_names_key(tmp_path):
    path = tmp_path / "forecasting_settings.json"
    path.write_text(json.dumps({"model_types": ["lstm", "transformer"]}))
    with pytest.raises(ConfigError, match="model_types"):
        load_json_settings(ForecastingSettings, path, environ={})


def test_environment_overrides_file(tmp_path):
    path = tmp_path / "forecasting_settings.json"
    path.write_text(json.dumps({"update_frequency": 24}))
    env = {"KRYPTOBOT_FORECASTING_SETTINGS__UPDATE_FREQUENCY": "6"}
    assert load_json_settings(ForecastingSettings, path, environ=env).update_frequency == 6
