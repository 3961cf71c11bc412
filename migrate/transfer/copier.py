"""What the workers run for one object item: checks, reads, uploads, composes.

Before anything is sent, the source is checked against the inventory: size, mtime and inode
from fstat, then the CRC32C of the bytes actually read. A mismatch raises SourceChanged and
nothing is created: small files are read and checked before the request; streamed ones
withhold their last block until the check passed (sources.filebody.FileBody).

Large files (size >= transfer.large_file_threshold) take one of two paths, chosen per bucket
from its settings (targets.buckets):
  - resumable upload (transfer.resumable_steps), the default: one session per file, its URI
    and acknowledged offset in the ledger, so a killed run resumes mid-file;
  - parallel composite upload, only for a STANDARD destination in a bucket without retention
    policy, default hold, versioning or soft delete, where parts cost nothing once deleted:
    the parts of one file upload in parallel across the worker pool; finished parts are
    objects created with ifGenerationMatch=0 and verified by CRC32C, so a resumed run lists
    them and re-sends only what is missing; the composite's CRC32C is checked against the
    CRC32C of the whole file, combined from the parts' CRC32Cs. Compose deletes its sources
    (deleteSourceObjects); the job's cleanup deletes what a server left, under
    targets.gcs.PARTS_PREFIX only, and a sweep at the end of every run (objects.sweep_parts)
    takes the parts of any item no longer pending.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import google_crc32c

from migrate.config import TransferConfig
from migrate.hashing import crc32c_b64
from migrate.progress import Event, Reporter
from migrate.retry import call_with_retry, describe
from migrate.sources.filebody import FileBody, SourceChanged
from migrate.targets.errors import PRECONDITION_FAILED
from migrate.targets.gcs import (
    Gcs,
    ObjectInfo,
    TransportCorruption,
    content_type,
    object_metadata,
)
from migrate.transfer.composite_steps import CompositeSteps
from migrate.transfer.outcome import CONFLICT, DONE, FAILED, PENDING, Outcome, Tally, outcome_of
from migrate.transfer.ramp import no_ramp
from migrate.transfer.resumable_steps import ResumableSteps
from migrate.transfer.sourcecheck import check_stat, crc_of_range, stat_source
from migrate.transfer.tasks import Work

IN_MEMORY_MAX = 8 * 1024 * 1024  # files up to this size are read whole, checked, then sent


# --- the work done in the pool --------------------------------------------------------------------


class Copier(CompositeSteps, ResumableSteps):
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
        writes: Callable[[str], float] = no_ramp,
    ) -> None:
        self.writes = writes  # the bucket's write-rate gate (transfer.ramp), called before every object write
        self.gcs = gcs
        self.cfg = cfg
        self.plan_id = plan_id
        self.throttle = throttle
        self.report = report
        self.abort = abort
        self.retry_sleep = retry_sleep

    # -- helpers

    def _call(self, fn: Callable[[], object], tally: Tally, name: str):
        def on_retry(exc: BaseException, attempt: int) -> None:
            tally.note(exc)
            self.report(Event("retry", name=name, data={"error": describe(exc)}))

        return call_with_retry(fn, self.cfg, on_retry, sleep=self.retry_sleep)

    def _progress(self, n: int) -> None:
        self.report(Event("bytes", n=n))

    def _guard(self, w: Work, fn: Callable[[Tally], Outcome]) -> Outcome:
        tally = Tally()
        if self.abort.is_set():
            return Outcome(w.seq, PENDING)
        try:
            outcome = fn(tally)
        except Exception as exc:  # an item's failure must not stop the run; the ledger keeps the reason
            outcome = outcome_of(w.seq, exc, w.path)
        outcome.retries += tally.retries
        outcome.corrupt += tally.corrupt
        return outcome

    def _insert(self, w: Work, body, *, crc32c: str | None, tally: Tally) -> ObjectInfo:
        match = [w.replace_generation or 0]

        def attempt() -> ObjectInfo:
            if isinstance(body, FileBody) and body.sent:
                self._progress(-body.sent)  # a retry rewinds what the failed attempt had sent
                body.sent = 0
            if isinstance(body, bytes):
                self.throttle(len(body))
            self.writes(w.bucket)
            try:
                return self.gcs.insert(
                    w.bucket,
                    w.object,
                    body,
                    content_type=content_type(w.object),
                    metadata=object_metadata(w.mtime_ns or 0, self.plan_id),
                    crc32c=crc32c,
                    if_generation_match=match[0],
                    storage_class=w.storage_class,
                )
            except TransportCorruption as exc:
                if exc.generation is not None:
                    match[0] = exc.generation  # the retry replaces the damaged generation we created
                raise

        return self._call(attempt, tally, w.object)

    def _existing(self, w: Work, crc: str, tally: Tally) -> Outcome:
        """After a 412: the object is there. Same CRC32C = done (an earlier attempt or run wrote it)."""
        info = self._call(lambda: self.gcs.get(w.bucket, w.object), tally, w.object)
        if info is None:
            return Outcome(w.seq, FAILED, error="object creation was refused but no object exists; run again")
        if info.size == w.size and info.crc32c == crc:
            return Outcome(w.seq, DONE, generation=info.generation, crc32c=crc, reused=w.size, existed=True)
        return Outcome(
            w.seq,
            CONFLICT,
            error=f"gs://{w.bucket}/{w.object} already exists with other content "
            f"(size {info.size}, CRC32C {info.crc32c}; ours {w.size}, {crc}); re-plan to apply conflict_policy",
        )

    # -- small and medium files: one request

    def copy_one(self, w: Work) -> Outcome:
        return self._guard(w, lambda tally: self._copy_one(w, tally))

    def _copy_one(self, w: Work, tally: Tally) -> Outcome:
        if w.size <= IN_MEMORY_MAX:
            data, crc = self._read_small(w)
            body: bytes | FileBody = data
        else:
            stat_source(w)
            # without an inventory CRC32C, read the file once first: the insert's metadata must carry one
            crc = None if w.crc32c else crc32c_b64(crc_of_range(w.path, 0, w.size))
            body = FileBody(
                w.path,
                0,
                w.size,
                throttle=self.throttle,
                on_bytes=self._progress,
                abort=self.abort,
                final_check=lambda c: self._final_check(w, c, w.crc32c or crc),
            )
        try:
            info = self._insert(w, body, crc32c=crc or w.crc32c, tally=tally)
        except PRECONDITION_FAILED:
            if crc is None:
                crc = crc32c_b64(body.crc) if isinstance(body, FileBody) and body.crc is not None else None
                crc = crc or w.crc32c or crc32c_b64(crc_of_range(w.path, 0, w.size))
            return self._existing(w, crc, tally)
        if isinstance(body, bytes):
            self._progress(w.size)
        else:
            crc = crc32c_b64(body.crc) if body.crc is not None else info.crc32c
        return Outcome(w.seq, DONE, generation=info.generation, crc32c=crc, uploaded=w.size)

    def _read_small(self, w: Work) -> tuple[bytes, str]:
        """Read the whole file and prove it is the inventoried one before anything is sent."""
        try:
            # O_NONBLOCK: a FIFO planted where a file was must not hang the worker
            fd = os.open(w.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise SourceChanged("deleted since inventory") from None
        try:
            check_stat(w, os.fstat(fd))
            chunks = []
            remaining = w.size + 1  # one byte more: a file that grew is noticed
            while remaining > 1:  # with all `size` bytes in, the fstat below tells whether the file grew
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
        check_stat(w, after)
        crc = crc32c_b64(google_crc32c.value(data))
        if w.crc32c and crc != w.crc32c:
            raise SourceChanged(f"content changed since inventory (CRC32C {w.crc32c} -> {crc})")
        return data, crc

    def _final_check(self, w: Work, crc: int, expected: str | None) -> None:
        """Before the last block of a streamed file is sent: same file, same bytes as the inventory
        (or as the read that computed the CRC32C the request announced)."""
        stat_source(w)
        if expected and crc32c_b64(crc) != expected:
            raise SourceChanged(f"content changed since inventory (CRC32C {expected} -> {crc32c_b64(crc)})")
