"""The dispatcher of the object copy: turns items into typed tasks (transfer.tasks) and their results
into ledger rows, in batches. It runs in the calling thread only and is the ledger's one writer; each
task runs on the pool (copier.Copier) and comes back here.
"""

from __future__ import annotations

import json
import time
from collections import deque

from migrate.config import Config
from migrate.ledger import now, transaction
from migrate.ledger.states import NOT_COPIED, RUN_PROBLEMS, SETTLED
from migrate.plan import Plan
from migrate.progress import Event, Reporter
from migrate.targets.buckets import COMPOSITE, RESUMABLE, BucketSettings
from migrate.transfer.composite_steps import part_layout
from migrate.transfer.copier import Copier
from migrate.transfer.executor import BoundedExecutor, Done
from migrate.transfer.outcome import DONE, FAILED, PENDING, SOURCE_CHANGED, Outcome, outcome_of
from migrate.transfer.summary import FAILURES_KEPT, ObjectsSummary
from migrate.transfer.tasks import (
    Cleanup,
    Compose,
    CopyOne,
    LargeJob,
    PrepareLarge,
    ResumableStep,
    Task,
    UploadPart,
    Work,
)

FLUSH_EVERY = 500  # ledger rows per batched write
FLUSH_SECONDS = 1.0


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
        if o.state == PENDING:
            if o.retries:
                self.counts.append((o.retries, t, self.plan_id, o.seq))
            return
        clear = o.state in SETTLED
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
        """Written at once: a large upload's resume state (composite layout, or resumable session URI and
        acknowledged offset) must be in the ledger before the bytes it describes are sent."""
        self.conn.execute(
            "UPDATE items SET upload_state=?, updated_at=? WHERE plan_id=? AND seq=?",
            (json.dumps(state, sort_keys=True), now(), self.plan_id, seq),
        )


# --- the dispatcher -----------------------------------------------------------------------------


class Dispatch:
    """Turns items into tasks and results into ledger rows; runs in the calling thread only."""

    def __init__(
        self,
        conn,
        cfg: Config,
        plan: Plan,
        copier: Copier,
        summary: ObjectsSummary,
        report: Reporter,
        buckets: dict[str, BucketSettings],
    ):
        self.conn = conn
        self.cfg = cfg
        self.plan = plan
        self.copier = copier
        self.summary = summary
        self.report = report
        self.buckets = buckets
        self.ledger = LedgerBatch(conn, plan.plan_id)
        self.jobs: dict[int, LargeJob] = {}
        self.ready: deque[Task] = deque()  # follow-up tasks of large items
        self.stopping = False
        self.halted: str | None = None  # why the run stopped on its own
        self.transient_streak = 0  # items failed in a row on retryable errors, their retries exhausted
        self.streak_limit = max(10, 2 * cfg.transfer.workers)

    def is_large(self, w: Work) -> bool:
        return w.upload_state is not None or w.size >= max(self.cfg.transfer.large_file_threshold, 1)

    def path_for(self, w: Work) -> str:
        """An interrupted upload keeps its path where it still may; unknown buckets get resumable."""
        settings = self.buckets.get(w.bucket)
        allowed = settings.path_for(w.storage_class) if settings is not None else RESUMABLE
        recorded = (w.upload_state or {}).get("kind")
        return RESUMABLE if RESUMABLE in (recorded, allowed) else COMPOSITE

    def start(self, w: Work) -> Task:
        if not self.is_large(w):
            return CopyOne(w)
        if self.path_for(w) == RESUMABLE:
            session = w.upload_state if (w.upload_state or {}).get("kind") == RESUMABLE else None
            job = LargeJob(w, RESUMABLE, session=session, resumed=session is not None)
            job.query_first = bool(session and session.get("uri"))
            job.reused = int((session or {}).get("offset") or 0) if job.query_first else 0  # acknowledged earlier
            job.cleanup = lambda job=job: self.copier.cancel_session(job)
            self.jobs[w.seq] = job
            return ResumableStep(job)
        state = w.upload_state if (w.upload_state or {}).get("kind") == COMPOSITE else None
        part_size, n_parts = part_layout(w.size, self.cfg.transfer, state)
        job = LargeJob(w, COMPOSITE, part_size, n_parts, resumed=state is not None)
        if state is None:
            self.ledger.set_upload_state(w.seq, {"kind": COMPOSITE, "part_size": part_size, "parts": n_parts})
        job.cleanup = lambda job=job: self.copier.delete_parts(job)  # registered before the first part exists
        self.jobs[w.seq] = job
        return PrepareLarge(job)

    def next_ready(self) -> Task | None:
        """The next follow-up task worth starting (parts of a failed or stopped job are dropped)."""
        while self.ready:
            task = self.ready.popleft()
            if isinstance(task, UploadPart) and (task.job.error is not None or self.stopping):
                task.job.outstanding -= 1
                self.settle(task.job)
                continue
            if isinstance(task, ResumableStep) and self.stopping:
                job = task.job  # its session and offset are in the ledger: the next run resumes there
                self.finish_large(job, Outcome(job.work.seq, PENDING, retries=job.retries, corrupt=job.corrupt))
                continue
            return task
        return None

    def handle(self, done: Done) -> None:
        task: Task = done.tag
        if isinstance(task, Cleanup):
            # best effort (what it could not remove, the end-of-run sweep takes); the item's ending is
            # recorded only now, so a run killed before the cleanup leaves the item open and the next
            # run finds the object and cleans up then
            self.finish(task.job.ending, task.job.work)
            return
        if isinstance(task, CopyOne):
            result = done.result if done.error is None else outcome_of(task.work.seq, done.error, task.work.path)
            self.finish(result, task.work)
            return
        job = task.job
        seq = job.work.seq
        if done.error is not None and not isinstance(task, UploadPart):
            self.finish_large(job, outcome_of(seq, done.error, job.work.path))
        elif isinstance(task, PrepareLarge):
            if isinstance(done.result, Outcome):
                self.finish_large(job, done.result)
            elif self.stopping:
                self.finish_large(job, Outcome(seq, PENDING, retries=job.retries))
            else:
                job.outstanding = job.n_parts
                self.ready.extend(UploadPart(job, index) for index in range(job.n_parts))
        elif isinstance(task, UploadPart):
            job.outstanding -= 1
            err = done.error
            if err is None:
                job.retries += done.result.retries
                err = done.result.error
                if err is None:
                    job.parts[task.index] = done.result
            if err is not None and job.error is None:
                job.error = outcome_of(seq, err, job.work.path)
            self.settle(job)
        elif isinstance(task, Compose):
            self.finish_large(job, done.result)
        elif isinstance(task, ResumableStep):
            if isinstance(done.result, Outcome):
                self.finish_large(job, done.result)
                return
            job.session = done.result
            self.ledger.set_upload_state(seq, done.result)  # committed before the next chunk is sent
            if self.stopping:
                self.finish_large(job, Outcome(seq, PENDING, retries=job.retries, corrupt=job.corrupt))
            else:
                self.ready.appendleft(ResumableStep(job))

    def settle(self, job: LargeJob) -> None:
        """Once no part of the job is queued or running: compose it, or record why it cannot be."""
        if job.outstanding > 0:
            return
        if job.error is not None:
            job.error.retries += job.retries
            job.error.uploaded = sum(p.uploaded for p in job.parts.values())
            self.finish_large(job, job.error)
        elif len(job.parts) == job.n_parts:
            self.ready.appendleft(Compose(job))
        else:  # stopped: the parts uploaded so far stay for the next run
            self.finish_large(job, Outcome(job.work.seq, PENDING, retries=job.retries))

    def finish_large(self, job: LargeJob, outcome: Outcome) -> None:
        """The job's one cleanup hook runs when it ended for good; pending and failed jobs keep their
        parts or session for the next run."""
        self.jobs.pop(job.work.seq, None)
        if job.kind == COMPOSITE:
            outcome.corrupt += job.corrupt
        ended = outcome.state in SETTLED
        abandoned = outcome.state in NOT_COPIED
        if job.cleanup is not None and (abandoned or (ended and job.kind == COMPOSITE)):
            job.ending = outcome
            self.ready.append(Cleanup(job))
            return
        self.finish(outcome, job.work)

    def finish(self, o: Outcome, w: Work) -> None:
        s = self.summary
        s.retries += o.retries
        s.corrupt_resent += o.corrupt
        s.bytes += o.uploaded
        s.reused_bytes += o.reused
        self.ledger.add(o)
        name = f"gs://{w.bucket}/{w.object}"
        if o.state == FAILED and o.transient:
            self.transient_streak += 1
            if self.transient_streak >= self.streak_limit and self.halted is None:
                # the target, not the items, is failing: more items would each wait out a full retry budget
                self.halted = (
                    f"stopped early: {self.transient_streak} items in a row failed after their retries"
                    f" (last: {o.error}); GCS looks unavailable. The run is resumable: run the same command again"
                )
                self.stopping = True
        elif o.state != PENDING:
            self.transient_streak = 0
        if o.state == DONE:
            s.done += 1
            if o.existed:
                s.existed += 1
            else:
                s.uploaded += 1
            self.report(Event("object_done", name=name, n=w.size, data={"reused": o.reused}))
        elif o.state in RUN_PROBLEMS:
            if o.state == FAILED:
                s.failed += 1
            elif o.state == SOURCE_CHANGED:
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
            kind = "source_changed" if o.state == SOURCE_CHANGED else "object_failed"
            self.report(Event(kind, name=name, data={"error": o.error, "state": o.state}))
        self.ledger.maybe_flush()


def submit(ex: BoundedExecutor, copier: Copier, task: Task) -> None:
    """Each task type names the copier method that runs it; the task itself is the tag."""
    if isinstance(task, CopyOne):
        ex.submit(task, copier.copy_one, task.work)
    elif isinstance(task, PrepareLarge):
        ex.submit(task, copier.prepare_large, task.job)
    elif isinstance(task, UploadPart):
        ex.submit(task, copier.upload_part, task.job, task.index)
    elif isinstance(task, Compose):
        ex.submit(task, copier.compose_large, task.job)
    elif isinstance(task, ResumableStep):
        ex.submit(task, copier.resumable_step, task.job)
    else:
        ex.submit(task, task.job.cleanup)
