"""What the workers run for one object item: checks, reads, uploads, composes.

Before anything is sent, the source is checked against the inventory: size, mtime and inode
from fstat, then the CRC32C of the bytes actually read. A mismatch raises SourceChanged and
nothing is created: small files are read and checked before the request; streamed ones
withhold their last block until the check passed (sources.filebody.FileBody).

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
conflict, and by a sweep at the end of every run (objects.sweep_parts) for any item no longer
pending; only the parts of a pending or failed item are kept: its next run resumes from them.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import google_crc32c
from google.api_core import exceptions as gexc

from migrate.config import TransferConfig
from migrate.hashing import crc32c_b64, crc32c_concat
from migrate.progress import Event, Reporter
from migrate.retry import call_with_retry, describe, is_retryable
from migrate.sources.filebody import Aborted, FileBody, SourceChanged, SourceReadError
from migrate.targets.gcs import MAX_COMPOSE, Gcs, ObjectInfo, content_type, object_metadata, part_prefix

IN_MEMORY_MAX = 8 * 1024 * 1024  # files up to this size are read whole, checked, then sent
MAX_PARTS = MAX_COMPOSE * MAX_COMPOSE  # two levels of compose


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
    transient: bool = False  # failed on an error the classifier retries (the target, not the item)


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

        return call_with_retry(fn, self.cfg, on_retry, sleep=self.retry_sleep)

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
        except SourceReadError as exc:
            outcome = Outcome(w.seq, "failed", error=str(exc))
        except Exception as exc:  # an item's failure must not stop the run; the ledger keeps the reason
            outcome = Outcome(w.seq, "failed", error=describe(exc), transient=is_retryable(exc))
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
            # compose's ifGenerationMatch guards this on GCS; the explicit look also holds where it
            # is not enforced (fake-gcs-server), for one request per large file
            current = self._call(lambda: self.gcs.get(w.bucket, w.object), retries, w.object)
            if current is not None and current.generation != w.replace_generation:
                outcome = self._existing(w, crc, retries)
                outcome.reused = sum(p.reused for p in parts)
                outcome.uploaded = sum(p.uploaded for p in parts)
                if outcome.state != "failed":
                    self.delete_parts(w, job.n_parts, retries)
                return outcome
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
