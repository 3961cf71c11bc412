"""Copy a plan's object items into GCS: bounded, checksummed, conditional, resumable.

One dispatching thread streams the plan's pending items (manifest merged with ledger states,
a page at a time), feeds a BoundedExecutor with copier.Copier tasks, and alone writes the
results to the ledger, in batches. An item is 'done' in the ledger only after GCS acknowledged
it; a crash in between is settled by the next run's conditional create (412, same CRC32C).
Large files become several tasks (parts, then a compose); see copier.py for why.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from migrate.config import Config
from migrate.ledger import items, now, transaction
from migrate.ledger.states import OPEN, ItemKind, ItemState
from migrate.plan import ObjectItem, Plan
from migrate.progress import Event, Reporter
from migrate.retry import describe, is_retryable
from migrate.sources.filebody import Aborted, SourceChanged, SourceReadError
from migrate.targets.gcs import PARTS_PREFIX, Gcs
from migrate.transfer.copier import Copier, LargeJob, Outcome, Work, part_layout
from migrate.transfer.executor import BoundedExecutor, Done

PAGE = 1000  # items read from the manifest and the ledger at a time
FLUSH_EVERY = 500  # ledger rows per batched write
FLUSH_SECONDS = 1.0
FAILURES_KEPT = 100  # failed items listed in the summary (all of them stay in the ledger)
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


@dataclass
class ObjectsSummary:
    planned: int = 0
    already_done: int = 0  # done before this run
    previously_skipped: int = 0  # source-changed or conflict in an earlier run (re-plan to retry)
    done: int = 0
    uploaded: int = 0
    existed: int = 0
    failed: int = 0
    source_changed: int = 0
    conflict: int = 0
    pending: int = 0  # left for the next run (stopped)
    bytes: int = 0
    reused_bytes: int = 0
    retries: int = 0
    elapsed: float = 0.0
    failures: list[dict] = field(default_factory=list)
    failures_total: int = 0
    halted: str | None = None  # why the copy stopped before the end on its own

    @property
    def rate(self) -> float:
        return self.bytes / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "planned": self.planned,
            "already_done": self.already_done,
            "previously_skipped": self.previously_skipped,
            "done": self.done,
            "uploaded": self.uploaded,
            "existed": self.existed,
            "failed": self.failed,
            "source_changed": self.source_changed,
            "conflict": self.conflict,
            "pending": self.pending,
            "bytes": self.bytes,
            "reused_bytes": self.reused_bytes,
            "retries": self.retries,
            "elapsed": round(self.elapsed, 3),
            "rate": round(self.rate, 1),
            "files_per_second": round(self.done / self.elapsed, 1) if self.elapsed > 0 else 0.0,
            "failures": self.failures,
            "failures_total": self.failures_total,
            "halted": self.halted,
        }


# --- the plan's pending items -------------------------------------------------------------------


def iter_work(conn, cfg: Config, plan: Plan, counts: Counter) -> Iterator[Work]:
    """Object items still to do, in plan order, a page at a time; counts[state] gets the others."""
    page: list[ObjectItem] = []
    for item in plan.object_items():
        page.append(item)
        if len(page) >= PAGE:
            yield from _page(conn, cfg, plan.plan_id, page, counts)
            page = []
    if page:
        yield from _page(conn, cfg, plan.plan_id, page, counts)


def _page(conn, cfg: Config, plan_id: str, page: list[ObjectItem], counts: Counter) -> Iterator[Work]:
    rows = {
        r[0]: (r[1], r[2])
        for r in conn.execute(
            "SELECT seq, state, upload_state FROM items WHERE plan_id=? AND seq BETWEEN ? AND ?",
            (plan_id, page[0].seq, page[-1].seq),
        )
    }
    for it in page:
        state, upload_state = rows.get(it.seq, (ItemState.PENDING, None))
        if state not in OPEN:
            counts[state] += 1
            continue
        path = it.path or str(cfg.catalog_source(it.source).root / it.relpath)
        yield Work(
            seq=it.seq,
            source=it.source,
            relpath=it.relpath,
            path=path,
            bucket=it.bucket,
            object=it.object,
            size=it.size,
            mtime_ns=it.mtime_ns,
            inode=it.inode,
            crc32c=it.crc32c,
            storage_class=it.storage_class,
            replace_generation=it.replace_generation if it.overwrite else None,
            upload_state=_parse_state(upload_state),
        )


def _parse_state(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and doc.get("kind") == "composite" else None


# --- the ledger, written in batches by the dispatching thread -------------------------------------


class LedgerBatch:
    _FINAL = (
        "UPDATE items SET state=?, generation=COALESCE(?, generation), crc32c=COALESCE(crc32c, ?), last_error=?,"
        " attempts=attempts+1, retries=retries+?, upload_state=CASE WHEN ? THEN NULL ELSE upload_state END,"
        " updated_at=? WHERE plan_id=? AND seq=?"
    )
    _RETRIES = "UPDATE items SET retries=retries+?, updated_at=? WHERE plan_id=? AND seq=?"

    def __init__(self, conn, plan_id: str) -> None:
        self.conn = conn
        self.plan_id = plan_id
        self.final: list[tuple] = []
        self.counts: list[tuple] = []
        self.last_flush = time.monotonic()

    def add(self, o: Outcome) -> None:
        t = now()
        if o.state == "pending":
            if o.retries:
                self.counts.append((o.retries, t, self.plan_id, o.seq))
            return
        clear = o.state in ("done", "source-changed", "conflict")
        self.final.append((o.state, o.generation, o.crc32c, o.error, o.retries, clear, t, self.plan_id, o.seq))

    def maybe_flush(self) -> None:
        pending = len(self.final) + len(self.counts)
        if pending >= FLUSH_EVERY or (pending and time.monotonic() - self.last_flush >= FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        if self.final or self.counts:
            with transaction(self.conn):
                if self.final:
                    self.conn.executemany(self._FINAL, self.final)
                if self.counts:
                    self.conn.executemany(self._RETRIES, self.counts)
            self.final.clear()
            self.counts.clear()
        self.last_flush = time.monotonic()

    def set_upload_state(self, seq: int, state: dict) -> None:
        """Written at once: a composite upload's resume state must exist before its first part."""
        self.conn.execute(
            "UPDATE items SET upload_state=?, updated_at=? WHERE plan_id=? AND seq=?",
            (json.dumps(state, sort_keys=True), now(), self.plan_id, seq),
        )


# --- the dispatcher -----------------------------------------------------------------------------


class _Dispatch:
    """Turns items into tasks and results into ledger rows; runs in the calling thread only."""

    def __init__(self, conn, cfg: Config, plan: Plan, copier: Copier, summary: ObjectsSummary, report: Reporter):
        self.conn = conn
        self.cfg = cfg
        self.plan = plan
        self.copier = copier
        self.summary = summary
        self.report = report
        self.ledger = LedgerBatch(conn, plan.plan_id)
        self.jobs: dict[int, LargeJob] = {}
        self.heavy = 0  # tasks in flight that stream a file of SMALL_OBJECT or more (or a large file's part)
        self.deferred: deque[Work] = deque()  # big items read while every stream slot was busy
        self.ready: deque[tuple[tuple, Callable, tuple]] = deque()  # follow-up tasks of large items
        self.stopping = False
        self.halted: str | None = None  # why the run stopped on its own
        self.transient_streak = 0  # items failed in a row on retryable errors, their retries exhausted
        self.streak_limit = max(10, 2 * cfg.transfer.workers)

    def is_large(self, w: Work) -> bool:
        return w.upload_state is not None or w.size >= max(self.cfg.transfer.large_file_threshold, 1)

    @staticmethod
    def is_heavy_tag(tag: tuple) -> bool:
        return tag[0] != "one" or tag[2].size >= SMALL_OBJECT

    def submit(self, ex: BoundedExecutor, tag: tuple, fn: Callable, *args) -> None:
        if self.is_heavy_tag(tag):
            self.heavy += 1
        ex.submit(tag, fn, *args)

    def start(self, w: Work, ex: BoundedExecutor) -> None:
        if not self.is_large(w):
            self.submit(ex, ("one", w.seq, w), self.copier.copy_one, w)
            return
        part_size, n_parts = part_layout(w.size, self.cfg.transfer, w.upload_state)
        job = LargeJob(w, part_size, n_parts, resumed=w.upload_state is not None)
        if w.upload_state is None:
            self.ledger.set_upload_state(w.seq, {"kind": "composite", "part_size": part_size, "parts": n_parts})
        self.jobs[w.seq] = job
        self.submit(ex, ("prep", w.seq), self.copier.prepare_large, job)

    def next_ready(self) -> tuple[tuple, Callable, tuple] | None:
        """The next follow-up task worth starting (parts of a failed or stopped job are dropped)."""
        while self.ready:
            tag, fn, args = self.ready.popleft()
            if tag[0] == "part":
                job = self.jobs[tag[1]]
                if job.error is not None or self.stopping:
                    job.outstanding -= 1
                    self.settle(job)
                    continue
            return tag, fn, args
        return None

    def handle(self, done: Done) -> None:
        if self.is_heavy_tag(done.tag):
            self.heavy -= 1
        kind, seq = done.tag[0], done.tag[1]
        if kind == "one":
            result = done.result if done.error is None else Outcome(seq, "failed", error=describe(done.error))
            self.finish(result, done.tag[2])
            return
        job = self.jobs[seq]
        if kind == "prep":
            if done.error is not None:
                self.finish_large(job, Outcome(seq, "failed", error=describe(done.error)))
            elif isinstance(done.result, Outcome):
                self.finish_large(job, done.result)
            elif self.stopping:
                self.finish_large(job, Outcome(seq, "pending", retries=job.retries))
            else:
                job.outstanding = job.n_parts
                for index in range(job.n_parts):
                    self.ready.append((("part", seq, index), self.copier.upload_part, (job, index)))
        elif kind == "part":
            job.outstanding -= 1
            err = done.error
            if err is None:
                job.retries += done.result.retries
                err = done.result.error
                if err is None:
                    job.parts[done.tag[2]] = done.result
            if err is not None and job.error is None:
                if isinstance(err, SourceChanged):
                    job.error = Outcome(seq, "source-changed", error=err.reason)
                elif isinstance(err, Aborted):
                    job.error = Outcome(seq, "pending")
                elif isinstance(err, PermissionError):
                    job.error = Outcome(seq, "failed", error=f"cannot read {job.work.path}: {err.strerror}")
                elif isinstance(err, SourceReadError):
                    job.error = Outcome(seq, "failed", error=str(err))
                else:
                    job.error = Outcome(seq, "failed", error=describe(err), transient=is_retryable(err))
            self.settle(job)
        elif kind == "compose":
            result = done.result if done.error is None else Outcome(seq, "failed", error=describe(done.error))
            self.finish_large(job, result)

    def settle(self, job: LargeJob) -> None:
        """Once no part of the job is queued or running: compose it, or record why it cannot be."""
        if job.outstanding > 0:
            return
        if job.error is not None:
            if job.error.state == "source-changed":
                self.copier.delete_parts(job.work, job.n_parts, [0])
            job.error.retries += job.retries
            job.error.uploaded = sum(p.uploaded for p in job.parts.values())
            self.finish_large(job, job.error)
        elif len(job.parts) == job.n_parts:
            self.ready.appendleft((("compose", job.work.seq), self.copier.compose_large, (job,)))
        else:  # stopped: the parts uploaded so far stay for the next run
            self.finish_large(job, Outcome(job.work.seq, "pending", retries=job.retries))

    def finish_large(self, job: LargeJob, outcome: Outcome) -> None:
        self.jobs.pop(job.work.seq, None)
        self.finish(outcome, job.work)

    def finish(self, o: Outcome, w: Work) -> None:
        s = self.summary
        s.retries += o.retries
        s.bytes += o.uploaded
        s.reused_bytes += o.reused
        self.ledger.add(o)
        name = f"gs://{w.bucket}/{w.object}"
        if o.state == "failed" and o.transient:
            self.transient_streak += 1
            if self.transient_streak >= self.streak_limit and self.halted is None:
                # the target, not the items, is failing: more items would each wait out a full retry budget
                self.halted = (
                    f"stopped early: {self.transient_streak} items in a row failed after their retries"
                    f" (last: {o.error}); GCS looks unavailable. The run is resumable: run the same command again"
                )
                self.stopping = True
        elif o.state != "pending":
            self.transient_streak = 0
        if o.state == "done":
            s.done += 1
            if o.existed:
                s.existed += 1
            else:
                s.uploaded += 1
            self.report(Event("object_done", name=name, n=w.size, data={"reused": o.reused}))
        elif o.state in ("failed", "source-changed", "conflict"):
            if o.state == "failed":
                s.failed += 1
            elif o.state == "source-changed":
                s.source_changed += 1
            else:
                s.conflict += 1
            s.failures_total += 1
            if len(s.failures) < FAILURES_KEPT:
                s.failures.append(
                    {
                        "seq": o.seq,
                        "source": w.source,
                        "relpath": w.relpath,
                        "destination": name,
                        "state": o.state,
                        "reason": o.error or "",
                    }
                )
            kind = "source_changed" if o.state == "source-changed" else "object_failed"
            self.report(Event(kind, name=name, data={"error": o.error, "state": o.state}))
        self.ledger.maybe_flush()


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
) -> ObjectsSummary:
    """Copy every pending or failed object item of the plan; the ledger is current when this returns.

    `stop` set: take no new items, let in-flight ones finish. KeyboardInterrupt (a second Ctrl-C):
    record what has finished, set `abort` so streaming requests die, and re-raise (`summary`, if
    given, holds the counts so far).
    """
    summary = summary if summary is not None else ObjectsSummary()
    started = time.monotonic()
    copier = Copier(
        gcs, cfg.transfer, plan.plan_id, throttle=throttle, report=report, abort=abort, retry_sleep=retry_sleep
    )
    d = _Dispatch(conn, cfg, plan, copier, summary, report)
    counts: Counter = Counter()
    works = iter_work(conn, cfg, plan, counts)
    exhausted = False
    threads = concurrency(workers)
    ex = BoundedExecutor(threads, max_in_flight=threads + workers)
    try:
        while True:
            if stop.is_set() and not d.stopping:
                d.stopping = True
            while ex.has_room():
                if d.heavy < workers:
                    entry = d.next_ready()
                    if entry is not None:
                        d.submit(ex, entry[0], entry[1], *entry[2])
                        continue
                    if d.deferred and not d.stopping:
                        d.start(d.deferred.popleft(), ex)
                        continue
                if d.stopping or exhausted or len(d.deferred) >= PAGE:
                    break
                w = next(works, None)
                if w is None:
                    exhausted = True
                    break
                if d.heavy >= workers and (w.size >= SMALL_OBJECT or d.is_large(w)):
                    d.deferred.append(w)  # started when a stream slot frees; small items go on meanwhile
                    continue
                d.start(w, ex)
            if ex.in_flight == 0 and not d.ready and (d.stopping or not d.deferred):
                break
            done = ex.next_done(timeout=0.25)
            if done is not None:
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
    summary.already_done = counts.get("done", 0)
    summary.previously_skipped = counts.get("source-changed", 0) + counts.get("conflict", 0)
    summary.pending = items.count(conn, plan.plan_id, ItemKind.OBJECT, OPEN) - summary.failed
    summary.halted = d.halted
    summary.planned = items.count(conn, plan.plan_id, ItemKind.OBJECT)
    summary.elapsed = time.monotonic() - started
    return summary


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
