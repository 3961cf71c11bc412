"""The SQLite ledger: schema, connection and the small queries every stage shares.

WAL mode with synchronous=NORMAL: a committed transaction survives a crash of the
process (SIGKILL); only a power loss may roll back the newest commits, and every
stage is idempotent against that.

Tables and who writes them:
  meta          schema version
  snapshots     one row per `migrate inventory` run                  (inventory)
  files         catalog files, symlinks and anomalies, current state (inventory)
  event_files   listener log files with counts and id digests        (inventory)
  bad_lines     malformed listener lines found by inventory          (inventory)
  plans         plans written by `migrate plan`                      (plan)
  items         one row per planned object or event file, its state (plan creates, run updates)
  offsets       per event file watermark: bytes acknowledged          (run)
  runs          one row per `migrate run`                             (run)
  event_ids     hashed event ids seen by verify, per plan and source  (verify)
  verify_pulls  messages verify drained: message id, plan, hashed id  (verify)
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from migrate.errors import MigrateError

SCHEMA_VERSION = 2  # 2: items.upload_url renamed upload_state
LEDGER_FILE = "ledger.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS snapshots(
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  started_at    REAL NOT NULL,
  finished_at   REAL,
  config_digest TEXT NOT NULL,
  hashed        INTEGER NOT NULL DEFAULT 0,
  summary       TEXT                      -- JSON of the inventory report
);

-- kind: 'file' (transferable), 'symlink' (skipped), 'anomaly' (cannot be transferred)
-- crc32c: base64 of the big-endian CRC32C, exactly as GCS reports it; NULL if not hashed
CREATE TABLE IF NOT EXISTS files(
  source    TEXT NOT NULL,
  relpath   TEXT NOT NULL,
  kind      TEXT NOT NULL,
  size      INTEGER NOT NULL DEFAULT 0,
  mtime_ns  INTEGER NOT NULL DEFAULT 0,
  inode     INTEGER NOT NULL DEFAULT 0,
  crc32c    TEXT,
  reason    TEXT,
  seen      INTEGER NOT NULL,              -- snapshot that last saw it
  changed   INTEGER NOT NULL,              -- snapshot that added it or saw it change
  PRIMARY KEY(source, relpath)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS files_seen ON files(source, seen);

-- id_digest: hex of (sum of 64-bit blake2b(event_id)) mod 2**64, order-independent
CREATE TABLE IF NOT EXISTS event_files(
  source     TEXT NOT NULL,
  path       TEXT NOT NULL,
  size       INTEGER NOT NULL DEFAULT 0,
  mtime_ns   INTEGER NOT NULL DEFAULT 0,
  inode      INTEGER NOT NULL DEFAULT 0,
  events     INTEGER NOT NULL DEFAULT 0,   -- valid events
  malformed  INTEGER NOT NULL DEFAULT 0,   -- lines that are not valid records
  oversized  INTEGER NOT NULL DEFAULT 0,   -- valid records too big for Pub/Sub
  event_bytes INTEGER NOT NULL DEFAULT 0,  -- payload bytes of the valid events
  min_time   TEXT,
  max_time   TEXT,
  id_digest  TEXT,
  crc32c     TEXT,                         -- plain files: CRC32C (base64) of the bytes scanned
  status     TEXT NOT NULL DEFAULT 'ok',   -- 'ok' | 'anomaly'
  reason     TEXT,
  seen       INTEGER NOT NULL,
  changed    INTEGER NOT NULL,
  PRIMARY KEY(source, path)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS bad_lines(
  source  TEXT NOT NULL,
  path    TEXT NOT NULL,
  line    INTEGER NOT NULL,
  offset  INTEGER NOT NULL,
  reason  TEXT NOT NULL,
  PRIMARY KEY(source, path, line)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS plans(
  plan_id     TEXT PRIMARY KEY,
  name        TEXT NOT NULL,
  snapshot_id INTEGER NOT NULL,
  created_at  REAL NOT NULL,
  path        TEXT NOT NULL
);

-- kind 'object': source/relpath -> bucket/object; kind 'events': source/relpath(log path) -> topic
-- state: pending | done | failed | source-changed | conflict
CREATE TABLE IF NOT EXISTS items(
  plan_id     TEXT NOT NULL,
  seq         INTEGER NOT NULL,
  kind        TEXT NOT NULL,
  batch       INTEGER NOT NULL,
  source      TEXT NOT NULL,
  relpath     TEXT NOT NULL,
  bucket      TEXT,
  object      TEXT,
  topic       TEXT,
  size        INTEGER NOT NULL,
  mtime_ns    INTEGER,
  inode       INTEGER,
  crc32c      TEXT,
  state       TEXT NOT NULL DEFAULT 'pending',
  attempts    INTEGER NOT NULL DEFAULT 0,
  retries     INTEGER NOT NULL DEFAULT 0,
  last_error  TEXT,
  generation  INTEGER,
  upload_state TEXT,                       -- JSON: a large upload's layout, persisted for crash resume
  updated_at  REAL,
  PRIMARY KEY(plan_id, seq)
);
CREATE INDEX IF NOT EXISTS items_state ON items(plan_id, state);
CREATE INDEX IF NOT EXISTS items_dest ON items(bucket, object, state);

-- watermark: byte offset (in the decompressed stream) below which every event is acknowledged
CREATE TABLE IF NOT EXISTS offsets(
  plan_id     TEXT NOT NULL,
  source      TEXT NOT NULL,
  path        TEXT NOT NULL,
  watermark   INTEGER NOT NULL DEFAULT 0,
  line        INTEGER NOT NULL DEFAULT 0,  -- lines below the watermark
  published   INTEGER NOT NULL DEFAULT 0,
  quarantined INTEGER NOT NULL DEFAULT 0,
  in_flight_max INTEGER NOT NULL DEFAULT 0,  -- most events that could be re-sent after a crash
  interrupted INTEGER NOT NULL DEFAULT 0,    -- runs that stopped with events in flight
  resent      INTEGER NOT NULL DEFAULT 0,    -- events re-sent by a retried publish (possible duplicates)
  done        INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(plan_id, path)
);

CREATE TABLE IF NOT EXISTS runs(
  run_id      INTEGER PRIMARY KEY AUTOINCREMENT,
  plan_id     TEXT NOT NULL,
  started_at  REAL NOT NULL,
  finished_at REAL,
  status      TEXT NOT NULL DEFAULT 'running',  -- running | ok | failed | interrupted
  objects     INTEGER NOT NULL DEFAULT 0,
  bytes       INTEGER NOT NULL DEFAULT 0,
  events      INTEGER NOT NULL DEFAULT 0,
  quarantined INTEGER NOT NULL DEFAULT 0,
  retries     INTEGER NOT NULL DEFAULT 0,
  failed      INTEGER NOT NULL DEFAULT 0,
  summary     TEXT
);

CREATE TABLE IF NOT EXISTS event_ids(
  plan_id  TEXT NOT NULL,
  source   TEXT NOT NULL,
  id_hash  INTEGER NOT NULL,               -- signed 64-bit blake2b of the event id
  event_id TEXT NOT NULL,
  seen     INTEGER NOT NULL DEFAULT 0,     -- times received by verify
  expected INTEGER NOT NULL DEFAULT 0,     -- times present in the source logs
  PRIMARY KEY(plan_id, source, id_hash)
) WITHOUT ROWID;

-- every message verify drained, committed before it is acked (append-only, so a pull's commit is cheap);
-- folded into event_ids.seen in one sorted merge; the unique message id keeps a redelivery from counting twice
CREATE TABLE IF NOT EXISTS verify_pulls(
  seq        INTEGER PRIMARY KEY,
  topic      TEXT NOT NULL,
  message_id TEXT NOT NULL,
  plan_id    TEXT NOT NULL,
  source     TEXT NOT NULL,
  id_hash    INTEGER NOT NULL,
  event_id   TEXT NOT NULL,
  folded     INTEGER NOT NULL DEFAULT 0,  -- 1 once counted in event_ids.seen
  UNIQUE(topic, message_id)
);
CREATE INDEX IF NOT EXISTS verify_pulls_unfolded ON verify_pulls(plan_id) WHERE folded = 0;
"""


class LedgerError(MigrateError):
    exit_code = 2


def ledger_path(state_dir: Path) -> Path:
    return Path(state_dir) / LEDGER_FILE


def connect(state_dir: Path | str, *, create: bool = True) -> sqlite3.Connection:
    """Open (and create or migrate) the ledger in state_dir."""
    state_dir = Path(state_dir)
    path = ledger_path(state_dir)
    if not create and not path.exists():
        raise LedgerError(
            f"no ledger at {path}", "run `migrate inventory` first (or point project.state_dir at the right place)"
        )
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise LedgerError(
            f"cannot open ledger {path}: {exc}", "check project.state_dir is a writable directory"
        ) from None
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    _migrate(conn)
    return conn


# (table, old name, new name) of columns renamed after their table first shipped
_RENAMED_COLUMNS = (("items", "upload_url", "upload_state"),)
# (table, column, declaration) of columns added after their table first shipped
_ADDED_COLUMNS = (
    ("offsets", "resent", "INTEGER NOT NULL DEFAULT 0"),
    ("event_files", "crc32c", "TEXT"),
)


def _migrate(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
    # columns renamed or added after a table first shipped: older ledgers get them here
    for table, old, new in _RENAMED_COLUMNS:
        columns = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if old in columns and new not in columns:
            conn.execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")
    for table, column, decl in _ADDED_COLUMNS:
        if column not in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None:
        conn.execute("INSERT INTO meta(key, value) VALUES('schema_version', ?)", (str(SCHEMA_VERSION),))
    elif int(row[0]) > SCHEMA_VERSION:
        raise LedgerError(
            f"ledger schema {row[0]} is newer than this migrate ({SCHEMA_VERSION})",
            "upgrade migrate to the version that wrote it",
        )
    elif int(row[0]) < SCHEMA_VERSION:
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT; rolls back on error. Connections are in autocommit mode."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def now() -> float:
    return time.time()


def latest_snapshot(conn: sqlite3.Connection) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM snapshots WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1").fetchone()
