"""List the destination once per bucket and prefix into a TEMP table of the ledger connection.

The listing never lives in Python memory as a whole: pages are inserted as they arrive, so a
bucket with millions of objects costs disk in SQLite's temp store, not RAM.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from migrate.config import TransferConfig
from migrate.progress import Event, Reporter, null_reporter
from migrate.retry import describe
from migrate.targets.gcs import Gcs
from migrate.targets.gcs_listing import bucket_exists, list_pages, listing_roots

INSERT_CHUNK = 5000

DEST_TABLE = """
DROP TABLE IF EXISTS temp.plan_dest;
CREATE TEMP TABLE plan_dest(
  bucket     TEXT NOT NULL,
  name       TEXT NOT NULL,
  size       INTEGER NOT NULL,
  crc32c     TEXT,
  generation INTEGER,
  PRIMARY KEY(bucket, name)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class BucketListing:
    bucket: str
    prefixes: tuple[str, ...]
    exists: bool
    objects: int


def load_destination(
    conn: sqlite3.Connection,
    client,
    targets: Iterable[tuple[str, str]],
    *,
    transfer: TransferConfig | None = None,
    report: Reporter = null_reporter,
) -> list[BucketListing]:
    """Fill temp.plan_dest with every object under the targets' prefixes. A missing bucket lists as empty.

    Each request (bucket lookup, listing page) is retried by migrate.retry; retries are reported as
    'retry' events. Any other error is a TargetError naming the bucket. The listing itself is
    targets.gcs_listing.list_pages, the same one verify uses (composite-upload parts left out).
    """
    conn.executescript(DEST_TABLE)
    cfg = transfer or TransferConfig()
    by_bucket: dict[str, list[str]] = {}
    for bucket, prefix in listing_roots(targets):
        by_bucket.setdefault(bucket, []).append(prefix)
    out: list[BucketListing] = []
    api = Gcs(client, pool_size=2) if by_bucket else None  # one connection for every bucket and page
    for bucket, prefixes in sorted(by_bucket.items()):

        def on_retry(exc: BaseException, attempt: int, bucket: str = bucket) -> None:
            report(Event("retry", name=f"gs://{bucket}", data={"error": describe(exc), "attempt": attempt}))

        exists = bucket_exists(api, bucket, cfg, on_retry)
        count = 0
        for prefix in prefixes if exists else ():
            report(Event("phase", name=f"listing gs://{bucket}/{prefix}"))
            pages = list_pages(api, bucket, prefix, cfg=cfg, on_retry=on_retry)
            count += _insert_rows(conn, bucket, (row for page in pages for row in page), report)
        out.append(BucketListing(bucket, tuple(prefixes), exists, count))
    return out


def _insert_rows(conn: sqlite3.Connection, bucket: str, rows: Iterable[tuple], report: Reporter) -> int:
    chunk: list[tuple] = []
    total = 0
    sql = "INSERT OR REPLACE INTO plan_dest(bucket, name, size, crc32c, generation) VALUES(?,?,?,?,?)"
    for name, size, crc, gen in rows:
        chunk.append((bucket, name, size, crc, gen))
        if len(chunk) >= INSERT_CHUNK:
            total += insert_many(conn, sql, chunk)
            report(Event("file", name=bucket, n=len(chunk)))
            chunk.clear()
    if chunk:
        total += insert_many(conn, sql, chunk)
        report(Event("file", name=bucket, n=len(chunk)))
    return total


def insert_many(conn: sqlite3.Connection, sql: str, rows: list[tuple]) -> int:
    """executemany in one transaction (temp tables only, so no lock on the ledger itself)."""
    conn.execute("BEGIN")
    try:
        conn.executemany(sql, rows)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return len(rows)
