"""The SQLite ledger: crash-relevant state of every stage (schema and connection in `schema.py`)."""

from migrate.ledger.schema import (
    LEDGER_FILE,
    SCHEMA_VERSION,
    LedgerError,
    connect,
    latest_snapshot,
    ledger_path,
    now,
    transaction,
)

__all__ = [
    "LEDGER_FILE",
    "SCHEMA_VERSION",
    "LedgerError",
    "connect",
    "latest_snapshot",
    "ledger_path",
    "now",
    "transaction",
]
