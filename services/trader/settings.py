"""The trader process's settings (``KRYPTOBOT_*``): where its ledger and reports live."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from kryptobot.settings import Settings
from services.table import ServiceUrls


class TraderEnv(Settings, ServiceUrls):
    """Process settings of the trader (``KRYPTOBOT_*``): the shared ones, the services' URLs, and its own."""

    ledger_path: Path = Path("var/trader/ledger.sqlite")
    reports_dir: Path = Path("var/trader/reports")
    cache_prefix: str = "kryptobot:forecast"
    max_concurrent_backtests: int = Field(1, ge=1, le=64, description="backtests at a time (429 above): each holds CPU for a while")
    # the live broker's (``broker: "ccxt"`` in trader_settings.json); never in a file
    exchange_api_key: SecretStr | None = None
    exchange_secret: SecretStr | None = None
    exchange_password: SecretStr | None = None  # the exchanges that also want a passphrase (OKX, KuCoin)

    def exchange_credentials(self) -> dict[str, str | None]:
        """The exchange credentials as :func:`kryptobot.trading.broker.open_broker` takes them."""
        return {name: value.get_secret_value() if value else None for name, value in
                (("api_key", self.exchange_api_key), ("secret", self.exchange_secret), ("password", self.exchange_password))}
