"""Logs that grew after an earlier run replayed them: plan only the lines appended since.

The active file of a listener log is appended to between waves. Replaying it whole again would
re-publish every event an earlier plan already delivered. When the file is provably the one that
was replayed plus new lines, the plan item starts where that replay ended instead:

  - the file is plain (a gzip member cannot be extended in place), with the same inode;
  - it is larger than the replayed version, whose size and CRC32C the earlier plan's item recorded
    (the inventory computes a plain log's CRC32C while scanning it);
  - its first `size` bytes still have that CRC32C, and they end with a newline, so the old last
    line is complete and the new lines start at a line boundary.

The item then carries `start_offset` (that size) and `start_line` (the lines below it, CSV header
included), and its events, malformed and oversized counts and id digest are those of the new lines
only. Run and verify read the file from there. A file that fails any test is replayed from its
start, as before, and the plan warns about it (`replayed_before`).
"""

from __future__ import annotations

import sqlite3

from migrate.config import Config
from migrate.sources.eventlog import Prefix, read_prefix, scan_file


def resume_appended(conn: sqlite3.Connection, cfg: Config) -> int:
    """Turn planned logs that only grew since an earlier replay into tail replays. Returns how many."""
    rows = conn.execute(
        "SELECT ord, source, path, size, mtime_ns, inode FROM plan_ev WHERE code IS NULL AND changed_since_replay = 1"
    ).fetchall()
    resumed = 0
    for ord_, source, path, size, mtime_ns, inode in rows:
        done = conn.execute(
            "SELECT size, crc32c FROM plan_done_ev WHERE source = ? AND path = ? AND inode = ? AND size < ?"
            " AND crc32c IS NOT NULL ORDER BY size DESC LIMIT 1",
            (source, path, inode, size),
        ).fetchone()
        if done is None:
            continue
        prefix = read_prefix(path, done[0])
        if prefix is None or prefix.crc32c != done[1] or not prefix.ends_line:
            continue
        scan = scan_file(path, cfg.listener_source(source), start_offset=prefix.size, start_line=prefix.lines)
        if scan.anomaly or (scan.size, scan.mtime_ns, scan.inode) != (size, mtime_ns, inode):
            continue  # unreadable, or changed since the inventory: the run will see it as changed
        if _update(conn, ord_, path, scan, prefix):
            resumed += 1
    return resumed


def _update(conn: sqlite3.Connection, ord_: int, path: str, scan, prefix: Prefix) -> bool:
    cur = conn.execute(
        "UPDATE plan_ev SET events = ?, malformed = ?, oversized = ?, event_bytes = ?, id_digest = ?,"
        " min_time = ?, max_time = ?, start_offset = ?, start_line = ?, changed_since_replay = 0,"
        " code = CASE WHEN ? = 0 THEN 'replayed-earlier' ELSE code END,"
        " detail = CASE WHEN ? = 0 THEN 'only empty lines appended since the earlier replay' ELSE detail END"
        " WHERE ord = ? AND path = ?",
        (
            scan.events,
            scan.malformed,
            scan.oversized,
            scan.event_bytes,
            scan.digest.hex,
            scan.min_time,
            scan.max_time,
            prefix.size,
            prefix.lines,
            scan.events + scan.malformed + scan.oversized,
            scan.events + scan.malformed + scan.oversized,
            ord_,
            path,
        ),
    )
    return cur.rowcount == 1
