"""The `items` table: one row per planned object or log file, and its state (see states.py)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from migrate.ledger.schema import latest_snapshot, now, transaction
from migrate.ledger.states import NOT_COPIED, OPEN, RUN_PROBLEMS, ItemKind, ItemState, placeholders
from migrate.plan import EventItem, ObjectItem, Plan

INSERT_BATCH = 5000
_KINDS = (ObjectItem.kind, EventItem.kind)


def register_items(conn: sqlite3.Connection, plan: Plan) -> None:
    """Insert the plan's items into the ledger once; later calls are no-ops."""
    row = conn.execute("SELECT COUNT(*) FROM items WHERE plan_id=?", (plan.plan_id,)).fetchone()
    if row[0] == plan.item_count:
        return
    pid = plan.plan_id
    batch: list[tuple] = []
    starts: list[tuple] = []

    def flush() -> None:
        conn.executemany(
            "INSERT OR IGNORE INTO items(plan_id, seq, kind, batch, source, relpath, bucket, object, topic, size,"
            " mtime_ns, inode, crc32c, updated_at) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            batch,
        )
        batch.clear()

    with transaction(conn):
        conn.execute(
            "INSERT OR IGNORE INTO plans(plan_id, name, snapshot_id, created_at, path) VALUES(?,?,?,?,?)",
            (pid, plan.name, plan.snapshot_id, now(), str(plan.path)),
        )
        t = now()
        # the manifest's lines as parsed JSON, not typed items: a row needs a few fields, and building
        # a frozen dataclass per line cost more than the insert
        for doc in plan.iter_docs():
            kind = doc.get("kind")
            if kind not in _KINDS:
                raise ValueError(f"manifest item {doc.get('seq')} has unknown kind {kind!r}")
            g = doc.get
            batch.append(
                (pid, doc["seq"], kind, doc["batch"], doc["source"], doc["relpath"], g("bucket"), g("object"))
                + (g("topic"), doc["size"], g("mtime_ns"), g("inode"), g("crc32c"), t)
            )
            if len(batch) >= INSERT_BATCH:
                flush()
            if kind == EventItem.kind and g("start_offset"):
                # a log that only grew since an earlier replay: this plan replays it from there on
                starts.append((pid, doc["source"], doc["relpath"], doc["start_offset"], g("start_line", 0)))
        if batch:
            flush()
        conn.executemany(
            "INSERT OR IGNORE INTO offsets(plan_id, source, path, watermark, line) VALUES(?,?,?,?,?)", starts
        )


def drift(conn: sqlite3.Connection, plan: Plan, limit: int = 20) -> tuple[int, list[str]]:
    """Files whose inventory changed since the plan was made: (count, up to `limit` names).

    Compares the plan's items with the newest inventory; nothing drifts if no inventory ran since.
    """
    latest = latest_snapshot(conn)
    if latest is None or latest["id"] == plan.snapshot_id:
        return 0, []
    register_items(conn, plan)
    sql = """
      SELECT i.source, i.relpath FROM items i
      LEFT JOIN files f ON f.source = i.source AND f.relpath = i.relpath
      WHERE i.plan_id = :pid AND i.kind = :object AND i.state != :done AND (
        f.relpath IS NULL OR f.seen != :snap OR f.kind != 'file' OR f.size != i.size OR f.mtime_ns != i.mtime_ns
        OR f.inode != i.inode OR (f.crc32c IS NOT NULL AND i.crc32c IS NOT NULL AND f.crc32c != i.crc32c))
      UNION ALL
      SELECT i.source, i.relpath FROM items i
      LEFT JOIN event_files e ON e.source = i.source AND e.path = i.relpath
      WHERE i.plan_id = :pid AND i.kind = :events AND i.state != :done AND (
        e.path IS NULL OR e.seen != :snap OR e.size != i.size OR e.mtime_ns != i.mtime_ns OR e.inode != i.inode)
    """
    args = {
        "pid": plan.plan_id,
        "snap": latest["id"],
        "done": ItemState.DONE,
        "object": ItemKind.OBJECT,
        "events": ItemKind.EVENTS,
    }
    names: list[str] = []
    count = 0
    for row in conn.execute(sql, args):
        count += 1
        if len(names) < limit:
            names.append(f"{row['source']}:{row['relpath']}")
    return count, names


def count(conn: sqlite3.Connection, plan_id: str, kind: str | None = None, states: tuple[str, ...] = ()) -> int:
    """Items of a plan, of one kind and in one of `states` (any when not given)."""
    sql, args = "SELECT COUNT(*) FROM items WHERE plan_id=?", [plan_id]
    if kind is not None:
        sql += " AND kind=?"
        args.append(kind)
    if states:
        sql += f" AND state IN ({placeholders(states)})"
        args.extend(states)
    return int(conn.execute(sql, args).fetchone()[0])


def has_open(conn: sqlite3.Connection, plan_id: str, kind: str) -> bool:
    """Whether a run has anything of `kind` left to (re)try."""
    sql = f"SELECT 1 FROM items WHERE plan_id=? AND kind=? AND state IN ({placeholders(OPEN)}) LIMIT 1"
    return conn.execute(sql, (plan_id, kind, *OPEN)).fetchone() is not None


def not_copied(conn: sqlite3.Connection, plan_id: str) -> int:
    """Planned items no re-run copies (changed since inventory, or in conflict)."""
    return count(conn, plan_id, states=NOT_COPIED)


def open_objects(conn: sqlite3.Connection, plan_id: str) -> tuple[int, int]:
    """(objects, bytes) a run has left to copy."""
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM items"
        f" WHERE plan_id=? AND kind=? AND state IN ({placeholders(OPEN)})",
        (plan_id, ItemKind.OBJECT, *OPEN),
    ).fetchone()
    return int(row[0]), int(row[1])


def open_sources(conn: sqlite3.Connection, plan_id: str, kinds: tuple[str, ...]) -> list[str]:
    """The sources that items of `kinds` a run still has to do come from, sorted."""
    sql = (
        f"SELECT DISTINCT source FROM items WHERE plan_id=? AND kind IN ({placeholders(kinds)})"
        f" AND state IN ({placeholders(OPEN)}) ORDER BY source"
    )
    return [r[0] for r in conn.execute(sql, (plan_id, *kinds, *OPEN))]


@dataclass(frozen=True, slots=True)
class EventFile:
    """The ledger row of one planned log file (kind 'events'): what a replay reads and checks."""

    seq: int
    source: str
    relpath: str
    topic: str | None
    size: int
    mtime_ns: int | None
    inode: int | None
    crc32c: str | None
    state: ItemState


_EVENT_FILE_COLUMNS = "seq, source, relpath, topic, size, mtime_ns, inode, crc32c, state"


def event_files(conn: sqlite3.Connection, plan_id: str, states: tuple[str, ...] = ()) -> list[EventFile]:
    """The plan's log files in plan order, in one of `states` (any when not given)."""
    sql, args = f"SELECT {_EVENT_FILE_COLUMNS} FROM items WHERE plan_id=? AND kind=?", [plan_id, ItemKind.EVENTS]
    if states:
        sql += f" AND state IN ({placeholders(states)})"
        args.extend(states)
    return [EventFile(*row[:-1], ItemState(row[-1])) for row in conn.execute(sql + " ORDER BY seq", args)]


def open_event_files(conn: sqlite3.Connection, plan_id: str) -> list[EventFile]:
    """The log files a run has left to replay, in plan order."""
    return event_files(conn, plan_id, OPEN)


def open_event_progress(conn: sqlite3.Connection, plan_id: str) -> list[tuple[int, int]]:
    """(seq, events published so far) of every log file a run has left to replay."""
    return [
        (r[0], r[1])
        for r in conn.execute(
            "SELECT i.seq, COALESCE(o.published, 0) FROM items i"
            " LEFT JOIN offsets o ON o.plan_id = i.plan_id AND o.path = i.relpath"
            f" WHERE i.plan_id=? AND i.kind=? AND i.state IN ({placeholders(OPEN)})",
            (plan_id, ItemKind.EVENTS, *OPEN),
        )
    ]


def run_problems(conn: sqlite3.Connection, plan_id: str, kind: str) -> dict[str, tuple[str, str | None]]:
    """relpath -> (state, last error) of the items a run ended failed, source-changed or in conflict."""
    sql = (
        "SELECT relpath, state, last_error FROM items"
        f" WHERE plan_id=? AND kind=? AND state IN ({placeholders(RUN_PROBLEMS)})"
    )
    return {r[0]: (r[1], r[2]) for r in conn.execute(sql, (plan_id, kind, *RUN_PROBLEMS))}


def set_state(conn: sqlite3.Connection, plan_id: str, seq: int, state: ItemState, error: str | None) -> None:
    conn.execute(
        "UPDATE items SET state=?, last_error=?, updated_at=? WHERE plan_id=? AND seq=?",
        (state, error, now(), plan_id, seq),
    )


def counts_by_state(conn: sqlite3.Connection, plan_id: str) -> list[tuple[str, str, int, int, int]]:
    """(kind, state, items, bytes, retries) per kind and state of a plan."""
    return [
        tuple(r)
        for r in conn.execute(
            "SELECT kind, state, COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(retries), 0) FROM items"
            " WHERE plan_id=? GROUP BY kind, state",
            (plan_id,),
        )
    ]


def count_attempt(conn: sqlite3.Connection, plan_id: str, seq: int) -> None:
    conn.execute(
        "UPDATE items SET attempts = attempts + 1, updated_at=? WHERE plan_id=? AND seq=?", (now(), plan_id, seq)
    )


def add_retries(conn: sqlite3.Connection, plan_id: str, seq: int, n: int) -> None:
    conn.execute("UPDATE items SET retries = retries + ? WHERE plan_id=? AND seq=?", (n, plan_id, seq))
