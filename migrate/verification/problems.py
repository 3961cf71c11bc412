"""The line-per-problem listing, in the style of `rclone check --combined`.

    + path   missing at the destination (object, or event never received)
    * path   differs (size, CRC32C, re-hashed bytes; event received more than once)
    - path   only at the destination (extra object, unexpected event)
    ! path   error (item failed or changed at source during the run, unreadable source log, download error)
    = path   matches (only when asked: there can be millions)

Paths: objects as ``gs://bucket/object``, events as ``event://listener/event_id``, source logs as
``file://path``. Lines live in a TEMP table until written, so millions of them cost disk, not RAM,
and come out sorted by path (byte order), which makes two runs' listings diff cleanly.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from migrate.atomic import atomic_open

MISSING, DIFFERS, EXTRA, ERROR, MATCH = "+", "*", "-", "!", "="
SYMBOLS = (MISSING, DIFFERS, EXTRA, ERROR, MATCH)
BATCH = 5000


def object_path(bucket: str, name: str) -> str:
    return f"gs://{bucket}/{name}"


def event_path(listener: str, event_id: str) -> str:
    return f"event://{listener}/{event_id}"


def file_path(path: str) -> str:
    return f"file://{path}"


def _clean(path: str) -> str:
    # One problem per line: a newline in an id or name must not start a new line.
    return path.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


class ProblemLines:
    """Collects (symbol, path) lines in a TEMP table of `conn`; writes them sorted."""

    def __init__(self, conn: sqlite3.Connection, *, include_matches: bool = False) -> None:
        self.conn = conn
        self.include_matches = include_matches
        self._buf: list[tuple[str, str]] = []
        conn.executescript(
            "DROP TABLE IF EXISTS temp.verify_lines;"
            "CREATE TEMP TABLE verify_lines(path TEXT NOT NULL, sym TEXT NOT NULL, PRIMARY KEY(path, sym))"
            " WITHOUT ROWID;"
        )

    def add(self, sym: str, path: str) -> None:
        if sym == MATCH and not self.include_matches:
            return
        self._buf.append((_clean(path), sym))
        if len(self._buf) >= BATCH:
            self.flush()

    def replace(self, sym: str, path: str) -> None:
        """Record a problem found later for a path that was counted as a match (e.g. by --deep)."""
        self.flush()
        self.conn.execute("DELETE FROM temp.verify_lines WHERE path = ? AND sym = ?", (_clean(path), MATCH))
        self.add(sym, path)

    def flush(self) -> None:
        if self._buf:
            self.conn.executemany("INSERT OR IGNORE INTO temp.verify_lines(path, sym) VALUES(?,?)", self._buf)
            self._buf.clear()

    def counts(self) -> dict[str, int]:
        self.flush()
        rows = self.conn.execute("SELECT sym, COUNT(*) FROM temp.verify_lines GROUP BY sym").fetchall()
        found = {r[0]: r[1] for r in rows}
        return {s: found.get(s, 0) for s in SYMBOLS if s != MATCH or self.include_matches}

    def write(self, path: Path) -> int:
        """Write the sorted listing atomically; returns the number of lines."""
        self.flush()
        n = 0
        with atomic_open(path, "w", errors="surrogateescape", newline="\n") as fh:
            for row in self.conn.execute("SELECT sym, path FROM temp.verify_lines ORDER BY path, sym"):
                fh.write(f"{row[0]} {row[1]}\n")
                n += 1
        return n
