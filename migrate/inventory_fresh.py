"""The first inventory of a catalog source: rows straight from the walk, past a threshold through a second
process (migrate.ledger.bulk) so that walking and storing overlap.

A source with no earlier rows needs no lookups and no hashing: plain files travel as the
(relpath, size, mtime_ns, inode) tuples tree.walk_rows() makes, the INSERT supplies the rest.
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING

from migrate.inventory_logs import EXAMPLES
from migrate.ledger import transaction
from migrate.ledger.bulk import BulkWriter
from migrate.progress import Event, Reporter
from migrate.sources.tree import Entry

if TYPE_CHECKING:
    from migrate.inventory import CatalogReport

FRESH_INSERT = (
    "INSERT INTO files(source, relpath, kind, size, mtime_ns, inode, reason, seen, changed) VALUES(?,?,?,?,?,?,?,?,?)"
)
# a plain file of a first inventory: (relpath, size, mtime_ns, inode), as tree.scan_rows() gives it
PlainRow = tuple[str, int, int, int]


def walk_fresh(
    conn: sqlite3.Connection,
    source: str,
    snap: int,
    walk: Iterable[tuple[bytes, list[PlainRow], list[Entry]]],
    rep: CatalogReport,
    report: Reporter,
    batch_size: int,
    bulk_after: int,
) -> BulkWriter | None:
    """The first inventory of a source, from tree.walk_rows(): once the tree proves large, a second process
    stores the rows while this one walks (migrate.ledger.bulk). Returns that writer, every row stored and
    readable, for the caller to close()."""
    seen = 0
    writer: BulkWriter | None = None
    # a ledger with no files yet (of any source): the bulk writer builds its index once, at the end
    reindex = "files" if conn.execute("SELECT 1 FROM files LIMIT 1").fetchone() is None else None
    # The walk makes a few objects per file and frees them by reference counting (no cycles): the
    # cyclic collector, triggered every few hundred allocations, only costs time here (~15% of the CPU).
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        rows: list[PlainRow] = []
        others: list[Entry] = []
        for _, dir_rows, entries in walk:
            rows += dir_rows
            others += entries
            if len(rows) + len(others) < batch_size:
                continue
            seen += len(rows) + len(others)
            if writer is None and seen > bulk_after:
                writer = BulkWriter(_database_file(conn), _fresh_statements(source, snap), reindex=reindex)
            store_fresh(conn, source, snap, rows, others, rep, report, writer)
            rows, others = [], []
        if rows or others:
            store_fresh(conn, source, snap, rows, others, rep, report, writer)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if gc_was_on:
            gc.enable()
    if writer is not None:
        try:
            writer.stored()
        except BaseException:
            writer.abort()
            raise
    return writer


def _database_file(conn: sqlite3.Connection) -> str:
    return next(row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main")


def store_fresh(
    conn: sqlite3.Connection,
    source: str,
    snap: int,
    rows: list[PlainRow],
    entries: list[Entry],
    rep: CatalogReport,
    report: Reporter,
    writer: BulkWriter | None = None,
) -> None:
    """Store new rows of a source with no earlier rows: plain files as (relpath, size, mtime_ns, inode)
    rows, and entries of any kind.

    writer: where the rows go instead of this connection (a large first inventory)."""
    others = entries
    if entries:
        files = [(e.relpath, e.size, e.mtime_ns, e.inode) for e in entries if e.kind == "file"]
        if files:
            rows = rows + files
            others = [e for e in entries if e.kind != "file"]
    rep.added += len(rows)
    if len(rep.added_examples) < EXAMPLES:
        rep.added_examples.extend(r[0] for r in rows[: EXAMPLES - len(rep.added_examples)])
    for e in others:
        count_other(rep, e)
    full = [(source, e.relpath, e.kind, e.size, e.mtime_ns, e.inode, e.reason, snap, snap) for e in others]
    if writer is not None:
        writer.write(rows, 0)
        if full:
            writer.write(full, 1)
    else:
        plain, fresh = _fresh_statements(source, snap)
        with transaction(conn):
            conn.executemany(plain, rows)
            conn.executemany(fresh, full)
    report(Event("file", name=source, n=len(rows) + len(others)))


def count_other(rep: CatalogReport, entry: Entry) -> None:
    """A symlink or an anomaly: counted, the first few anomalies named."""
    if entry.kind == "symlink":
        rep.symlinks += 1
    else:
        rep.anomalies += 1
        if len(rep.anomaly_examples) < EXAMPLES:
            rep.anomaly_examples.append({"relpath": entry.relpath, "reason": entry.reason})


def _fresh_statements(source: str, snap: int) -> list[str]:
    """The INSERTs of a first inventory: a plain file row (relpath, size, mtime_ns, inode), then any row.

    The source and snapshot are written into the first one, so that the walk's rows need no copying."""
    quoted = "'" + source.replace("'", "''") + "'"
    plain = (
        "INSERT INTO files(source, relpath, kind, size, mtime_ns, inode, seen, changed)"
        f" VALUES({quoted}, ?, 'file', ?, ?, ?, {int(snap)}, {int(snap)})"
    )
    return [plain, FRESH_INSERT]
