"""Large files as parallel composite uploads: parts under the scratch prefix, then one compose.

Only for a STANDARD destination in a bucket without retention policy, default hold, versioning or soft
delete (targets.buckets), where a deleted part is gone for good. Mixed into transfer.copier.Copier.
"""

from __future__ import annotations

from migrate.config import TransferConfig
from migrate.hashing import crc32c_b64, crc32c_concat
from migrate.sources.filebody import FileBody, SourceChanged
from migrate.targets.errors import PRECONDITION_FAILED
from migrate.targets.gcs import MAX_COMPOSE, ObjectInfo, TransportCorruption, content_type, object_metadata, part_prefix
from migrate.transfer.outcome import DONE, PENDING, Outcome, Tally
from migrate.transfer.sourcecheck import crc_of_range, stat_source
from migrate.transfer.tasks import LargeJob, PartResult

MAX_PARTS = MAX_COMPOSE * MAX_COMPOSE  # two levels of compose


class CompositeSteps:
    """prepare_large -> upload_part x n -> compose_large; delete_parts is the job's cleanup hook."""

    def prepare_large(self, job: LargeJob) -> Outcome | dict[int, ObjectInfo]:
        """Check the source; on a resumed item, find the final object or the parts already uploaded."""
        w = job.work

        def run(tally: Tally) -> Outcome:
            stat_source(w)
            if not job.resumed:
                return Outcome(w.seq, PENDING, existed=False)
            final = self._call(lambda: self.gcs.get(w.bucket, w.object), tally, w.object)
            if final is not None and final.generation != w.replace_generation:
                # the compose of an earlier run landed before the run could record it
                crc = w.crc32c or crc32c_b64(crc_of_range(w.path, 0, w.size))
                return self._existing(w, crc, tally)
            prefix = part_prefix(self.plan_id, w.seq)
            found: dict[int, ObjectInfo] = {}
            for info in self._call(lambda: list(self.gcs.list(w.bucket, prefix)), tally, w.object):
                suffix = info.name[len(prefix) :]
                if suffix.isdigit():
                    found[int(suffix)] = info
            job.existing = found
            return Outcome(w.seq, PENDING, existed=True)

        outcome = self._guard(w, run)
        if outcome.state == PENDING and not self.abort.is_set():
            job.retries += outcome.retries
            return job.existing
        return outcome

    def upload_part(self, job: LargeJob, index: int) -> PartResult:
        """Upload one part (or prove an earlier run's copy of it is intact); failures are in .error."""
        tally = Tally()
        try:
            return self._upload_part(job, index, tally)
        except Exception as exc:
            length = min(job.part_size, job.work.size - index * job.part_size)
            return PartResult(index, None, 0, length, retries=tally.retries, error=exc)

    def _upload_part(self, job: LargeJob, index: int, tally: Tally) -> PartResult:
        w = job.work
        offset = index * job.part_size
        length = min(job.part_size, w.size - offset)
        name = part_prefix(self.plan_id, w.seq) + f"{index:05d}"
        existing = job.existing.get(index)
        match = [0]
        # the CRC32C goes into the insert's metadata, ahead of the bytes, for GCS to validate them
        # (https://cloud.google.com/storage/docs/data-validation): read the range once before sending it
        crc = crc_of_range(w.path, offset, length)
        if existing is not None:
            if existing.size == length and existing.crc32c == crc32c_b64(crc):
                return PartResult(index, existing, crc, length, reused=length)
            match[0] = existing.generation
        body = FileBody(
            w.path,
            offset,
            length,
            throttle=self.throttle,
            on_bytes=self._progress,
            abort=self.abort,
            final_check=lambda c: _same_bytes(c, crc),
        )

        def attempt() -> ObjectInfo:
            if body.sent:
                self._progress(-body.sent)
                body.sent = 0
            self.writes(w.bucket)
            try:
                return self.gcs.insert(
                    w.bucket,
                    name,
                    body,
                    content_type="application/octet-stream",
                    crc32c=crc32c_b64(crc),
                    if_generation_match=match[0],
                    # compose wants every source in the destination's class; parts exist only where that is STANDARD
                    storage_class="STANDARD",
                )
            except TransportCorruption as exc:
                if exc.generation is not None:
                    match[0] = exc.generation
                raise

        try:
            info = self._call(attempt, tally, name)
        except PRECONDITION_FAILED:
            current = self._call(lambda: self.gcs.get(w.bucket, name), tally, name)
            crc = body.crc if body.crc is not None else crc_of_range(w.path, offset, length)
            if current is not None and current.size == length and current.crc32c == crc32c_b64(crc):
                return PartResult(index, current, crc, length, reused=length, retries=tally.retries)
            match[0] = current.generation if current else 0
            info = self._call(attempt, tally, name)
        assert body.crc is not None
        job.corrupt += tally.corrupt  # read by the dispatcher thread only after every part is back
        return PartResult(index, info, body.crc, length, uploaded=length, retries=tally.retries)

    def compose_large(self, job: LargeJob) -> Outcome:
        w = job.work

        def run(tally: Tally) -> Outcome:
            parts = [job.parts[i] for i in range(job.n_parts)]
            crc = crc32c_b64(crc32c_concat([(p.crc, p.length) for p in parts]))
            stat_source(w)
            if w.crc32c and crc != w.crc32c:
                raise SourceChanged(f"content changed since inventory (CRC32C {w.crc32c} -> {crc})")
            # compose's ifGenerationMatch guards this on GCS; the explicit look also holds where it
            # is not enforced (fake-gcs-server), for one request per large file
            current = self._call(lambda: self.gcs.get(w.bucket, w.object), tally, w.object)
            if current is not None and current.generation != w.replace_generation:
                outcome = self._existing(w, crc, tally)
                outcome.reused = sum(p.reused for p in parts)
                outcome.uploaded = sum(p.uploaded for p in parts)
                return outcome
            sources = [p.info for p in parts]
            if len(sources) > MAX_COMPOSE:
                prefix = part_prefix(self.plan_id, w.seq)
                groups = [sources[i : i + MAX_COMPOSE] for i in range(0, len(sources), MAX_COMPOSE)]
                sources = [
                    self._call(
                        lambda k=k, g=g: self.gcs.compose(
                            w.bucket,
                            f"{prefix}c{k:03d}",
                            g,
                            content_type="application/octet-stream",
                            storage_class="STANDARD",
                            delete_sources=True,
                        ),
                        tally,
                        w.object,
                    )
                    for k, g in enumerate(groups)
                ]
            match = [w.replace_generation or 0]

            def attempt() -> ObjectInfo:
                self.writes(w.bucket)
                info = self.gcs.compose(
                    w.bucket,
                    w.object,
                    sources,
                    content_type=content_type(w.object),
                    metadata=object_metadata(w.mtime_ns or 0, self.plan_id),
                    if_generation_match=match[0],
                    storage_class=w.storage_class,
                    delete_sources=True,
                )
                if info.crc32c != crc or info.size != w.size:
                    match[0] = info.generation  # replaced by the retry, under a precondition on it
                    raise TransportCorruption(
                        f"composed object has CRC32C {info.crc32c}, the file {crc}", generation=info.generation
                    )
                return info

            try:
                info = self._call(attempt, tally, w.object)
            except PRECONDITION_FAILED:
                outcome = self._existing(w, crc, tally)
            else:
                outcome = Outcome(w.seq, DONE, generation=info.generation, crc32c=crc)
            outcome.uploaded = sum(p.uploaded for p in parts)
            outcome.reused = sum(p.reused for p in parts)
            return outcome

        outcome = self._guard(w, run)
        outcome.retries += job.retries
        return outcome

    def delete_parts(self, job: LargeJob) -> int:
        """The composite job's cleanup: delete what is left of its parts (compose may have deleted them).

        Best effort: what fails here is left to the end-of-run sweep. Deletes only under the scratch
        prefix, where the least-privilege role may delete.
        """
        w = job.work
        prefix = part_prefix(self.plan_id, w.seq)
        tally = Tally()
        deleted = 0
        try:
            names = [i.name for i in self._call(lambda: list(self.gcs.list(w.bucket, prefix)), tally, prefix)]
        except Exception:
            return 0
        for name in names:
            try:
                self.writes(w.bucket)
                deleted += bool(self._call(lambda name=name: self.gcs.delete(w.bucket, name), tally, name))
            except Exception:
                continue
        return deleted


def _same_bytes(streamed: int, expected: int) -> None:
    if streamed != expected:
        raise SourceChanged("content changed while uploading")


def part_layout(size: int, cfg: TransferConfig, state: dict | None) -> tuple[int, int]:
    """(part size, number of parts): chunk_size parts, grown so no file needs more than MAX_PARTS."""
    if state and int(state.get("part_size") or 0) > 0:
        part_size = int(state["part_size"])  # keep an interrupted upload's layout, whatever the config says now
    else:
        part_size = max(cfg.chunk_size, -(-size // MAX_PARTS), 1)
        part_size = -(-part_size // (256 * 1024)) * (256 * 1024)
    return part_size, max(1, -(-size // part_size))
