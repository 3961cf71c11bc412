"""The `offsets` table: per log file of a plan, the watermark below which every event is acknowledged
(or quarantined), its line number, and the crash accounting that bounds possible duplicates."""

from __future__ import annotations

import sqlite3


def get(conn: sqlite3.Connection, plan_id: str, path: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM offsets WHERE plan_id=? AND path=?", (plan_id, path)).fetchone()


def begin(conn: sqlite3.Connection, plan_id: str, source: str, path: str, in_flight_ceiling: int) -> None:
    """A run starts on the file: count it interrupted until it ends cleanly, with this run's ceiling of
    events that can be above the committed watermark."""
    conn.execute("INSERT OR IGNORE INTO offsets(plan_id, source, path) VALUES(?,?,?)", (plan_id, source, path))
    conn.execute(
        "UPDATE offsets SET interrupted = interrupted + 1, in_flight_max = MAX(in_flight_max, ?)"
        " WHERE plan_id=? AND path=?",
        (in_flight_ceiling, plan_id, path),
    )


def advance(
    conn: sqlite3.Connection, plan_id: str, path: str, watermark: int, line: int, published: int, quarantined: int
) -> None:
    conn.execute(
        "UPDATE offsets SET watermark=?, line=?, published=published+?, quarantined=quarantined+?"
        " WHERE plan_id=? AND path=?",
        (watermark, line, published, quarantined, plan_id, path),
    )


def add_resent(conn: sqlite3.Connection, plan_id: str, path: str, n: int) -> None:
    """Events re-sent by a retried request (it may have been stored the first time)."""
    conn.execute("UPDATE offsets SET resent = resent + ? WHERE plan_id=? AND path=?", (n, plan_id, path))


def end_clean(conn: sqlite3.Connection, plan_id: str, path: str) -> None:
    """The run left the file with nothing in flight: undo begin()'s interrupted count."""
    conn.execute("UPDATE offsets SET interrupted = MAX(0, interrupted - 1) WHERE plan_id=? AND path=?", (plan_id, path))


def mark_done(conn: sqlite3.Connection, plan_id: str, path: str) -> None:
    conn.execute("UPDATE offsets SET done=1 WHERE plan_id=? AND path=?", (plan_id, path))


def duplicate_bound(conn: sqlite3.Connection, plan_id: str) -> int:
    """The most events that runs stopped mid-file may have published twice."""
    row = conn.execute(
        "SELECT COALESCE(SUM(interrupted * in_flight_max), 0) FROM offsets WHERE plan_id=?", (plan_id,)
    ).fetchone()
    return int(row[0])
