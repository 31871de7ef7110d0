"""The trader process's settings (``KRYPTOBOT_*``): where its ledger and reports live."""
from __future__ import annotations

from pathlib import Path

from kryptobot.settings import Settings
from services.table import ServiceUrls


class TraderEnv(Settings, ServiceUrls):
    """Process settings of the trader (``KRYPTOBOT_*``): the shared ones, the services' URLs, and its own."""

    ledger_path: Path = Path("var/trader/ledger.sqlite")
    reports_dir: Path = Path("var/trader/reports")
    cache_prefix: str = "kryptobot:forecast"
