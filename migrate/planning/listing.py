"""List the destination once per bucket and prefix into a TEMP table of the ledger connection.

The listing never lives in Python memory as a whole: pages are inserted as they arrive, so a
bucket with millions of objects costs disk in SQLite's temp store, not RAM.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from google.api_core.exceptions import GoogleAPIError

from migrate.config import TransferConfig
from migrate.errors import TargetError
from migrate.progress import Event, Reporter, null_reporter
from migrate.retry import describe, retrying

INSERT_CHUNK = 5000
LIST_FIELDS = "items(name,size,crc32c,generation),nextPageToken"
PAGE_SIZE = 1000
Row = tuple[str, int, str | None, int | None]
T = TypeVar("T")

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


def _hidden_prefix() -> str | None:
    """Objects the run stage keeps for itself (composite-upload parts): never counted as migrated objects."""
    try:
        from migrate.targets.gcs import PARTS_PREFIX
    except ImportError:
        return None
    return PARTS_PREFIX


def _list_objects(client, bucket: str, prefix: str, retry: Callable) -> Iterator[Row]:
    """(name, size, crc32c, generation) of every live object under prefix, paged with a fields mask.

    Each page is one retried request that resumes from its page token, so a transient error on
    page 900 of a million-object bucket costs one page, not the listing.
    """
    hidden = _hidden_prefix()
    token: str | None = None
    while True:

        def page(token: str | None = token) -> tuple[list[Row], str | None]:
            it = client.list_blobs(
                bucket, prefix=prefix or None, fields=LIST_FIELDS, page_size=PAGE_SIZE, page_token=token, retry=None
            )
            rows = [(b.name, int(b.size or 0), b.crc32c, b.generation) for b in next(it.pages, [])]
            return rows, it.next_page_token

        rows, token = retry(page)
        yield from (r for r in rows if not (hidden and r[0].startswith(hidden)))
        if not token:
            return


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
    'retry' events. Any other error is a TargetError naming the bucket.
    """
    conn.executescript(DEST_TABLE)
    by_bucket: dict[str, list[str]] = {}
    for bucket, prefix in listing_roots(targets):
        by_bucket.setdefault(bucket, []).append(prefix)
    out: list[BucketListing] = []
    for bucket, prefixes in sorted(by_bucket.items()):

        def on_retry(exc: BaseException, attempt: int, bucket: str = bucket) -> None:
            report(Event("retry", name=f"gs://{bucket}", data={"error": describe(exc), "attempt": attempt}))

        def retry(fn: Callable[[], T], on_retry=on_retry) -> T:
            return retrying(transfer or TransferConfig(), on_retry)(fn)

        try:
            exists = retry(lambda bucket=bucket: client.lookup_bucket(bucket, retry=None)) is not None
            count = 0
            for prefix in prefixes if exists else ():
                report(Event("phase", name=f"listing gs://{bucket}/{prefix}"))
                count += _insert_rows(conn, bucket, _list_objects(client, bucket, prefix, retry), report)
        except GoogleAPIError as exc:
            raise TargetError(
                f"cannot list gs://{bucket}: {describe(exc)}",
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
