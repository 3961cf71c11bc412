"""Copy a plan's objects on a Dask cluster; the driver streams batches out and outcomes into the ledger.

Same contract as transfer/objects.copy_objects: the plan's pending items are streamed a page
at a time, the ledger is written in batches by this thread only, an item is 'done' only from an
outcome saying GCS acknowledged it. The difference is where the copier runs: batches of items of
one source go to workers that mount that source, at most 2 tasks per worker thread in flight
(the scheduler does not queue resource-restricted tasks itself). A large file is a batch of its
own, its parts uploaded by that one task.

A batch whose worker dies is rerun elsewhere by the scheduler; the rerun finds what the first
attempt created (ifGenerationMatch=0 answers 412, the CRC32C matches) and reports it 'done', so
every object has one generation whatever the number of attempts.

A large file on the resumable path has its session started here, through the bucket's write ramp,
and its URI written to the ledger before the task that sends its bytes is submitted; the task (or
its rerun on another worker) asks GCS for the session's persisted offset and sends the rest, and
each acknowledged offset it reports is recorded here (engine.dask_worker.copy_resumable).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import replace

from migrate.config import Config
from migrate.engine.dask_run import DaskEngine
from migrate.engine.leases import lease_for
from migrate.ledger import items
from migrate.ledger.states import NOT_COPIED, OPEN, ItemKind, ItemState
from migrate.plan import Plan
from migrate.progress import Event, Reporter
from migrate.targets.buckets import COMPOSITE, RESUMABLE, BucketSettings
from migrate.targets.gcs import Gcs
from migrate.transfer.composite_steps import part_layout
from migrate.transfer.copier import Copier
from migrate.transfer.dispatch import Dispatch
from migrate.transfer.objects import ObjectsSummary, iter_work
from migrate.transfer.outcome import Outcome
from migrate.transfer.ramp import write_limiter
from migrate.transfer.resumable_steps import MAX_CORRUPT
from migrate.transfer.tasks import LargeJob, Work

BATCH_ITEMS = 64  # items per task at most: Dask costs about 1 ms per task
BATCH_BYTES = 64 * 1024 * 1024
WAIT = 0.25


class _Batches:
    """Open batches per source; sized so every slot gets several tasks even for a small plan."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.open: dict[str, list[Work]] = {}
        self.bytes: dict[str, int] = {}

    def add(self, w: Work) -> list[Work] | None:
        batch = self.open.setdefault(w.source, [])
        batch.append(w)
        self.bytes[w.source] = self.bytes.get(w.source, 0) + w.size
        if len(batch) >= self.size or self.bytes[w.source] >= BATCH_BYTES:
            self.bytes.pop(w.source)
            return self.open.pop(w.source)
        return None

    def drain(self) -> list[list[Work]]:
        out = [b for b in self.open.values() if b]
        self.open.clear()
        self.bytes.clear()
        return out


def copy_objects_dask(
    conn,
    cfg: Config,
    plan: Plan,
    engine: DaskEngine,
    *,
    run_id: int,
    bwlimit: int,
    report: Reporter,
    stop: threading.Event,
    summary: ObjectsSummary,
    buckets: dict[str, BucketSettings] | None = None,
    gcs: Gcs | None = None,
) -> ObjectsSummary:
    """Copy every pending or failed object item of the plan on the cluster; see the module docstring.

    gcs: the driver's client, for the resumable sessions it starts (none needed without large files).
    """
    from migrate.engine.dask_worker import copy_batch

    started = time.monotonic()
    summary.upload_paths = {name: b.describe() for name, b in sorted((buckets or {}).items())}
    d = Dispatch(conn, cfg, plan, None, summary, report, buckets or {})
    sessions = _Sessions(d, cfg, plan.plan_id, gcs, report)
    counts: Counter = Counter()
    works = iter_work(conn, cfg, plan, counts)
    slots = engine.slots
    todo = items.count(conn, plan.plan_id, ItemKind.OBJECT, OPEN)
    # several tasks per slot; under a bandwidth cap fewer, longer ones: a lease changes hands at task ends
    batches = _Batches(max(1, min(BATCH_ITEMS, todo // ((2 if bwlimit else 4) * slots))))
    spec = {"plan_id": plan.plan_id, "run_id": run_id, "bw": lease_for("bw", plan.plan_id, bwlimit, slots)}
    nonce = uuid.uuid4().hex[:8]
    in_flight: dict[str, tuple[list[Work], object]] = {}
    exhausted = False

    def submit(batch: list[Work]) -> None:
        key = f"migrate-obj-{nonce}-{engine.stats.tasks}"
        future = engine.submit(copy_batch, {**spec, "key": key}, batch, key=key, source=batch[0].source)
        in_flight[key] = (batch, future)

    try:
        while True:
            if stop.is_set():
                d.stopping = True
            while len(in_flight) < 2 * slots and not d.stopping and not exhausted:
                w = next(works, None)
                if w is None:
                    exhausted = True
                    for batch in batches.drain():
                        submit(batch)
                elif d.is_large(w):
                    if d.path_for(w) == RESUMABLE:
                        w = sessions.ready(w)
                        if w is not None:  # else it ended already (found in GCS, changed, failed)
                            submit([w])
                        continue
                    if w.upload_state is None:
                        part_size, n_parts = part_layout(w.size, cfg.transfer, None)
                        d.ledger.set_upload_state(w.seq, {"kind": COMPOSITE, "part_size": part_size, "parts": n_parts})
                    submit([w])
                else:
                    full = batches.add(w)
                    if full:
                        submit(full)
            if not in_flight:
                break
            got = engine.next(WAIT)
            if got is not None:
                for w in _handle(got, d, engine, in_flight, run_id, report, sessions):
                    w = None if d.stopping else sessions.restart(w)
                    if w is not None:
                        submit([w])
            d.ledger.maybe_flush()
            engine.poll_workers()
    except BaseException:
        for _, future in in_flight.values():
            future.cancel()
        d.ledger.flush()
        summary.elapsed = time.monotonic() - started
        raise
    d.ledger.flush()
    summary.already_done = counts.get(ItemState.DONE, 0)
    summary.previously_skipped = sum(counts.get(s, 0) for s in NOT_COPIED)
    summary.pending = items.count(conn, plan.plan_id, ItemKind.OBJECT, OPEN) - summary.failed
    summary.halted = d.halted
    summary.planned = items.count(conn, plan.plan_id, ItemKind.OBJECT)
    summary.elapsed = time.monotonic() - started
    return summary


def _handle(
    got: tuple, d: Dispatch, engine: DaskEngine, in_flight: dict, run_id: int, report: Reporter, sessions: _Sessions
) -> list[Work]:
    """Apply one message or finished task to the ledger; returns resumable items whose session must be replaced."""
    kind, payload = got
    if kind == "msg":
        handled = handle_progress(payload, engine, run_id, report)
        # a late message of a task already finished must not revive its item's session state
        if not handled and payload.get("t") == "session" and payload.get("key") in in_flight:
            d.ledger.set_upload_state(int(payload["seq"]), payload["state"])
        return []
    future = payload
    entry = in_flight.pop(future.key, None)
    if entry is None:
        return []
    batch = entry[0]
    engine.stats.finished(future.key)
    result, error = engine.outcome(future)
    restart: list[Work] = []
    if result is not None:
        by_seq = {w.seq: w for w in batch}
        nbytes = 0
        for o in result["outcomes"]:
            w = by_seq[o.seq]
            d.finish(o, w)
            nbytes += o.uploaded
            state = (result.get("restarts") or {}).get(o.seq)
            if state is not None:
                d.ledger.set_upload_state(o.seq, state)
                restart.append(replace(w, upload_state=state))
        engine.stats.credit(result["worker"], items=len(result["outcomes"]), nbytes=nbytes)
        if result["fenced"]:  # another run owns the plan now: these items are its business
            d.stopping = True
    else:
        for w in batch:
            d.finish(Outcome(w.seq, ItemState.PENDING if error == "cancelled" else ItemState.FAILED, error=error), w)
    future.release()
    return restart


class _Sessions:
    """The resumable sessions of large files, started by the driver (through the bucket's write ramp)
    and recorded in the ledger before their bytes flow; the same copier steps as the single-process
    engine (transfer.resumable_steps)."""

    def __init__(self, d: Dispatch, cfg: Config, plan_id: str, gcs: Gcs | None, report: Reporter) -> None:
        self.d = d
        self.cfg = cfg
        self.plan_id = plan_id
        self.gcs = gcs
        self.report = report
        self.copier: Copier | None = None
        self.restarts: Counter = Counter()

    def _copier(self) -> Copier:
        if self.copier is None:
            if self.gcs is None:
                raise RuntimeError("resumable uploads on the Dask engine need the driver's GCS client")
            self.copier = Copier(
                self.gcs,
                self.cfg.transfer,
                self.plan_id,
                throttle=lambda n: None,  # no bytes go from here
                report=self.report,
                abort=threading.Event(),
                writes=write_limiter(self.cfg.transfer.ramp_up, self.cfg.transfer.ramp_start_writes),
            )
        return self.copier

    def ready(self, w: Work) -> Work | None:
        """w with a recorded session (an earlier run's, or a new one), or None when the item ended
        instead (the object is already there, the source changed, the session could not start)."""
        state = w.upload_state if (w.upload_state or {}).get("kind") == RESUMABLE else None
        if state and state.get("uri"):
            return replace(w, upload_state={**state, "resumed": True})  # the task asks GCS what it holds first
        job = LargeJob(w, RESUMABLE, session=state)
        step = self._copier().resumable_step(job)
        if isinstance(step, Outcome):
            self.d.finish(step, w)
            return None
        self.d.ledger.set_upload_state(w.seq, step)  # committed before the task that sends bytes exists
        return replace(w, upload_state=step)

    def restart(self, w: Work) -> Work | None:
        """A worker gave the item back for a new session (expired, or GCS refused its CRC32C)."""
        self.restarts[w.seq] += 1
        if self.restarts[w.seq] > MAX_CORRUPT:
            o = Outcome(w.seq, ItemState.FAILED, error=f"resumable session replaced {MAX_CORRUPT} times in a row")
            self.d.finish(o, w)
            return None
        return self.ready(w)


def handle_progress(msg: dict, engine: DaskEngine, run_id: int, report: Reporter) -> bool:
    """Messages every task sends: attempts (reruns) and throttled progress. False: not one of those."""
    if not isinstance(msg, dict) or msg.get("run") != run_id:
        return True  # an earlier run's orphan: nothing of it counts here
    kind = msg.get("t")
    if kind == "start":
        engine.stats.started(msg["key"], msg["token"])
        return True
    if kind == "progress":
        if msg.get("bytes"):
            report(Event("bytes", n=int(msg["bytes"])))
        for name, error in msg.get("retries") or ():
            report(Event("retry", name=name, data={"error": error}))
        return True
    return False
