"""Inventory of the listener logs: each log file's identity, events, time span and bad lines into
`event_files` (a file unchanged since the last inventory is kept, not re-scanned)."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field

from migrate.config import ListenerSource
from migrate.ledger import transaction
from migrate.ledger.states import LogStatus
from migrate.progress import Event, Reporter

EXAMPLES = 10


@dataclass
class ListenerReport:
    name: str
    topic: str
    files: int = 0
    bytes: int = 0
    events: int = 0
    event_bytes: int = 0
    malformed: int = 0
    oversized: int = 0
    min_time: str | None = None
    max_time: str | None = None
    rescanned: int = 0
    removed: int = 0
    anomalies: list[dict] = field(default_factory=list)
    malformed_examples: list[dict] = field(default_factory=list)


def list_logs(src: ListenerSource) -> list[tuple[str, tuple[int, int, int] | None]]:
    """Each log file of the listener with its (size, mtime_ns, inode), None where stat failed."""
    from migrate.sources.eventlog import expand_paths

    out = []
    for path in expand_paths(src):
        try:
            st = os.stat(path)
            out.append((path, (st.st_size, st.st_mtime_ns, st.st_ino)))
        except OSError:
            out.append((path, None))
    return out


def inventory_logs(
    conn: sqlite3.Connection, src: ListenerSource, snap: int, report: Reporter, scanner=None
) -> ListenerReport:
    """The listener's files into event_files; unchanged ones are kept, the rest scanned (here, or on the
    workers that mount the listener when scanner is engine/dask_inventory.DaskScanner)."""
    from migrate.sources.eventlog import scan_file

    rep = ListenerReport(src.name, src.topic)
    report(Event("phase", name=f"scanning {src.name}"))
    todo = []
    for path, ident in scanner.list_logs(src) if scanner is not None else list_logs(src):
        old = conn.execute(
            "SELECT size, mtime_ns, inode, status FROM event_files WHERE source=? AND path=?", (src.name, path)
        ).fetchone()
        if ident is not None and old is not None and tuple(old[:3]) == tuple(ident) and old["status"] == LogStatus.OK:
            with transaction(conn):
                conn.execute("UPDATE event_files SET seen=? WHERE source=? AND path=?", (snap, src.name, path))
            continue
        todo.append(path)
    scans = scanner.scan_logs(src, todo) if scanner is not None else (scan_file(path, src) for path in todo)
    for scan in scans:
        path = scan.path
        rep.rescanned += 1
        status = LogStatus.ANOMALY if scan.anomaly else LogStatus.OK
        with transaction(conn):
            conn.execute("DELETE FROM bad_lines WHERE source=? AND path=?", (src.name, path))
            conn.executemany(
                "INSERT OR REPLACE INTO bad_lines(source, path, line, offset, reason) VALUES(?,?,?,?,?)",
                [(src.name, path, line, off, reason) for line, off, reason in scan.bad_lines],
            )
            conn.execute(
                "INSERT OR REPLACE INTO event_files(source, path, size, mtime_ns, inode, events, malformed, oversized,"
                " event_bytes, min_time, max_time, id_digest, crc32c, status, reason, seen, changed)"
                " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    src.name,
                    path,
                    scan.size,
                    scan.mtime_ns,
                    scan.inode,
                    scan.events,
                    scan.malformed,
                    scan.oversized,
                    scan.event_bytes,
                    scan.min_time,
                    scan.max_time,
                    scan.digest.hex,
                    scan.crc32c,
                    status,
                    scan.anomaly,
                    snap,
                    snap,
                ),
            )
        report(Event("file", name=path))
    with transaction(conn):
        rep.removed = conn.execute(
            "SELECT COUNT(*) FROM event_files WHERE source=? AND seen<?", (src.name, snap)
        ).fetchone()[0]
        conn.execute(
            "DELETE FROM bad_lines WHERE source=? AND path IN (SELECT path FROM event_files WHERE source=? AND seen<?)",
            (src.name, src.name, snap),
        )
        conn.execute("DELETE FROM event_files WHERE source=? AND seen<?", (src.name, snap))
    _summarise_logs(conn, src.name, rep)
    return rep


def _summarise_logs(conn: sqlite3.Connection, source: str, rep: ListenerReport) -> None:
    from migrate.sources.eventlog import time_key

    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(size),0), COALESCE(SUM(events),0), COALESCE(SUM(event_bytes),0),"
        " COALESCE(SUM(malformed),0), COALESCE(SUM(oversized),0) FROM event_files WHERE source=?",
        (source,),
    ).fetchone()
    (rep.files, rep.bytes, rep.events, rep.event_bytes, rep.malformed, rep.oversized) = tuple(row)
    # by time, not text: '...:00.5Z' sorts before '...:00Z' as a string
    spans = conn.execute(
        "SELECT min_time, max_time FROM event_files WHERE source=? AND min_time IS NOT NULL", (source,)
    ).fetchall()
    rep.min_time = min((r[0] for r in spans), key=time_key, default=None)
    rep.max_time = max((r[1] for r in spans), key=time_key, default=None)
    for r in conn.execute(
        "SELECT path, reason FROM event_files WHERE source=? AND status=? ORDER BY path", (source, LogStatus.ANOMALY)
    ):
        rep.anomalies.append({"path": r[0], "reason": r[1]})
    for r in conn.execute(
        "SELECT path, line, reason FROM bad_lines WHERE source=? ORDER BY path, line LIMIT ?", (source, EXAMPLES)
    ):
        rep.malformed_examples.append({"path": r[0], "line": r[1], "reason": r[2]})
