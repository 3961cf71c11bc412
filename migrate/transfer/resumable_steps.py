"""Large files as one resumable upload each, a chunk per task, resumable across crashes.

Every step returns to the dispatcher, which writes the job's session state to the ledger before the
next step starts: the session URI before the first byte is sent, then each offset the server has
acknowledged (with the CRC32C of the bytes below it). A run killed mid-file asks the server what it
holds (targets.resumable.query) and sends only the rest; a session that expired or vanished is
started again. Rules and docs: targets.resumable.
"""

from __future__ import annotations

from migrate.hashing import crc32c_b64
from migrate.hashing import crc32c_combine as combine
from migrate.sources.filebody import FileBody, SourceChanged
from migrate.targets import resumable
from migrate.targets.buckets import RESUMABLE
from migrate.targets.errors import PRECONDITION_FAILED
from migrate.targets.gcs import ObjectInfo, TransportCorruption, content_type, object_metadata
from migrate.transfer.outcome import DONE, FAILED, PENDING, Outcome, Tally
from migrate.transfer.sourcecheck import crc_of_range, stat_source
from migrate.transfer.tasks import LargeJob

MAX_CORRUPT = 3  # whole-file re-sends after CRC32C mismatches before the item fails


class _Restart(Exception):
    """Inside a step: this session cannot continue; start a new one (match = the precondition to use)."""

    def __init__(self, match: int, corrupt: bool) -> None:
        self.match = match
        self.corrupt = corrupt


class ResumableSteps:
    """Mixed into transfer.copier.Copier (self.gcs, self.cfg, self._call, self._guard, self._existing ...)."""

    def resumable_step(self, job: LargeJob) -> Outcome | dict:
        """One step of a resumable job: an Outcome when it ended, else the session state to record."""
        w = job.work
        state: dict = {}

        def run(tally: Tally) -> Outcome:
            nonlocal state
            try:
                result = self._resumable_step(job, tally)
            except _Restart as restart:
                result = {"kind": RESUMABLE, "uri": None, "offset": 0, "crc": 0, "match": restart.match}
                if restart.corrupt:
                    job.corrupt += 1
                    if job.corrupt > MAX_CORRUPT:
                        return Outcome(w.seq, FAILED, error=f"CRC32C mismatch on {job.corrupt} uploads in a row")
            if isinstance(result, Outcome):
                return result
            state = result
            return Outcome(w.seq, PENDING)

        outcome = self._guard(w, run)
        if outcome.state == PENDING and state and not self.abort.is_set():
            job.retries += outcome.retries
            job.corrupt += outcome.corrupt
            return state
        outcome.retries += job.retries
        outcome.corrupt += job.corrupt
        outcome.uploaded += job.uploaded
        outcome.reused += job.reused
        return outcome

    def _resumable_step(self, job: LargeJob, tally: Tally) -> Outcome | dict:
        w = job.work
        session = job.session or {}
        match = int(session.get("match") or w.replace_generation or 0)
        if not session.get("uri"):
            return self._start_session(job, match, tally)
        uri, size = session["uri"], w.size
        offset, crc = int(session.get("offset") or 0), int(session.get("crc") or 0)
        step = resumable.chunk_size(self.cfg.chunk_size)
        sent = {"body": None}

        def attempt() -> resumable.Persisted | ObjectInfo:
            nonlocal offset, crc
            if sent["body"] is not None and sent["body"].sent:
                self._progress(-sent["body"].sent)  # a retry rewinds what the failed attempt had sent
                sent["body"].sent = 0
            if job.query_first:
                try:
                    answer = resumable.query(self.gcs, uri, size)
                except resumable.SessionGone:
                    raise _Restart(match, corrupt=False) from None
                if isinstance(answer, ObjectInfo):
                    return answer
                if answer.offset != offset:
                    crc = self._crc_at(w.path, offset, crc, answer.offset)
                    if answer.offset > offset and not job.uploaded:
                        job.reused += answer.offset - offset  # persisted by an earlier run
                    offset = answer.offset
                job.query_first = False
            end = min(size, offset + step)
            final_crc = None
            check = None
            if end == size:
                chunk_crc = crc_of_range(w.path, offset, end - offset)
                final_crc = combine(crc, chunk_crc, end - offset)
                if w.crc32c and crc32c_b64(final_crc) != w.crc32c:
                    raise SourceChanged(
                        f"content changed since inventory (CRC32C {w.crc32c} -> {crc32c_b64(final_crc)})"
                    )

                def check(c: int, expected: int = chunk_crc) -> None:
                    stat_source(w)
                    if c != expected:
                        raise SourceChanged("content changed while uploading")

            body = FileBody(
                w.path,
                offset,
                end - offset,
                throttle=self.throttle,
                on_bytes=self._progress,
                abort=self.abort,
                final_check=check,
            )
            sent["body"] = body
            try:
                return resumable.put_chunk(self.gcs, uri, body, first=offset, size=size, final_crc=final_crc)
            except resumable.SessionGone:
                raise _Restart(match, corrupt=False) from None
            except TransportCorruption:
                raise _Restart(match, corrupt=True) from None  # GCS refused the file's CRC32C: send it again
            except Exception:
                job.query_first = True  # the server may hold more (or less) than was acknowledged
                raise

        try:
            answer = self._call(attempt, tally, w.object)
        except PRECONDITION_FAILED:
            return self._existing(w, crc32c_b64(self._crc_at(w.path, 0, 0, size)), tally)
        if isinstance(answer, ObjectInfo):
            return self._finished(job, answer, offset, crc, match)
        body = sent["body"]
        if answer.offset == offset + (body.length if body else 0) and body is not None and body.crc is not None:
            new_crc = combine(crc, body.crc, body.length)
        else:
            new_crc = self._crc_at(w.path, offset, crc, answer.offset)
        job.uploaded += max(0, answer.offset - offset)
        return {"kind": RESUMABLE, "uri": uri, "offset": answer.offset, "crc": new_crc, "match": match}

    def _start_session(self, job: LargeJob, match: int, tally: Tally) -> Outcome | dict:
        w = job.work
        stat_source(w)
        self.writes(w.bucket)
        try:
            uri = self._call(
                lambda: resumable.start_session(
                    self.gcs,
                    w.bucket,
                    w.object,
                    size=w.size,
                    content_type=content_type(w.object),
                    metadata=object_metadata(w.mtime_ns or 0, self.plan_id),
                    crc32c=w.crc32c,
                    if_generation_match=match,
                    storage_class=w.storage_class,
                ),
                tally,
                w.object,
            )
        except PRECONDITION_FAILED:
            crc = w.crc32c or crc32c_b64(self._crc_at(w.path, 0, 0, w.size))
            return self._existing(w, crc, tally)
        job.query_first = False
        return {"kind": RESUMABLE, "uri": uri, "offset": 0, "crc": 0, "match": match}

    def _finished(self, job: LargeJob, info: ObjectInfo, offset: int, crc: int, match: int) -> Outcome:
        """The session finalized: the stored object must be the file (a lenient server may not validate)."""
        w = job.work
        full = crc32c_b64(self._crc_at(w.path, offset, crc, w.size))
        if info.crc32c != full or info.size != w.size:
            # never a delete: a new session replaces exactly this generation
            raise _Restart(info.generation, corrupt=True)
        if offset < w.size and not job.uploaded:
            job.reused += w.size - offset
        return Outcome(w.seq, DONE, generation=info.generation, crc32c=full)

    def _crc_at(self, path: str, known_offset: int, known_crc: int, target: int) -> int:
        """CRC32C of the file's first `target` bytes, from a known prefix CRC where possible."""
        if target >= known_offset:
            return combine(known_crc, crc_of_range(path, known_offset, target - known_offset), target - known_offset)
        return crc_of_range(path, 0, target)

    def cancel_session(self, job: LargeJob) -> None:
        """The resumable job's cleanup when it ends without an object of ours: abandon its session."""
        uri = (job.session or {}).get("uri")
        if uri:
            resumable.cancel(self.gcs, uri)
