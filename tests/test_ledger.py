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


def test_typed_readers_give_log_files_and_their_watermarks_with_the_stored_state_text(tmp_path: Path) -> None:
    from migrate.ledger import items, offsets, transaction
    from migrate.ledger.states import ItemState

    conn = connect(tmp_path / "state")
    with transaction(conn):
        for seq, state in ((1, "done"), (2, "pending"), (3, "failed")):
            conn.execute(
                "INSERT INTO items(plan_id, seq, kind, batch, source, relpath, topic, size, state)"
                " VALUES('p', ?, 'events', 1, 'plays', ?, 't', 10, ?)",
                (seq, f"log{seq}.jsonl", state),
            )
        conn.execute(
            "INSERT INTO items(plan_id, seq, kind, batch, source, relpath, size)"
            " VALUES('p', 4, 'object', 1, 'a', 'x', 1)"
        )
        offsets.begin(conn, "p", "plays", "log2.jsonl", 50)
        offsets.set_position(conn, "p", "log2.jsonl", 120, 7, 6, 1)
        items.set_state(conn, "p", 3, ItemState.SOURCE_CHANGED, "replaced")
    every = items.event_files(conn, "p")
    assert [(f.seq, f.relpath, f.state) for f in every] == [
        (1, "log1.jsonl", ItemState.DONE),
        (2, "log2.jsonl", ItemState.PENDING),
        (3, "log3.jsonl", ItemState.SOURCE_CHANGED),
    ]
    assert [f.seq for f in items.open_event_files(conn, "p")] == [2]
    assert offsets.get(conn, "p", "log2.jsonl") == offsets.Offsets(120, 7, 6, 1, False)
    assert offsets.get(conn, "p", "log1.jsonl") is None
    # the enum is stored as its text: the schema's values are unchanged
    assert conn.execute("SELECT state FROM items WHERE seq=3").fetchone()[0] == "source-changed"
    conn.close()
