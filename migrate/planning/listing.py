"""List the destination once per bucket and prefix into a TEMP table of the ledger connection.

The listing never lives in Python memory as a whole: pages are inserted as they arrive, so a
bucket with millions of objects costs disk in SQLite's temp store, not RAM.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from migrate.errors import TargetError
from migrate.progress import Event, Reporter, null_reporter

INSERT_CHUNK = 5000
LIST_FIELDS = "items(name,size,crc32c,generation),nextPageToken"
PAGE_SIZE = 1000

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


def listing_roots(targets: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Distinct (bucket, prefix) pairs, dropping a prefix that a shorter one in the same bucket covers."""
    out: list[tuple[str, str]] = []
    for bucket, prefix in sorted(set(targets)):
        if any(b == bucket and prefix.startswith(p) for b, p in out):
            continue
        out.append((bucket, prefix))
    return out


def _list_objects(client, bucket: str, prefix: str) -> Iterator[tuple[str, int, str | None, int | None]]:
    """(name, size, crc32c, generation) of every live object under prefix, paged with a fields mask."""
    try:
        from migrate.targets.gcs import list_objects  # the run stage's lister, once it exists
    except ImportError:
        list_objects = None
    if list_objects is not None:
        for obj in list_objects(client, bucket, prefix):
            yield _as_row(obj)
        return
    blobs = client.list_blobs(bucket, prefix=prefix or None, fields=LIST_FIELDS, page_size=PAGE_SIZE)
    for page in blobs.pages:
        for blob in page:
            yield blob.name, int(blob.size or 0), blob.crc32c, blob.generation


def _as_row(obj) -> tuple[str, int, str | None, int | None]:
    if isinstance(obj, tuple):
        return obj[0], int(obj[1] or 0), obj[2], obj[3]
    if isinstance(obj, dict):
        return obj["name"], int(obj.get("size") or 0), obj.get("crc32c"), obj.get("generation")
    return obj.name, int(obj.size or 0), obj.crc32c, obj.generation


def load_destination(
    conn: sqlite3.Connection,
    client,
    targets: Iterable[tuple[str, str]],
    *,
    report: Reporter = null_reporter,
) -> list[BucketListing]:
    """Fill temp.plan_dest with every object under the targets' prefixes. A missing bucket lists as empty."""
    from google.api_core import exceptions as gexc

    conn.executescript(DEST_TABLE)
    roots = listing_roots(targets)
    by_bucket: dict[str, list[str]] = {}
    for bucket, prefix in roots:
        by_bucket.setdefault(bucket, []).append(prefix)
    out: list[BucketListing] = []
    for bucket, prefixes in sorted(by_bucket.items()):
        exists, count = True, 0
        for prefix in prefixes:
            report(Event("phase", name=f"listing gs://{bucket}/{prefix}"))
            try:
                count += _insert_rows(conn, bucket, _list_objects(client, bucket, prefix), report)
            except gexc.NotFound:
                exists = False
            except gexc.GoogleAPIError as exc:
                raise TargetError(
                    f"cannot list gs://{bucket}/{prefix}: {exc}",
                    "check the bucket name, credentials and network (or STORAGE_EMULATOR_HOST)",
                ) from None
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
