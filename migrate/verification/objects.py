"""Objects: list each bucket+prefix once into a TEMP table, then join it with what the plan expects.

What is expected at the destination:
  - the manifest's object items (loaded into `items` by plan.register_items, which also carries
    the run's state per item: failed / source-changed / conflict are reported as run problems);
  - the plan's skipped entries that say the destination already has them ('already-migrated',
    'completed-earlier'); skipped conflicts are reported as conflicts; other skipped entries
    (symlinks, anomalies, rejected names) are not expected but are not "extra" either.

The common case makes no per-object request: one paged listing call (fields mask name, size, crc32c,
generation; 1000 objects a page) per bucket+prefix. The listing goes to SQLite's temp store, so
memory does not grow with the number of objects. Only live objects are listed (no versions=True):
an object rewritten after the run shows as `generation_changed` when the run recorded the
generation it wrote; older generations are not listed or counted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from migrate.config import TransferConfig
from migrate.ledger.states import ItemState
from migrate.plan import DONE_SKIP_REASONS, SKIP_CONFLICT, ObjectItem, Plan
from migrate.progress import Event, Reporter, null_reporter
from migrate.retry import describe
from migrate.targets.gcs import Gcs
from migrate.targets.gcs_listing import list_pages, listing_roots
from migrate.verification.model import Listing, ObjectsResult
from migrate.verification.problems import DIFFERS, ERROR, EXTRA, MATCH, MISSING, ProblemLines, object_path

BATCH = 5000
# items.state -> ObjectsResult counter; these are reported as `!` and not also as missing/differs
RUN_PROBLEM_STATES = {
    ItemState.FAILED: "run_failed",
    ItemState.SOURCE_CHANGED: "source_changed",
    ItemState.CONFLICT: "conflict",
}

TABLES = """
DROP TABLE IF EXISTS temp.verify_listing;
DROP TABLE IF EXISTS temp.verify_skipped;
CREATE TEMP TABLE verify_listing(
  bucket TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL, crc32c TEXT, generation INTEGER,
  PRIMARY KEY(bucket, name)) WITHOUT ROWID;
CREATE TEMP TABLE verify_skipped(
  bucket TEXT NOT NULL, object TEXT NOT NULL, source TEXT NOT NULL, relpath TEXT NOT NULL,
  size INTEGER NOT NULL, reason TEXT NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY(bucket, object)) WITHOUT ROWID;
"""

Candidate = tuple[str, str, int, str | None, str | None, int | None]


def setup(conn: sqlite3.Connection) -> None:
    conn.executescript(TABLES)


def load_skipped(conn: sqlite3.Connection, plan: Plan) -> int:
    """Stream the plan's skipped list (checked against the sha256 in the plan) into a TEMP table."""
    batch: list[tuple] = []
    n = 0
    sql = (
        "INSERT OR IGNORE INTO temp.verify_skipped(bucket, object, source, relpath, size, reason, seq)"
        " VALUES(?,?,?,?,?,?,?)"
    )
    for seq, e in plan.iter_skipped():
        if e.kind != ObjectItem.kind or not e.bucket or not e.object:
            continue
        batch.append((e.bucket, e.object, e.source, e.relpath, e.size, e.reason, seq))
        n += 1
        if len(batch) >= BATCH:
            conn.executemany(sql, batch)
            batch.clear()
    if batch:
        conn.executemany(sql, batch)
    return n


def plan_roots(conn: sqlite3.Connection, plan_id: str) -> list[tuple[str, str]]:
    """The bucket+prefix pairs the plan writes under: object name minus relpath (else the whole bucket)."""
    sql = """
      SELECT DISTINCT bucket,
             CASE WHEN substr(object, -length(relpath)) = relpath
                  THEN substr(object, 1, length(object) - length(relpath)) ELSE '' END
      FROM {table} WHERE {where}
    """
    pairs = conn.execute(
        sql.format(table="items", where="plan_id = ? AND kind = 'object' AND bucket IS NOT NULL"), (plan_id,)
    ).fetchall()
    pairs += conn.execute(sql.format(table="temp.verify_skipped", where="1")).fetchall()
    return listing_roots((r[0], r[1]) for r in pairs)


def load_listing(
    conn: sqlite3.Connection,
    client,
    roots: list[tuple[str, str]],
    cfg: TransferConfig,
    result: ObjectsResult,
    report: Reporter = null_reporter,
) -> None:
    def on_retry(exc: BaseException, attempt: int) -> None:
        result.retries += 1
        report(Event("retry", name="listing", data={"error": describe(exc)}))

    api = Gcs(client, pool_size=2)  # one connection for every root and page
    for bucket, prefix in roots:
        lst = Listing(bucket, prefix)
        report(Event("phase", name=f"listing gs://{bucket}/{prefix}"))
        for rows in list_pages(api, bucket, prefix, cfg=cfg, on_retry=on_retry):
            lst.pages += 1
            lst.objects += len(rows)
            conn.executemany(
                "INSERT OR REPLACE INTO temp.verify_listing(bucket, name, size, crc32c, generation) VALUES(?,?,?,?,?)",
                [(bucket, *r) for r in rows],
            )
            report(Event("listed", name=f"gs://{bucket}/{prefix}", n=len(rows)))
        result.listings.append(lst)
        result.listed += lst.objects


class _Examples:
    def __init__(self, result: ObjectsResult, show: int) -> None:
        self.result = result
        self.show = show

    def add(self, category: str, text: str) -> None:
        shown = self.result.examples.setdefault(category, [])
        if len(shown) < self.show:
            shown.append(text)


def compare(
    conn: sqlite3.Connection,
    plan_id: str,
    result: ObjectsResult,
    lines: ProblemLines,
    *,
    show: int,
    strict: bool,
    sample: Callable[[Candidate], None] | None = None,
) -> None:
    """Classify every expected object against the listing; extras from the listing's side.

    `sample` receives each present object whose listing matched (the population for --deep):
    (bucket, name, size, expected crc32c, listed crc32c, generation).
    """
    ex = _Examples(result, show)
    result.extra_is_error = strict
    planned = """
      SELECT i.bucket, i.object, i.size, i.crc32c, i.state, i.generation, i.last_error,
             l.name IS NOT NULL, l.size, l.crc32c, l.generation
      FROM items i LEFT JOIN temp.verify_listing l ON l.bucket = i.bucket AND l.name = i.object
      WHERE i.plan_id = ? AND i.kind = 'object' ORDER BY i.seq
    """
    for r in conn.execute(planned, (plan_id,)):
        result.planned += 1
        bucket, name, size, crc, state, igen, err = r[0], r[1], r[2], r[3], r[4], r[5], r[6]
        path = object_path(bucket, name)
        counter = RUN_PROBLEM_STATES.get(state)
        if counter is not None:
            setattr(result, counter, getattr(result, counter) + 1)
            ex.add(counter, f"{path} ({state}{': ' + err if err else ''})")
            lines.add(ERROR, path)
            continue
        _classify(result, ex, lines, path, bucket, name, size, crc, igen, r[7], r[8], r[9], r[10], sample)

    earlier = """
      SELECT s.bucket, s.object, s.size, f.crc32c, s.reason, l.name IS NOT NULL, l.size, l.crc32c, l.generation
      FROM temp.verify_skipped s
      LEFT JOIN temp.verify_listing l ON l.bucket = s.bucket AND l.name = s.object
      LEFT JOIN files f ON f.source = s.source AND f.relpath = s.relpath
      WHERE s.reason IN ({}) ORDER BY s.seq
    """.format(",".join("?" * (len(DONE_SKIP_REASONS) + 1)))
    for r in conn.execute(earlier, (*DONE_SKIP_REASONS, SKIP_CONFLICT)):
        bucket, name, size, crc, reason = r[0], r[1], r[2], r[3], r[4]
        path = object_path(bucket, name)
        if reason == SKIP_CONFLICT:
            result.conflict += 1
            ex.add("conflict", f"{path} (skipped by the plan: the bucket holds different content)")
            lines.add(ERROR, path)
            continue
        result.previously_migrated += 1
        _classify(result, ex, lines, path, bucket, name, size, crc, None, r[5], r[6], r[7], r[8], sample)

    extras = """
      SELECT l.bucket, l.name, l.size FROM temp.verify_listing l
      WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.bucket = l.bucket AND i.object = l.name
                                                AND i.plan_id = ? AND i.kind = 'object')
        AND NOT EXISTS (SELECT 1 FROM temp.verify_skipped s WHERE s.bucket = l.bucket AND s.object = l.name)
      ORDER BY l.bucket, l.name
    """
    for bucket, name, size in conn.execute(extras, (plan_id,)):
        result.extra += 1
        path = object_path(bucket, name)
        ex.add("extra", f"{path} ({size} bytes)")
        lines.add(EXTRA, path)
    lines.flush()


def _classify(
    result: ObjectsResult,
    ex: _Examples,
    lines: ProblemLines,
    path: str,
    bucket: str,
    name: str,
    size: int,
    crc: str | None,
    igen: int | None,
    present: int,
    lsize: int | None,
    lcrc: str | None,
    lgen: int | None,
    sample: Callable[[Candidate], None] | None,
) -> None:
    if not present:
        result.missing += 1
        ex.add("missing", path)
        lines.add(MISSING, path)
        return
    if igen is not None and lgen is not None and int(igen) != int(lgen):
        result.generation_changed += 1
        ex.add("generation_changed", f"{path} (run wrote generation {igen}, live is {lgen})")
    if lsize != size:
        result.size_mismatch += 1
        ex.add("size_mismatch", f"{path} (expected {size} bytes, bucket has {lsize})")
        lines.add(DIFFERS, path)
        return
    if crc and lcrc and crc != lcrc:
        result.crc32c_mismatch += 1
        ex.add("crc32c_mismatch", f"{path} (expected crc32c {crc}, bucket has {lcrc})")
        lines.add(DIFFERS, path)
        return
    if not crc or not lcrc:
        result.crc32c_unknown += 1
        ex.add("crc32c_unknown", path)
    result.matched += 1
    lines.add(MATCH, path)
    if sample is not None:
        sample((bucket, name, size, crc, lcrc, lgen))
