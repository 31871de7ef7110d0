"""Alembic's environment for the ledger: migrations run on the connection (and inside the
transaction) the ledger opened, never on one of their own."""
from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the ledger's migrations run from kryptobot.trading.broker.database.migrate, with a connection")
context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()
