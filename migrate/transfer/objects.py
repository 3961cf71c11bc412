"""Copy a plan's object items into GCS: bounded, checksummed, conditional, resumable.

One dispatching thread streams the plan's pending items (manifest merged with ledger states,
a page at a time), feeds a BoundedExecutor, and alone writes results to the ledger in batches.

Per item, before anything is sent, the source is checked against the inventory: size, mtime
and inode from fstat, then the CRC32C of the bytes actually read. A mismatch marks the item
'source-changed' and nothing is created (small files are read and checked before the request;
streamed ones withhold their last block until the check passed, see targets.gcs.FileBody).

Large files (size >= transfer.large_file_threshold) use parallel composite uploads rather
than resumable uploads:
  - crash resume keeps its state in GCS itself: finished parts are objects created with
    ifGenerationMatch=0 and verified by CRC32C; a resumed run lists them and re-sends only
    what is missing. A resumable session instead depends on the server's status query, and
    fake-gcs-server (our test and bench target) commits a truncated object on that query and
    ignores preconditions on resumable uploads, so exactly-once could not be tested there;
  - the parts of one file upload in parallel across the worker pool, so one huge file uses
    every worker (a resumable upload is one serial stream);
  - the composite's CRC32C is checked against the CRC32C of the whole file, combined from
    the parts' CRC32Cs before composing (composite objects have no MD5; we never need one).
The price: part objects under targets.gcs.PARTS_PREFIX, which need storage.objects.delete.
They are deleted right after the compose, when the item turns out source-changed or in
conflict, and by a sweep at the end of every run for any item no longer pending; only the
parts of a pending or failed item are kept, because they are what its next run resumes from.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import google_crc32c
from google.api_core import exceptions as gexc

from migrate.config import Config, TransferConfig
from migrate.hashing import crc32c_b64
from migrate.ledger import now, transaction
from migrate.planning.planfile import Plan
from migrate.progress import Event, Reporter
from migrate.retry import describe, retrying
from migrate.targets.gcs import (
    MAX_COMPOSE,
    PARTS_PREFIX,
    Aborted,
    FileBody,
    Gcs,
    ObjectInfo,
    SourceChanged,
    content_type,
    crc32c_concat,
    object_metadata,
    part_prefix,
)
from migrate.transfer.executor import BoundedExecutor, Done

IN_MEMORY_MAX = 8 * 1024 * 1024  # files up to this size are read whole, checked, then sent
MAX_PARTS = MAX_COMPOSE * MAX_COMPOSE  # two levels of compose
PAGE = 1000  # items read from the manifest and the ledger at a time
FLUSH_EVERY = 500  # ledger rows per batched write
FLUSH_SECONDS = 1.0
FAILURES_KEPT = 100  # failed items listed in the summary (all of them stay in the ledger)
RETRYABLE_STATES = ("pending", "failed")


@dataclass(slots=True)
class Work:
    """One object item to copy: the manifest's fields plus the ledger's resume state."""

    seq: int
    source: str
    relpath: str
    path: str
    bucket: str
    object: str
    size: int
    mtime_ns: int | None
    inode: int | None
    crc32c: str | None
    storage_class: str | None
    replace_generation: int | None
    upload_state: dict | None


@dataclass(slots=True)
class Outcome:
    """How one item ended in this run. state 'pending' means: interrupted, try again next run."""

    seq: int
    state: str  # done | failed | source-changed | conflict | pending
    generation: int | None = None
    crc32c: str | None = None
    uploaded: int = 0  # bytes sent by successful requests
    reused: int = 0  # bytes already in GCS (object or parts from an earlier run)
    existed: bool = False  # the object was already there with the same CRC32C
    error: str | None = None
    retries: int = 0


@dataclass(slots=True)
class PartResult:
    index: int
    info: ObjectInfo | None
    crc: int
    length: int
    uploaded: int = 0
    reused: int = 0
    retries: int = 0
    error: BaseException | None = None  # why this part could not be uploaded


@dataclass(slots=True)
class LargeJob:
    work: Work
    part_size: int
    n_parts: int
    resumed: bool
    existing: dict[int, ObjectInfo] = field(default_factory=dict)
    parts: dict[int, PartResult] = field(default_factory=dict)
    outstanding: int = 0
    retries: int = 0
    error: Outcome | None = None


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
        }


# --- the plan's pending items -------------------------------------------------------------------


def iter_work(conn, cfg: Config, plan: Plan, counts: Counter) -> Iterator[Work]:
    """Object items still to do, in plan order, a page at a time; counts[state] gets the others."""
    page: list[dict] = []
    for item in plan.iter_items():
        if item.get("kind") != "object":
            continue
        page.append(item)
        if len(page) >= PAGE:
            yield from _page(conn, cfg, plan.plan_id, page, counts)
            page = []
    if page:
        yield from _page(conn, cfg, plan.plan_id, page, counts)


def _page(conn, cfg: Config, plan_id: str, page: list[dict], counts: Counter) -> Iterator[Work]:
    rows = {
        r[0]: (r[1], r[2])
        for r in conn.execute(
            "SELECT seq, state, upload_url FROM items WHERE plan_id=? AND seq BETWEEN ? AND ?",
            (plan_id, page[0]["seq"], page[-1]["seq"]),
        )
    }
    for it in page:
        state, upload_url = rows.get(it["seq"], ("pending", None))
        if state not in RETRYABLE_STATES:
            counts[state] += 1
            continue
        path = it.get("path") or str(cfg.catalog_source(it["source"]).root / it["relpath"])
        yield Work(
            seq=it["seq"],
            source=it["source"],
            relpath=it["relpath"],
            path=path,
            bucket=it["bucket"],
            object=it["object"],
            size=int(it["size"]),
            mtime_ns=it.get("mtime_ns"),
            inode=it.get("inode"),
            crc32c=it.get("crc32c"),
            storage_class=it.get("storage_class"),
            replace_generation=it.get("replace_generation") if it.get("overwrite") else None,
            upload_state=_parse_state(upload_url),
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
        " attempts=attempts+1, retries=retries+?, upload_url=CASE WHEN ? THEN NULL ELSE upload_url END,"
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
            "UPDATE items SET upload_url=?, updated_at=? WHERE plan_id=? AND seq=?",
            (json.dumps(state, sort_keys=True), now(), self.plan_id, seq),
        )


# --- the work done in the pool --------------------------------------------------------------------


def _check_stat(w: Work, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise SourceChanged("no longer a regular file")
    if st.st_size != w.size:
        raise SourceChanged(f"size changed since inventory ({w.size} -> {st.st_size} bytes)")
    if w.mtime_ns is not None and st.st_mtime_ns != w.mtime_ns:
        raise SourceChanged("modified since inventory (mtime changed)")
    if w.inode and st.st_ino != w.inode:
        raise SourceChanged("replaced since inventory (inode changed)")


def _stat(w: Work) -> os.stat_result:
    try:
        st = os.stat(w.path)
    except FileNotFoundError:
        raise SourceChanged("deleted since inventory") from None
    _check_stat(w, st)
    return st


def _crc_of_range(path: str, offset: int, length: int) -> int:
    crc = 0
    with open(path, "rb", buffering=0) as fh:
        fh.seek(offset)
        remaining = length
        while remaining > 0:
            block = fh.read(min(1 << 20, remaining))
            if not block:
                raise SourceChanged("file shrank while reading")
            crc = google_crc32c.extend(crc, block)
            remaining -= len(block)
    return crc


class Copier:
    """What workers run. Every method returns a result and never raises for an item's own problems."""

    def __init__(
        self,
        gcs: Gcs,
        cfg: TransferConfig,
        plan_id: str,
        *,
        throttle: Callable[[int], object],
        report: Reporter,
        abort: threading.Event,
        retry_sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.gcs = gcs
        self.cfg = cfg
        self.plan_id = plan_id
        self.throttle = throttle
        self.report = report
        self.abort = abort
        self.retry_sleep = retry_sleep

    # -- helpers

    def _call(self, fn: Callable[[], object], retries: list[int], name: str):
        def on_retry(exc: BaseException, attempt: int) -> None:
            retries[0] += 1
            self.report(Event("retry", name=name, data={"error": describe(exc)}))

        return retrying(self.cfg, on_retry, sleep=self.retry_sleep)(fn)

    def _progress(self, n: int) -> None:
        self.report(Event("bytes", n=n))

    def _guard(self, w: Work, fn: Callable[[list[int]], Outcome]) -> Outcome:
        retries = [0]
        if self.abort.is_set():
            return Outcome(w.seq, "pending")
        try:
            outcome = fn(retries)
        except SourceChanged as exc:
            outcome = Outcome(w.seq, "source-changed", error=exc.reason)
        except Aborted:
            outcome = Outcome(w.seq, "pending")
        except PermissionError as exc:
            outcome = Outcome(w.seq, "failed", error=f"cannot read {w.path}: {exc.strerror}")
        except Exception as exc:  # an item's failure must not stop the run; the ledger keeps the reason
            outcome = Outcome(w.seq, "failed", error=describe(exc))
        outcome.retries += retries[0]
        return outcome

    def _insert(self, w: Work, body, *, crc32c: str | None, retries: list[int]) -> ObjectInfo:
        def attempt() -> ObjectInfo:
            if isinstance(body, FileBody) and body.sent:
                self._progress(-body.sent)  # a retry rewinds what the failed attempt had sent
                body.sent = 0
            if isinstance(body, bytes):
                self.throttle(len(body))
            return self.gcs.insert(
                w.bucket,
                w.object,
                body,
                content_type=content_type(w.object),
                metadata=object_metadata(w.mtime_ns or 0, self.plan_id),
                crc32c=crc32c,
                if_generation_match=w.replace_generation or 0,
                storage_class=w.storage_class,
            )

        return self._call(attempt, retries, w.object)

    def _existing(self, w: Work, crc: str, retries: list[int]) -> Outcome:
        """After a 412: the object is there. Same CRC32C = done (an earlier attempt or run wrote it)."""
        info = self._call(lambda: self.gcs.get(w.bucket, w.object), retries, w.object)
        if info is None:
            return Outcome(w.seq, "failed", error="object creation was refused but no object exists; run again")
        if info.size == w.size and info.crc32c == crc:
            return Outcome(w.seq, "done", generation=info.generation, crc32c=crc, reused=w.size, existed=True)
        return Outcome(
            w.seq,
            "conflict",
            error=f"gs://{w.bucket}/{w.object} already exists with other content "
            f"(size {info.size}, CRC32C {info.crc32c}; ours {w.size}, {crc}); re-plan to apply conflict_policy",
        )

    # -- small and medium files: one request

    def copy_one(self, w: Work) -> Outcome:
        return self._guard(w, lambda retries: self._copy_one(w, retries))

    def _copy_one(self, w: Work, retries: list[int]) -> Outcome:
        if w.size <= IN_MEMORY_MAX:
            data, crc = self._read_small(w)
            body: bytes | FileBody = data
        else:
            _stat(w)
            crc = None
            body = FileBody(
                w.path,
                0,
                w.size,
                throttle=self.throttle,
                on_bytes=self._progress,
                abort=self.abort,
                final_check=lambda c: self._final_check(w, c),
            )
        try:
            info = self._insert(w, body, crc32c=crc or w.crc32c, retries=retries)
        except gexc.PreconditionFailed:
            if crc is None:
                crc = crc32c_b64(body.crc) if isinstance(body, FileBody) and body.crc is not None else None
                crc = crc or w.crc32c or crc32c_b64(_crc_of_range(w.path, 0, w.size))
            return self._existing(w, crc, retries)
        if isinstance(body, bytes):
            self._progress(w.size)
        else:
            crc = crc32c_b64(body.crc) if body.crc is not None else info.crc32c
        return Outcome(w.seq, "done", generation=info.generation, crc32c=crc, uploaded=w.size)

    def _read_small(self, w: Work) -> tuple[bytes, str]:
        """Read the whole file and prove it is the inventoried one before anything is sent."""
        try:
            # O_NONBLOCK: a FIFO planted where a file was must not hang the worker
            fd = os.open(w.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise SourceChanged("deleted since inventory") from None
        try:
            _check_stat(w, os.fstat(fd))
            chunks = []
            remaining = w.size + 1  # one byte more: a file that grew is noticed
            while remaining > 0:
                block = os.read(fd, remaining)
                if not block:
                    break
                chunks.append(block)
                remaining -= len(block)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if len(data) != w.size:
            raise SourceChanged(f"size changed while reading ({w.size} -> {len(data)} bytes)")
        _check_stat(w, after)
        crc = crc32c_b64(google_crc32c.value(data))
        if w.crc32c and crc != w.crc32c:
            raise SourceChanged(f"content changed since inventory (CRC32C {w.crc32c} -> {crc})")
        return data, crc

    def _final_check(self, w: Work, crc: int) -> None:
        """Before the last block of a streamed file is sent: same file, same bytes as the inventory."""
        _stat(w)
        if w.crc32c and crc32c_b64(crc) != w.crc32c:
            raise SourceChanged(f"content changed since inventory (CRC32C {w.crc32c} -> {crc32c_b64(crc)})")

    # -- large files: parallel composite upload

    def prepare_large(self, job: LargeJob) -> Outcome | dict[int, ObjectInfo]:
        """Check the source; on a resumed item, find the final object or the parts already uploaded."""
        w = job.work

        def run(retries: list[int]) -> Outcome:
            _stat(w)
            if not job.resumed:
                return Outcome(w.seq, "pending", existed=False)
            final = self._call(lambda: self.gcs.get(w.bucket, w.object), retries, w.object)
            if final is not None and final.generation != w.replace_generation:
                # the compose of an earlier run landed before the run could record it
                crc = w.crc32c or crc32c_b64(_crc_of_range(w.path, 0, w.size))
                outcome = self._existing(w, crc, retries)
                if outcome.state != "failed":
                    self.delete_parts(w, job.n_parts, retries)
                return outcome
            prefix = part_prefix(self.plan_id, w.seq)
            found: dict[int, ObjectInfo] = {}
            for info in self._call(lambda: list(self.gcs.list(w.bucket, prefix)), retries, w.object):
                suffix = info.name[len(prefix) :]
                if suffix.isdigit():
                    found[int(suffix)] = info
            job.existing = found
            return Outcome(w.seq, "pending", existed=True)

        outcome = self._guard(w, run)
        if outcome.state == "pending" and not self.abort.is_set():
            job.retries += outcome.retries
            return job.existing
        return outcome

    def upload_part(self, job: LargeJob, index: int) -> PartResult:
        """Upload one part (or prove an earlier run's copy of it is intact); failures are in .error."""
        retries = [0]
        try:
            return self._upload_part(job, index, retries)
        except Exception as exc:
            length = min(job.part_size, job.work.size - index * job.part_size)
            return PartResult(index, None, 0, length, retries=retries[0], error=exc)

    def _upload_part(self, job: LargeJob, index: int, retries: list[int]) -> PartResult:
        w = job.work
        offset = index * job.part_size
        length = min(job.part_size, w.size - offset)
        name = part_prefix(self.plan_id, w.seq) + f"{index:05d}"
        existing = job.existing.get(index)
        match = 0
        if existing is not None:
            crc = _crc_of_range(w.path, offset, length)
            if existing.size == length and existing.crc32c == crc32c_b64(crc):
                return PartResult(index, existing, crc, length, reused=length)
            match = existing.generation
        body = FileBody(w.path, offset, length, throttle=self.throttle, on_bytes=self._progress, abort=self.abort)

        def attempt(generation: int) -> ObjectInfo:
            if body.sent:
                self._progress(-body.sent)
                body.sent = 0
            return self.gcs.insert(
                w.bucket,
                name,
                body,
                content_type="application/octet-stream",
                if_generation_match=generation,
                storage_class="STANDARD",  # a short-lived part must not carry a colder class's minimum duration
            )

        try:
            info = self._call(lambda: attempt(match), retries, name)
        except gexc.PreconditionFailed:
            current = self._call(lambda: self.gcs.get(w.bucket, name), retries, name)
            crc = body.crc if body.crc is not None else _crc_of_range(w.path, offset, length)
            if current is not None and current.size == length and current.crc32c == crc32c_b64(crc):
                return PartResult(index, current, crc, length, reused=length, retries=retries[0])
            info = self._call(lambda: attempt(current.generation if current else 0), retries, name)
        assert body.crc is not None
        return PartResult(index, info, body.crc, length, uploaded=length, retries=retries[0])

    def compose_large(self, job: LargeJob) -> Outcome:
        w = job.work

        def run(retries: list[int]) -> Outcome:
            parts = [job.parts[i] for i in range(job.n_parts)]
            crc = crc32c_b64(crc32c_concat([(p.crc, p.length) for p in parts]))
            try:
                _stat(w)
                if w.crc32c and crc != w.crc32c:
                    raise SourceChanged(f"content changed since inventory (CRC32C {w.crc32c} -> {crc})")
            except SourceChanged:
                self.delete_parts(w, job.n_parts, retries)
                raise
            sources = [p.info for p in parts]
            if len(sources) > MAX_COMPOSE:
                prefix = part_prefix(self.plan_id, w.seq)
                groups = [sources[i : i + MAX_COMPOSE] for i in range(0, len(sources), MAX_COMPOSE)]
                sources = [
                    self._call(
                        lambda k=k, g=g: self.gcs.compose(
                            w.bucket, f"{prefix}c{k:03d}", g, content_type="application/octet-stream"
                        ),
                        retries,
                        w.object,
                    )
                    for k, g in enumerate(groups)
                ]
            try:
                info = self._call(
                    lambda: self.gcs.compose(
                        w.bucket,
                        w.object,
                        sources,
                        content_type=content_type(w.object),
                        metadata=object_metadata(w.mtime_ns or 0, self.plan_id),
                        if_generation_match=w.replace_generation or 0,
                        storage_class=w.storage_class,
                    ),
                    retries,
                    w.object,
                )
            except gexc.PreconditionFailed:
                outcome = self._existing(w, crc, retries)
            else:
                if info.crc32c != crc or info.size != w.size:
                    self.gcs.delete(w.bucket, w.object, generation=info.generation)
                    return Outcome(
                        w.seq, "failed", error=f"composed object has CRC32C {info.crc32c}, the file {crc}; deleted it"
                    )
                outcome = Outcome(w.seq, "done", generation=info.generation, crc32c=crc)
            outcome.uploaded = sum(p.uploaded for p in parts)
            outcome.reused = sum(p.reused for p in parts)
            if outcome.state in ("done", "conflict"):
                self.delete_parts(w, job.n_parts, retries)
            return outcome

        outcome = self._guard(w, run)
        outcome.retries += job.retries
        return outcome

    def delete_parts(self, w: Work, n_parts: int, retries: list[int]) -> None:
        """Best effort: what fails here is left to the end-of-run sweep."""
        prefix = part_prefix(self.plan_id, w.seq)
        names = [f"{prefix}{i:05d}" for i in range(n_parts)]
        names += (
            [f"{prefix}c{k:03d}" for k in range((n_parts + MAX_COMPOSE - 1) // MAX_COMPOSE)]
            if n_parts > MAX_COMPOSE
            else []
        )
        for name in names:
            try:
                self._call(lambda name=name: self.gcs.delete(w.bucket, name), retries, name)
            except Exception:
                continue


def part_layout(size: int, cfg: TransferConfig, state: dict | None) -> tuple[int, int]:
    """(part size, number of parts): chunk_size parts, grown so no file needs more than MAX_PARTS."""
    if state and int(state.get("part_size") or 0) > 0:
        part_size = int(state["part_size"])  # keep an interrupted upload's layout, whatever the config says now
    else:
        part_size = max(cfg.chunk_size, -(-size // MAX_PARTS), 1)
        part_size = -(-part_size // (256 * 1024)) * (256 * 1024)
    return part_size, max(1, -(-size // part_size))


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
        self.ready: deque[tuple[tuple, Callable, tuple]] = deque()  # follow-up tasks of large items
        self.stopping = False

    def is_large(self, w: Work) -> bool:
        return w.upload_state is not None or w.size >= max(self.cfg.transfer.large_file_threshold, 1)

    def start(self, w: Work, ex: BoundedExecutor) -> None:
        if not self.is_large(w):
            ex.submit(("one", w.seq, w), self.copier.copy_one, w)
            return
        part_size, n_parts = part_layout(w.size, self.cfg.transfer, w.upload_state)
        job = LargeJob(w, part_size, n_parts, resumed=w.upload_state is not None)
        if w.upload_state is None:
            self.ledger.set_upload_state(w.seq, {"kind": "composite", "part_size": part_size, "parts": n_parts})
        self.jobs[w.seq] = job
        ex.submit(("prep", w.seq), self.copier.prepare_large, job)

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
                else:
                    job.error = Outcome(seq, "failed", error=describe(err))
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
    ex = BoundedExecutor(workers, max_in_flight=workers * 2)
    try:
        while True:
            if stop.is_set() and not d.stopping:
                d.stopping = True
            while ex.has_room():
                entry = d.next_ready()
                if entry is not None:
                    ex.submit(entry[0], entry[1], *entry[2])
                    continue
                if d.stopping or exhausted:
                    break
                w = next(works, None)
                if w is None:
                    exhausted = True
                    break
                d.start(w, ex)
            if ex.in_flight == 0 and not d.ready:
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
    summary.pending = _count_pending(conn, plan.plan_id) - summary.failed
    summary.planned = _count_objects(conn, plan.plan_id)
    summary.elapsed = time.monotonic() - started
    return summary


def _count_objects(conn, plan_id: str) -> int:
    return conn.execute("SELECT COUNT(*) FROM items WHERE plan_id=? AND kind='object'", (plan_id,)).fetchone()[0]


def _count_pending(conn, plan_id: str) -> int:
    return conn.execute(
        "SELECT COUNT(*) FROM items WHERE plan_id=? AND kind='object' AND state IN ('pending', 'failed')", (plan_id,)
    ).fetchone()[0]


def sweep_parts(conn, gcs: Gcs, plan_id: str, threshold: int) -> int:
    """Delete composite parts whose item is no longer pending or failed. Returns how many were deleted."""
    buckets = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT bucket FROM items WHERE plan_id=? AND kind='object'"
            " AND (size >= ? OR upload_url IS NOT NULL)",
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
            if states[seq] not in RETRYABLE_STATES and gcs.delete(bucket, info.name):
                deleted += 1
    return deleted
