"""The ledger schema: older ledgers are migrated in place, newer ones are refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from migrate.ledger import LEDGER_FILE, SCHEMA_VERSION, LedgerError, connect
from migrate.ledger.schema import SCHEMA


def _old_ledger(state_dir: Path) -> None:
    """A schema-1 ledger: items.upload_state was called upload_url."""
    state_dir.mkdir()
    conn = sqlite3.connect(state_dir / LEDGER_FILE)
    conn.executescript(SCHEMA.replace("upload_state TEXT,", "upload_url TEXT,"))
    conn.execute("INSERT INTO meta(key, value) VALUES('schema_version', '1')")
    conn.execute(
        "INSERT INTO items(plan_id, seq, kind, batch, source, relpath, size, upload_url)"
        " VALUES('p', 1, 'object', 1, 's', 'a.bin', 10, '{\"kind\": \"composite\"}')"
    )
    conn.commit()
    conn.close()


def test_an_older_ledger_keeps_its_upload_state_under_the_new_column_name(tmp_path: Path) -> None:
    _old_ledger(tmp_path / "state")
    conn = connect(tmp_path / "state")
    columns = {r[1] for r in conn.execute("PRAGMA table_info(items)")}
    assert "upload_state" in columns and "upload_url" not in columns
    assert conn.execute("SELECT upload_state FROM items").fetchone()[0] == '{"kind": "composite"}'
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    conn.close()
    connect(tmp_path / "state").close()  # migrating twice is a no-op


def test_a_ledger_from_a_newer_migrate_is_refused(tmp_path: Path) -> None:
    connect(tmp_path / "state").execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(LedgerError, match="newer than this migrate"):
        connect(tmp_path / "state")
