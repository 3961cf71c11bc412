"""The `offsets` table: per log file of a plan, the watermark below which every event is acknowledged
(or quarantined), its line number, and the crash accounting that bounds possible duplicates."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Offsets:
    """One log file's row: where its acknowledged prefix ends, and whether the file is done."""

    watermark: int  # byte offset in the decompressed stream
    line: int  # lines below the watermark
    published: int
    quarantined: int
    done: bool


def get(conn: sqlite3.Connection, plan_id: str, path: str) -> Offsets | None:
    row = conn.execute(
        "SELECT watermark, line, published, quarantined, done FROM offsets WHERE plan_id=? AND path=?", (plan_id, path)
    ).fetchone()
    return None if row is None else Offsets(int(row[0]), int(row[1]), int(row[2]), int(row[3]), bool(row[4]))


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


def set_position(
    conn: sqlite3.Connection, plan_id: str, path: str, watermark: int, line: int, published: int, quarantined: int
) -> None:
    """Like advance(), with absolute counts (a Dask task reports its file's totals)."""
    conn.execute(
        "UPDATE offsets SET watermark=?, line=?, published=?, quarantined=? WHERE plan_id=? AND path=?",
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
