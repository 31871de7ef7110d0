"""The trader process's settings (``KRYPTOBOT_*``): where its ledger and reports live, who leads the schedule."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from kryptobot.settings import Settings
from kryptobot.trading.broker.ledger import KEEP_DECISIONS
from services.table import ServiceUrls


class TraderEnv(Settings, ServiceUrls):
    """Process settings of the trader (``KRYPTOBOT_*``): the shared ones, the services' URLs, and its own."""

    ledger_path: Path = Path("var/trader/ledger.sqlite")
    reports_dir: Path = Path("var/trader/reports")
    keep_reports: int = Field(50, ge=1, le=100_000, description="backtest runs whose reports are kept in reports_dir "
                                                               "(the oldest beyond are deleted; the latest run's copies stay)")
    cache_prefix: str = "kryptobot:forecast"
    max_concurrent_backtests: int = Field(1, ge=1, le=64, description="backtests at a time (429 above): each holds CPU for a while")
    # the live broker's (``broker: "ccxt"`` in trader_settings.json); never in a file
    exchange_api_key: SecretStr | None = None
    exchange_secret: SecretStr | None = None
    exchange_password: SecretStr | None = None  # the exchanges that also want a passphrase (OKX, KuCoin)
    # the ledger on PostgreSQL (``postgresql+psycopg://user@host:5432/db``), shared by replicas;
    # unset: the SQLite file at ledger_path
    database_url: SecretStr | None = None
    keep_decisions: int = Field(KEEP_DECISIONS, ge=1, description="decision rows kept (the oldest beyond are pruned, "
                                                                  "never one an order refers to)")
    leader_lease_seconds: float = Field(30.0, ge=0.0, le=3600.0, description="the scheduler leader's lease in Redis "
                                        "(renewed every third of it); 0: no election, this replica runs the schedule")
    leader_key: str = Field("kryptobot:trader:leader", min_length=1, description="Redis key of the leader's lease: one per "
                                                                                 "group of replicas sharing a ledger")

    def database_url_value(self) -> str | None:
        return self.database_url.get_secret_value() if self.database_url else None

    def exchange_credentials(self) -> dict[str, str | None]:
        """The exchange credentials as :func:`kryptobot.trading.broker.open_broker` takes them."""
        return {name: value.get_secret_value() if value else None for name, value in
                (("api_key", self.exchange_api_key), ("secret", self.exchange_secret), ("password", self.exchange_password))}
