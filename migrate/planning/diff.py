"""Classify every inventoried file against the destination listing and earlier runs, in SQL.

Two TEMP tables hold one row per inventoried entry of the snapshot, in plan order:
  plan_obj  catalog files   -> code NULL (planned) or a skip reason code
  plan_ev   listener logs   -> code NULL (planned) or a skip reason code
Rows are keyed by (ord, relpath/path) so scanning a table gives the deterministic plan order.

Earlier runs: for objects the bucket listing is the authority. An object in it, equal, is
'completed-earlier' when the ledger holds an earlier run's done item for it whose generation is
still the live one, else 'already-migrated'. An object the ledger marks done but the listing lacks
was deleted after migration; it is planned again and flagged (done_before), never silently
dropped, so a final delta wave restores it and verify can pass. Log files have no listing: a file
an earlier run replayed completely, unchanged since, is 'replayed-earlier'.
"""

from __future__ import annotations

import re
import sqlite3

from migrate.config import Config
from migrate.ledger.states import ItemKind, ItemState
from migrate.names import object_name, object_name_problem
from migrate.plan import SKIP_ALREADY_MIGRATED, SKIP_COMPLETED_EARLIER
from migrate.planning.listing import insert_many

OBJ_TABLES = """
DROP TABLE IF EXISTS temp.plan_src;
DROP TABLE IF EXISTS temp.plan_obj;
CREATE TEMP TABLE plan_src(
  source TEXT PRIMARY KEY, ord INTEGER NOT NULL, bucket TEXT NOT NULL, prefix TEXT NOT NULL,
  storage_class TEXT NOT NULL, root TEXT NOT NULL);
CREATE TEMP TABLE plan_obj(
  ord INTEGER NOT NULL, source TEXT NOT NULL, relpath TEXT NOT NULL, kind TEXT NOT NULL,
  size INTEGER NOT NULL, mtime_ns INTEGER, inode INTEGER, crc32c TEXT, inv_reason TEXT,
  bucket TEXT NOT NULL, object TEXT, storage_class TEXT NOT NULL, path TEXT NOT NULL, problem TEXT,
  d_size INTEGER, d_crc32c TEXT, d_generation INTEGER,
  code TEXT, detail TEXT, overwrite INTEGER NOT NULL DEFAULT 0, done_before INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(ord, relpath)) WITHOUT ROWID;
"""

EV_TABLES = """
DROP TABLE IF EXISTS temp.plan_lsrc;
DROP TABLE IF EXISTS temp.plan_ev;
DROP TABLE IF EXISTS temp.plan_done_ev;
CREATE TEMP TABLE plan_lsrc(
  source TEXT PRIMARY KEY, ord INTEGER NOT NULL, topic TEXT NOT NULL, format TEXT NOT NULL);
CREATE TEMP TABLE plan_ev(
  ord INTEGER NOT NULL, source TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
  mtime_ns INTEGER, inode INTEGER, events INTEGER NOT NULL, malformed INTEGER NOT NULL,
  oversized INTEGER NOT NULL, event_bytes INTEGER NOT NULL, id_digest TEXT, min_time TEXT, max_time TEXT,
  status TEXT NOT NULL, inv_reason TEXT, topic TEXT NOT NULL, format TEXT NOT NULL,
  code TEXT, detail TEXT, changed_since_replay INTEGER NOT NULL DEFAULT 0, crc32c TEXT,
  start_offset INTEGER NOT NULL DEFAULT 0, start_line INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(ord, path)) WITHOUT ROWID;
CREATE TEMP TABLE plan_done_ev(
  source TEXT NOT NULL, path TEXT NOT NULL, size INTEGER, mtime_ns INTEGER, inode INTEGER, plan_id TEXT NOT NULL,
  crc32c TEXT);
"""


# Fast path for the common case, checked per row over millions of files: a name that passes these
# cheap tests passes every rule of names.object_name/object_name_problem (test_plan_names proves the
# two agree on awkward names); anything else takes the full check.
_BAD_SEGMENT = re.compile(r"(?:^|/)\.{0,2}(?:/|$)")
_CONTROL_OR_SURROGATE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_FAST_MAX_CHARS = 256  # 256 characters are at most 1024 UTF-8 bytes


def _plain(prefix: str, relpath: str) -> bool:
    name = prefix + relpath
    return (
        len(name) <= _FAST_MAX_CHARS
        and (not prefix or prefix.endswith("/"))
        and not _BAD_SEGMENT.search(relpath)
        and not _CONTROL_OR_SURROGATE.search(name)
        and not name.startswith(".well-known/")
    )


def object_or_null(prefix: str, relpath: str) -> str | None:
    """The object name, or None when the relpath would escape the prefix."""
    if _plain(prefix, relpath):
        return prefix + relpath
    try:
        return object_name(prefix, relpath)
    except ValueError:
        return None


def name_problem(prefix: str, relpath: str) -> str | None:
    """Why GCS would reject prefix + relpath (names.object_name_problem), or None."""
    if _plain(prefix, relpath):
        return None
    try:
        name = object_name(prefix, relpath)
    except ValueError as exc:
        return str(exc)
    return object_name_problem(name)


def _register_functions(conn: sqlite3.Connection) -> None:
    conn.create_function("mig_object", 2, object_or_null, deterministic=True)
    conn.create_function("mig_name_problem", 2, name_problem, deterministic=True)


def classify_objects(conn: sqlite3.Connection, cfg: Config, snapshot_id: int) -> None:
    """Fill temp.plan_obj from the snapshot's catalog files joined with temp.plan_dest and done items.

    Needs temp.plan_dest (listing.load_destination). Conflicts stay code 'conflict' here; the
    caller applies the conflict policy (apply_conflict_policy).
    """
    _register_functions(conn)
    conn.executescript(OBJ_TABLES)
    insert_many(
        conn,
        "INSERT INTO plan_src(source, ord, bucket, prefix, storage_class, root) VALUES(?,?,?,?,?,?)",
        [
            (s.name, i, s.bucket, s.prefix, s.storage_class, str(s.root).rstrip("/") + "/")
            for i, s in enumerate(cfg.catalog)
        ],
    )
    conn.execute("BEGIN")
    try:
        conn.execute(
            """
            INSERT INTO plan_obj(ord, source, relpath, kind, size, mtime_ns, inode, crc32c, inv_reason, bucket,
                                 object, storage_class, path, problem, d_size, d_crc32c, d_generation)
            SELECT s.ord, f.source, f.relpath, f.kind, f.size, f.mtime_ns, f.inode, f.crc32c, f.reason, s.bucket,
                   mig_object(s.prefix, f.relpath), s.storage_class,
                   s.root || f.relpath,
                   CASE WHEN f.kind = 'file' THEN mig_name_problem(s.prefix, f.relpath) END,
                   d.size, d.crc32c, d.generation
            FROM files f
            JOIN plan_src s ON s.source = f.source
            LEFT JOIN plan_dest d ON d.bucket = s.bucket AND d.name = s.prefix || f.relpath
            WHERE f.seen = ?
            """,
            (snapshot_id,),
        )
        conn.execute(
            """
            UPDATE plan_obj SET code = CASE
              WHEN kind = 'symlink' THEN 'symlink'
              WHEN kind != 'file' THEN 'anomaly'
              WHEN problem IS NOT NULL THEN 'rejected-name'
              WHEN d_size IS NOT NULL AND d_size = size AND (crc32c IS NULL OR d_crc32c = crc32c)
                THEN 'already-migrated'
              WHEN d_size IS NOT NULL THEN 'conflict'
            END
            """
        )
        # Equal in the bucket and still the generation an earlier run wrote: that run completed it.
        conn.execute(
            """
            UPDATE plan_obj SET code = ?
            WHERE code = ? AND EXISTS (
              SELECT 1 FROM items i
              WHERE i.bucket = plan_obj.bucket AND i.object = plan_obj.object AND i.state = ? AND i.kind = ?
                AND i.generation = plan_obj.d_generation)
            """,
            (SKIP_COMPLETED_EARLIER, SKIP_ALREADY_MIGRATED, ItemState.DONE, ItemKind.OBJECT),
        )
        # Done by an earlier run yet absent from the listing: deleted after migration. Planned again
        # (writes are idempotent) and counted, so the loss shows in the report instead of in verify.
        conn.execute(
            """
            UPDATE plan_obj SET done_before = 1
            WHERE code IS NULL AND d_size IS NULL AND EXISTS (
              SELECT 1 FROM items i
              WHERE i.bucket = plan_obj.bucket AND i.object = plan_obj.object AND i.state = ?
                AND i.kind = ?)
            """,
            (ItemState.DONE, ItemKind.OBJECT),
        )
        conn.execute(
            """
            UPDATE plan_obj SET detail = CASE code
              WHEN 'symlink' THEN COALESCE(inv_reason, 'symbolic link')
              WHEN 'anomaly' THEN COALESCE(inv_reason, 'anomaly')
              WHEN 'rejected-name' THEN problem
              WHEN 'already-migrated' THEN CASE WHEN crc32c IS NULL THEN 'size matches (inventory not hashed)'
                                                ELSE 'size and CRC32C match' END
              WHEN 'completed-earlier' THEN printf('generation %d, written by an earlier run', d_generation)
              WHEN 'conflict' THEN printf('bucket has %d bytes, crc32c %s; source has %d bytes, crc32c %s',
                                          d_size, COALESCE(d_crc32c, '-'), size, COALESCE(crc32c, 'not hashed'))
            END
            WHERE code IS NOT NULL
            """
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def apply_conflict_policy(conn: sqlite3.Connection, policy: str) -> int:
    """skip: conflicts stay skipped; overwrite: they become planned with overwrite=1. Returns the count."""
    n = conn.execute("SELECT COUNT(*) FROM plan_obj WHERE code = 'conflict'").fetchone()[0]
    if policy == "overwrite" and n:
        conn.execute("UPDATE plan_obj SET code = NULL, overwrite = 1 WHERE code = 'conflict'")
    return n


def conflict_examples(conn: sqlite3.Connection, limit: int) -> list[str]:
    rows = conn.execute(
        "SELECT bucket, object, detail FROM plan_obj WHERE code = 'conflict' ORDER BY ord, relpath LIMIT ?", (limit,)
    )
    return [f"gs://{r[0]}/{r[1]} ({r[2]})" for r in rows]


def overlapping_sources(cfg: Config) -> bool:
    """True when two catalog sources write into the same bucket under nested (or equal) prefixes."""
    pairs = [(s.bucket, s.prefix) for s in cfg.catalog]
    return any(
        b1 == b2 and (p1.startswith(p2) or p2.startswith(p1))
        for i, (b1, p1) in enumerate(pairs)
        for (b2, p2) in pairs[i + 1 :]
    )


def duplicate_destinations(conn: sqlite3.Connection, cfg: Config, limit: int) -> tuple[int, list[str]]:
    """Objects that more than one planned file would write: (count, up to `limit` descriptions)."""
    if not overlapping_sources(cfg):
        return 0, []
    rows = conn.execute(
        "SELECT bucket, object, group_concat(source || ':' || relpath, ', ') FROM"
        " (SELECT bucket, object, source, relpath FROM plan_obj WHERE code IS NULL ORDER BY ord, relpath)"
        " GROUP BY bucket, object HAVING COUNT(*) > 1 ORDER BY bucket, object"
    ).fetchall()
    return len(rows), [f"gs://{r[0]}/{r[1]} ({r[2]})" for r in rows[:limit]]


def classify_events(conn: sqlite3.Connection, cfg: Config, snapshot_id: int) -> None:
    """Fill temp.plan_ev from the snapshot's listener log files; exclude files fully replayed before."""
    conn.executescript(EV_TABLES)
    insert_many(
        conn,
        "INSERT INTO plan_lsrc(source, ord, topic, format) VALUES(?,?,?,?)",
        [(s.name, i, s.topic, s.format) for i, s in enumerate(cfg.listeners)],
    )
    conn.execute("BEGIN")
    try:
        # one scan of items: event files an earlier run finished (state done, or watermark done)
        conn.execute(
            """
            INSERT INTO plan_done_ev(source, path, size, mtime_ns, inode, plan_id, crc32c)
            SELECT i.source, i.relpath, i.size, i.mtime_ns, i.inode, i.plan_id, i.crc32c FROM items i
            WHERE i.kind = ? AND (i.state = ? OR EXISTS (
              SELECT 1 FROM offsets o WHERE o.plan_id = i.plan_id AND o.path = i.relpath AND o.done = 1))
            """,
            (ItemKind.EVENTS, ItemState.DONE),
        )
        conn.execute("CREATE INDEX temp.plan_done_ev_path ON plan_done_ev(source, path)")
        conn.execute(
            """
            INSERT INTO plan_ev(ord, source, path, size, mtime_ns, inode, events, malformed, oversized, event_bytes,
                                id_digest, min_time, max_time, status, inv_reason, topic, format, crc32c)
            SELECT s.ord, e.source, e.path, e.size, e.mtime_ns, e.inode, e.events, e.malformed, e.oversized,
                   e.event_bytes, e.id_digest, e.min_time, e.max_time, e.status, e.reason, s.topic, s.format,
                   e.crc32c
            FROM event_files e JOIN plan_lsrc s ON s.source = e.source
            WHERE e.seen = ?
            """,
            (snapshot_id,),
        )
        conn.execute(
            """
            UPDATE plan_ev SET code = CASE
              WHEN status != 'ok' AND events = 0 THEN 'anomalous-log'
              WHEN events + malformed + oversized = 0 THEN 'empty-log'
              WHEN EXISTS (SELECT 1 FROM plan_done_ev d WHERE d.source = plan_ev.source AND d.path = plan_ev.path
                           AND d.size = plan_ev.size AND d.mtime_ns = plan_ev.mtime_ns AND d.inode = plan_ev.inode)
                THEN 'replayed-earlier'
            END,
            changed_since_replay = EXISTS (SELECT 1 FROM plan_done_ev d
                                           WHERE d.source = plan_ev.source AND d.path = plan_ev.path)
            """
        )
        conn.execute(
            """
            UPDATE plan_ev SET
              changed_since_replay = CASE WHEN code IS NULL THEN changed_since_replay ELSE 0 END,
              detail = CASE code
                WHEN 'anomalous-log' THEN COALESCE(inv_reason, 'unreadable')
                WHEN 'empty-log' THEN 'no events, no malformed lines'
                WHEN 'replayed-earlier' THEN 'done in plan ' || (
                    SELECT MIN(d.plan_id) FROM plan_done_ev d WHERE d.source = plan_ev.source AND d.path = plan_ev.path
                      AND d.size = plan_ev.size AND d.mtime_ns = plan_ev.mtime_ns AND d.inode = plan_ev.inode)
              END
            """
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
