"""The ledger's Alembic migrations, run in process by :func:`kryptobot.trading.broker.database.migrate`."""
