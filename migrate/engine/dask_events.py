"""Replay a plan's listener logs on a Dask cluster; watermarks advance on the driver only.

One task per log file (a file is itself a batch of events), restricted to workers that mount its
listener. Files of a listener with `ordering_key_field` form one sequential chain, in plan
order: events sharing an ordering key keep their order across rotated files. Other files run
side by side, at most 2 tasks per worker thread.

Per file, the driver: counts the attempt in `offsets.interrupted` and raises
`offsets.in_flight_max` to the ceiling, writes the committed position to the file's Variable,
submits the task; then for each acknowledged prefix a worker reports, writes the quarantined
records (fsync), commits the watermark and publishes the new committed position in the Variable.
A rerun (its worker died) announces itself with a new attempt token: it is counted as one more
attempt, and only the newest attempt's reports are applied.

Duplicate bound: each attempt that did not end cleanly may leave at most its ceiling,
min(pubsub.max_in_flight_messages + 1000, events left), of events a later attempt re-sends, plus
the messages of re-sent requests; `max_possible_duplicates` reports sum(interrupted *
in_flight_max) + re-sent messages, as the single-process replay does.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from migrate.config import Config
from migrate.engine.dask_objects import WAIT, handle_progress
from migrate.engine.dask_run import DaskEngine
from migrate.engine.leases import lease_for
from migrate.ledger import items, offsets, transaction
from migrate.ledger.items import EventFile
from migrate.ledger.states import OPEN, ItemState
from migrate.plan import Plan
from migrate.progress import Event, Reporter
from migrate.quarantine import Quarantine
from migrate.transfer.replay_state import COMMIT_EVERY, ReplaySummary

LATE_REPORTS = 30.0  # seconds a finished task's last reports may take to arrive


@dataclass
class _File:
    key: str
    item: EventFile
    chain: deque
    wm_var: object = None
    token: str | None = None
    last_n: int = 0
    watermark: int = 0
    line: int = 0
    published: int = 0
    quarantined: int = 0
    result: dict | None = None
    parked_at: float = 0.0
    listener: str = ""
    extra: dict = field(default_factory=dict)


class _Driver:
    def __init__(self, conn, cfg: Config, plan: Plan, engine: DaskEngine, run_id: int, report: Reporter, stop):
        self.conn, self.cfg, self.plan, self.engine = conn, cfg, plan, engine
        self.run_id, self.report, self.stop = run_id, report, stop
        self.pid = plan.plan_id
        self.summary = ReplaySummary()
        self.files: dict[str, _File] = {}
        self.resent = 0
        self.retries = 0
        self.ready: deque[deque] = deque()
        self.ceiling = cfg.pubsub.max_in_flight_messages + COMMIT_EVERY
        self.events_per_item = plan.events_per_item()
        self.eps = lease_for("eps", plan.plan_id, cfg.pubsub.events_per_second, engine.slots)
        self.nonce = uuid.uuid4().hex[:8]
        self.quarantine: Quarantine | None = None

    def offsets(self, path: str) -> offsets.Offsets | None:
        return offsets.get(self.conn, self.pid, path)

    # --- chains and submission -----------------------------------------------------------------

    def chains(self, logs: Sequence[EventFile]) -> list[deque]:
        keyed: dict[str, deque] = {}
        out: list[deque] = []
        for it in logs:
            try:
                listener = self.cfg.listener_source(it.source)
            except KeyError:
                self.fail(it, f"listener {it.source!r} is not in the config any more")
                continue
            if listener.ordering_key_field:
                if listener.name not in keyed:
                    keyed[listener.name] = deque()
                    out.append(keyed[listener.name])
                keyed[listener.name].append(it)
            else:
                out.append(deque([it]))
        return out

    def start(self, chain: deque) -> bool:
        """Submit the chain's next file not done yet; False when the chain has none left."""
        from migrate.engine.dask_worker import replay_file

        while chain:
            item = chain.popleft()
            path = item.relpath
            row = self.offsets(path)
            if row is not None and row.done:
                if item.state != ItemState.DONE:
                    self.set_item(item, ItemState.DONE, None)
                continue
            total = self.events_per_item.get(item.seq)
            published = row.published if row else 0
            ceiling = self.ceiling if total is None else min(self.ceiling, max(0, total - published))
            with transaction(self.conn):
                self.count_attempt(item, ceiling)
            row = self.offsets(path)
            assert row is not None
            key = f"migrate-ev-{self.nonce}-{item.seq}"
            f = _File(key, item, chain, listener=item.source)
            f.watermark, f.line, f.published, f.quarantined = (
                row.watermark,
                row.line,
                row.published,
                row.quarantined,
            )
            f.wm_var = self.engine.variable(f"migrate-wm-{self.pid}-{item.seq}")
            f.wm_var.set(self.position(f))
            self.files[key] = f
            listener = self.cfg.listener_source(item.source)
            spec = {
                "plan_id": self.pid,
                "run_id": self.run_id,
                "key": key,
                "wm_var": f"migrate-wm-{self.pid}-{item.seq}",
                "item": item,
                "listener": listener,
                "ceiling": max(1, ceiling),
                "eps": self.eps,
            }
            self.engine.submit(replay_file, spec, key=key, source=item.source)
            return True
        return False

    def count_attempt(self, item: EventFile, ceiling: int = 0) -> None:
        """Inside a transaction: one more attempt that may end unclean, and its duplicate ceiling."""
        offsets.begin(self.conn, self.pid, item.source, item.relpath, ceiling)
        items.count_attempt(self.conn, self.pid, item.seq)

    @staticmethod
    def position(f: _File) -> dict:
        return {"watermark": f.watermark, "line": f.line, "published": f.published, "quarantined": f.quarantined}

    # --- messages ------------------------------------------------------------------------------

    def on_message(self, msg: dict) -> None:
        if handle_progress(msg, self.engine, self.run_id, self.report) and msg.get("t") != "start":
            return  # progress, or an orphan's message
        f = self.files.get(msg.get("key", ""))
        if f is None:
            return
        if msg["t"] == "start":
            if f.token is not None and msg["token"] != f.token:
                with transaction(self.conn):  # a rerun: the dead attempt stays counted in `interrupted`
                    self.count_attempt(f.item)
            f.token, f.last_n = msg["token"], msg["n"]
            self.maybe_finish(f)  # its result may have come first
            return
        if msg["t"] != "wm" or msg["token"] != f.token:
            return
        f.last_n = msg["n"]
        if msg["watermark"] >= f.watermark:
            self.commit(f, msg)
        self.maybe_finish(f)

    def commit(self, f: _File, msg: dict) -> None:
        path = f.item.relpath
        assert self.quarantine is not None
        for line, offset, error, data, kind in msg.get("records") or ():
            self.quarantine.add(path, line, offset, error, data, listener=f.listener, kind=kind)
        self.quarantine.sync()  # quarantined records are durable before a watermark passes them
        with transaction(self.conn):
            offsets.set_position(
                self.conn, self.pid, path, msg["watermark"], msg["line"], msg["published"], msg["quarantined"]
            )
        new_q = msg["quarantined"] - f.quarantined
        f.watermark, f.line, f.published, f.quarantined = (
            msg["watermark"],
            msg["line"],
            msg["published"],
            msg["quarantined"],
        )
        f.wm_var.set(self.position(f))
        events, nbytes = int(msg.get("events", 0)), int(msg.get("bytes", 0))
        self.summary.events += events
        self.summary.bytes += nbytes
        self.summary.quarantined += max(0, new_q)
        if events:
            self.report(Event("events", name=path, n=events, data={"bytes": nbytes}))
        if new_q > 0:
            self.report(Event("quarantined", name=path, n=new_q))

    # --- results -------------------------------------------------------------------------------

    def on_done(self, future) -> None:
        f = self.files.get(future.key)
        if f is None:
            return
        result, error = self.engine.outcome(future)
        f.result = result if result is not None else {"state": ItemState.FAILED, "error": error, "clean": False}
        future.release()
        f.parked_at = time.monotonic()
        self.maybe_finish(f)

    def maybe_finish(self, f: _File, *, timed_out: bool = False) -> None:
        res = f.result
        if res is None:
            return
        if res.get("token") not in (None, f.token) or int(res.get("last_msg", 0)) > f.last_n:
            if not timed_out:
                return  # its last reports are still on their way
            res = {"state": ItemState.PENDING, "clean": False}
        self.files.pop(f.key)
        self.engine.stats.finished(f.key)
        if res.get("worker"):
            self.engine.stats.credit(res["worker"], items=1, events=f.published)
        self.finish(f, res)
        try:
            f.wm_var.delete()
        except Exception:
            pass

    def finish(self, f: _File, res: dict) -> None:
        item, path, state = f.item, f.item.relpath, res["state"]
        self.resent += int(res.get("resent", 0))
        self.retries += int(res.get("retries", 0))
        with transaction(self.conn):
            if res.get("retries"):
                items.add_retries(self.conn, self.pid, item.seq, res["retries"])
            if res.get("resent"):
                offsets.add_resent(self.conn, self.pid, path, res["resent"])
            if res.get("clean"):
                offsets.end_clean(self.conn, self.pid, path)
            if state == ItemState.DONE:
                offsets.mark_done(self.conn, self.pid, path)
                self.set_item(item, ItemState.DONE, res.get("anomaly"), tx=False)
        assert self.quarantine is not None
        self.quarantine.forget_below(path, f.watermark)
        if state == ItemState.DONE:
            self.summary.files_done += 1
            if res.get("anomaly"):
                self.summary.anomalies.append(f"{path}: {res['anomaly']}")
        elif state == ItemState.SOURCE_CHANGED:
            self.set_item(item, ItemState.SOURCE_CHANGED, res.get("error"))
            self.summary.files_changed += 1
            self.report(Event("source_changed", name=path, data={"reason": res.get("error")}))
        elif state == ItemState.FAILED:
            self.fail(item, res.get("error") or "failed")
            self.report(Event("object_failed", name=path, data={"error": res.get("error")}))
        if state in OPEN:  # failed, or pending (stopped, or fenced: an orphan of an older run)
            # a chain stops at a file that did not finish: the files after it keep their order for the next run
            self.summary.files_pending += (state != ItemState.FAILED) + len(f.chain)
            f.chain.clear()
        elif f.chain and not self.stop.is_set():
            self.ready.appendleft(f.chain)  # the chain's next file, now that this one is finished

    def set_item(self, item: EventFile, state: ItemState, error: str | None, tx: bool = True) -> None:
        if tx:
            with transaction(self.conn):
                items.set_state(self.conn, self.pid, item.seq, state, error)
        else:
            items.set_state(self.conn, self.pid, item.seq, state, error)

    def fail(self, item: EventFile, error: str) -> None:
        self.set_item(item, ItemState.FAILED, error)
        self.summary.files_failed += 1
        self.summary.errors.append(f"{item.relpath}: {error}")

    # --- main loop -----------------------------------------------------------------------------

    def run(self, logs: Sequence[EventFile]) -> ReplaySummary:
        resume = {}
        for it in logs:
            row = self.offsets(it.relpath)
            resume[it.relpath] = row.watermark if row else 0
        self.quarantine = Quarantine(self.cfg.project.state_dir, self.pid, resume)
        self.ready = deque(self.chains(logs))
        stopping = False
        try:
            while True:
                if self.stop.is_set() and not stopping:
                    stopping = True
                    self.engine.set_fence(stop=True)  # tasks finish what is in flight and report
                    self.summary.files_pending += sum(len(c) for c in self.ready)
                    self.ready.clear()
                while self.ready and len(self.files) < 2 * self.engine.slots and not stopping:
                    self.start(self.ready.popleft())
                if not self.files and not self.ready:
                    break
                got = self.engine.next(WAIT)
                if got is not None:
                    kind, payload = got
                    if kind == "msg":
                        self.on_message(payload)
                    else:
                        self.on_done(payload)
                for f in list(self.files.values()):
                    if f.result is not None and time.monotonic() - f.parked_at > LATE_REPORTS:
                        self.maybe_finish(f, timed_out=True)
                self.engine.poll_workers()
        except BaseException:
            try:  # aborted: tasks on a long-lived cluster finish what is in flight and stop
                self.engine.set_fence(stop=True)
            except Exception:
                pass
            raise
        finally:
            self.quarantine.close()
        self.summary.interrupted = self.stop.is_set()
        self.summary.retries = self.retries
        self.summary.max_possible_duplicates = offsets.duplicate_bound(self.conn, self.pid) + self.resent
        return self.summary


def replay_events_dask(
    conn, cfg: Config, plan: Plan, logs: Sequence[EventFile], engine: DaskEngine, *, run_id: int, report, stop
) -> ReplaySummary:
    """Publish the events of `logs` (the plan's log files in the ledger) on the cluster."""
    stop = stop if stop is not None else threading.Event()
    todo = [it for it in logs if it.state != ItemState.DONE]
    return _Driver(conn, cfg, plan, engine, run_id, report, stop).run(todo)
