"""config/trader_settings.json: validated, errors name the file and the key."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kryptobot.settings import ConfigError
from kryptobot.trading.settings import TraderConfig, TraderSettings

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config"


def test_the_shipped_file_is_the_defaults():
    shipped = TraderConfig.load(CONFIG_DIR).trader
    assert shipped == TraderSettings()
    assert len(shipped.watchlist) == 8 and shipped.data_source == "synthetic" and shipped.schedule_minutes == 0


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ({"watchlist": ["SPY"], "max_leverage": 3}, "max_leverage"),
        ({"unavailable_policy": "panic"}, "unavailable_policy"),
        ({"strategy": {"macd_fast": 30, "macd_slow": 26}}, "strategy"),
        ({"strategy": {"rules": ["astrology"]}}, "strategy.rules.0"),
        ({"commission": -0.1}, "commission"),
    ],
)
def test_a_wrong_key_names_the_file_and_the_key(tmp_path, content, key):
    for name in ("ml_settings.json", "ensemble_settings.json", "forecasting_settings.json"):
        (tmp_path / name).write_text((CONFIG_DIR / name).read_text())
    (tmp_path / "trader_settings.json").write_text(json.dumps(content))
    with pytest.raises(ConfigError, match=rf"trader_settings\.json: key '{key}'"):
        TraderConfig.load(tmp_path)


def test_environment_overrides_a_key(tmp_path, monkeypatch):
    monkeypatch.setenv("KRYPTOBOT_TRADER_SETTINGS__SCHEDULE_MINUTES", "5")
    assert TraderConfig.load(CONFIG_DIR).trader.schedule_minutes == 5
