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
from migrate.transfer.composite_steps import part_layout
from migrate.transfer.dispatch import Dispatch
from migrate.transfer.objects import ObjectsSummary, iter_work
from migrate.transfer.outcome import Outcome
from migrate.transfer.tasks import Work

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
) -> ObjectsSummary:
    """Copy every pending or failed object item of the plan on the cluster; see the module docstring."""
    from migrate.engine.dask_worker import copy_batch

    started = time.monotonic()
    summary.upload_paths = {name: b.describe() for name, b in sorted((buckets or {}).items())}
    d = Dispatch(conn, cfg, plan, None, summary, report, buckets or {})
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
                        # told to the worker, not recorded: see copy_large
                        w = replace(w, upload_state={"kind": RESUMABLE})
                    elif w.upload_state is None:
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
                _handle(got, d, engine, in_flight, run_id, report)
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


def _handle(got: tuple, d: Dispatch, engine: DaskEngine, in_flight: dict, run_id: int, report: Reporter) -> None:
    kind, payload = got
    if kind == "msg":
        handle_progress(payload, engine, run_id, report)
        return
    future = payload
    entry = in_flight.pop(future.key, None)
    if entry is None:
        return
    batch = entry[0]
    engine.stats.finished(future.key)
    result, error = engine.outcome(future)
    if result is not None:
        by_seq = {w.seq: w for w in batch}
        nbytes = 0
        for o in result["outcomes"]:
            d.finish(o, by_seq[o.seq])
            nbytes += o.uploaded
        engine.stats.credit(result["worker"], items=len(result["outcomes"]), nbytes=nbytes)
        if result["fenced"]:  # another run owns the plan now: these items are its business
            d.stopping = True
    else:
        for w in batch:
            d.finish(Outcome(w.seq, ItemState.PENDING if error == "cancelled" else ItemState.FAILED, error=error), w)
    future.release()


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
