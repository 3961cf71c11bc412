"""Copy a plan's object items into GCS: bounded, checksummed, conditional, resumable.

One dispatching thread streams the plan's pending items (manifest merged with ledger states,
a page at a time), feeds a BoundedExecutor with copier.Copier tasks, and alone writes the
results to the ledger, in batches. An item is 'done' in the ledger only after GCS acknowledged
it; a crash in between is settled by the next run's conditional create (412, same CRC32C).
Large files become several tasks (transfer.tasks): a resumable upload a chunk at a time, or
composite parts then a compose, depending on the bucket (targets.buckets).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator

from migrate.config import Config
from migrate.ledger import items
from migrate.ledger.states import NOT_COPIED, OPEN, ItemKind, ItemState, placeholders
from migrate.plan import ObjectItem, Plan
from migrate.progress import Reporter
from migrate.targets.buckets import COMPOSITE, RESUMABLE, BucketSettings
from migrate.targets.gcs import PARTS_PREFIX, Gcs
from migrate.transfer.copier import Copier
from migrate.transfer.dispatch import Dispatch, submit
from migrate.transfer.executor import BoundedExecutor
from migrate.transfer.ramp import write_limiter
from migrate.transfer.summary import ObjectsSummary
from migrate.transfer.tasks import CopyOne, Task, Work

PAGE = 1000  # items read from the manifest and the ledger at a time
# Small files are a round trip or two of waiting each, not bandwidth: at WAN latency (tens of ms per
# request) `workers` uploads in flight leave the link idle most of the time. So up to SMALL_PER_WORKER
# times as many small uploads run at once, while files from SMALL_OBJECT up (and large-file parts)
# stay at `workers` concurrent streams. Each extra thread mostly waits on a socket; the memory it
# holds is one file under SMALL_OBJECT.
SMALL_OBJECT = 1024 * 1024
SMALL_PER_WORKER = 4


def concurrency(workers: int) -> int:
    """Requests in flight at most (threads and connections): `workers` streams plus the small-file surplus."""
    return workers * SMALL_PER_WORKER


# --- the plan's pending items -------------------------------------------------------------------


def iter_work(conn, cfg: Config, plan: Plan, counts: Counter) -> Iterator[Work]:
    """Object items still to do, in plan order, a page at a time; counts[state] gets the others."""
    page: list[dict] = []
    for doc in plan.iter_docs():
        if doc.get("kind") != ObjectItem.kind:
            continue
        page.append(doc)
        if len(page) >= PAGE:
            yield from _page(conn, cfg, plan.plan_id, page, counts)
            page = []
    if page:
        yield from _page(conn, cfg, plan.plan_id, page, counts)


def _page(conn, cfg: Config, plan_id: str, page: list[dict], counts: Counter) -> Iterator[Work]:
    rows = {
        r[0]: (r[1], r[2])
        for r in conn.execute(
            "SELECT seq, state, upload_state FROM items WHERE plan_id=? AND seq BETWEEN ? AND ?",
            (plan_id, page[0]["seq"], page[-1]["seq"]),
        )
    }
    unknown = (ItemState.PENDING, None)
    for doc in page:
        state, upload_state = rows.get(doc["seq"], unknown)
        if state not in OPEN:
            counts[state] += 1
            continue
        path = doc.get("path") or str(cfg.catalog_source(doc["source"]).root / doc["relpath"])
        yield Work.from_manifest_line(doc, path, _parse_state(upload_state))


def _parse_state(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and doc.get("kind") in (COMPOSITE, RESUMABLE) else None


def copy_objects(
    conn,
    cfg: Config,
    plan: Plan,
    *,
    gcs: Gcs,
    workers: int,
    throttle: Callable[[int], object],
    report: Reporter,
    stop: threading.Event,
    abort: threading.Event,
    retry_sleep: Callable[[float], None] | None = None,
    summary: ObjectsSummary | None = None,
    buckets: dict[str, BucketSettings] | None = None,
) -> ObjectsSummary:
    """Copy every pending or failed object item of the plan; the ledger is current when this returns.

    `stop` set: take no new items, let in-flight ones finish. KeyboardInterrupt (a second Ctrl-C):
    record what has finished, set `abort` so streaming requests die, and re-raise (`summary`, if
    given, holds the counts so far).
    """
    summary = summary if summary is not None else ObjectsSummary()
    started = time.monotonic()
    copier = Copier(
        gcs,
        cfg.transfer,
        plan.plan_id,
        throttle=throttle,
        report=report,
        abort=abort,
        retry_sleep=retry_sleep,
        writes=write_limiter(cfg.transfer.ramp_up, cfg.transfer.ramp_start_writes),
    )
    summary.upload_paths = {name: b.describe() for name, b in sorted((buckets or {}).items())}
    d = Dispatch(conn, cfg, plan, copier, summary, report, buckets or {})
    counts: Counter = Counter()
    works = iter_work(conn, cfg, plan, counts)
    exhausted = False
    threads = concurrency(workers)
    ex = BoundedExecutor(threads, max_in_flight=threads + workers)
    heavy = 0  # tasks in flight that stream a file of SMALL_OBJECT or more, or a large file's step
    deferred: deque[Work] = deque()  # big items read while every stream slot was busy

    def launch(task: Task) -> None:
        nonlocal heavy
        if _is_heavy(task):
            heavy += 1
        submit(ex, copier, task)

    try:
        while True:
            if stop.is_set() and not d.stopping:
                d.stopping = True
            while ex.has_room():
                if heavy < workers:
                    task = d.next_ready()
                    if task is not None:
                        launch(task)
                        continue
                    if deferred and not d.stopping:
                        launch(d.start(deferred.popleft()))
                        continue
                if d.stopping or exhausted or len(deferred) >= PAGE:
                    break
                w = next(works, None)
                if w is None:
                    exhausted = True
                    break
                if heavy >= workers and (w.size >= SMALL_OBJECT or d.is_large(w)):
                    deferred.append(w)  # started when a stream slot frees; small items go on meanwhile
                    continue
                launch(d.start(w))
            if ex.in_flight == 0 and not d.ready and (d.stopping or not deferred):
                break
            done = ex.next_done(timeout=0.25)
            if done is not None:
                if _is_heavy(done.tag):
                    heavy -= 1
                d.handle(done)
            d.ledger.maybe_flush()
    except BaseException:
        abort.set()
        ex.shutdown(wait=False)
        d.ledger.flush()
        summary.elapsed = time.monotonic() - started
        raise
    ex.shutdown(wait=True)
    d.ledger.flush()
    summary.already_done = counts.get(ItemState.DONE, 0)
    summary.previously_skipped = sum(counts.get(state, 0) for state in NOT_COPIED)
    summary.pending = items.count(conn, plan.plan_id, ItemKind.OBJECT, OPEN) - summary.failed
    summary.halted = d.halted
    summary.planned = items.count(conn, plan.plan_id, ItemKind.OBJECT)
    summary.elapsed = time.monotonic() - started
    return summary


def _is_heavy(task: Task) -> bool:
    """Whether a task holds one of the `workers` stream slots (every large-file step does)."""
    return not isinstance(task, CopyOne) or task.work.size >= SMALL_OBJECT


def large_file_buckets(conn, plan_id: str, threshold: int) -> list[str]:
    """Buckets with large items still to copy: the ones whose settings decide an upload path."""
    return [
        r[0]
        for r in conn.execute(
            f"SELECT DISTINCT bucket FROM items WHERE plan_id=? AND kind=? AND state IN ({placeholders(OPEN)})"
            " AND (size >= ? OR upload_state IS NOT NULL) ORDER BY bucket",
            (plan_id, ItemKind.OBJECT, *OPEN, max(threshold, 1)),
        )
    ]


def sweep_parts(conn, gcs: Gcs, plan_id: str, threshold: int) -> int:
    """Delete composite parts whose item is no longer pending or failed. Returns how many were deleted."""
    buckets = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT bucket FROM items WHERE plan_id=? AND kind='object'"
            " AND (size >= ? OR upload_state IS NOT NULL)",
            (plan_id, threshold),
        )
    ]
    deleted = 0
    states: dict[int, str] = {}
    for bucket in buckets:
        for info in list(gcs.list(bucket, f"{PARTS_PREFIX}{plan_id}/")):
            try:
                seq = int(info.name.split("/")[2])
            except (IndexError, ValueError):
                continue
            if seq not in states:
                row = conn.execute("SELECT state FROM items WHERE plan_id=? AND seq=?", (plan_id, seq)).fetchone()
                states[seq] = row[0] if row else "gone"
            if states[seq] not in OPEN and gcs.delete(bucket, info.name):
                deleted += 1
    return deleted
