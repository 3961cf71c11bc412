"""One listener log file replayed inside a Dask task; the driver keeps the watermark.

Start: the task reads where to begin from the driver's committed watermark (the Variable
`wm_var`, written by the driver after every ledger commit), never from its arguments, so a rerun
on another worker resumes exactly where the ledger says.

While running: every acknowledged prefix (byte offset, line, absolute counts, the quarantined
records below it) goes to the driver as a message; the driver writes the quarantine, commits the
watermark, then publishes the new committed state in the Variable.

Duplicate bound: a task never has more than `ceiling` events published above the driver's
committed watermark (it waits, polling the Variable, when it would). So an attempt that dies
(worker killed, driver killed, fenced) leaves at most `ceiling` events that a later attempt
sends again; the driver counts each attempt in `offsets.interrupted` and `ceiling` in
`offsets.in_flight_max`, the same accounting as the single-process replay.
"""

from __future__ import annotations

import time
from dataclasses import replace

from distributed import Variable

from migrate.engine.dask_worker import Messages, current_plugin, fenced, read_fence
from migrate.engine.leases import held
from migrate.errors import SourceError
from migrate.ledger.states import ItemState
from migrate.retry import describe
from migrate.sources.eventlog import iter_records
from migrate.targets.pubsub import EventPublisher, topic_path
from migrate.transfer.replay_state import (
    COMMIT_EVERY,
    COMMIT_INTERVAL,
    FileState,
    Window,
    attributes_for,
    changed_since_plan,
)

FENCE_EVERY = 1000  # records between fence checks
POLL = 0.02  # seconds between looks at the committed watermark while over the ceiling
STALL = 300.0  # seconds without a commit before a task stops waiting for its driver


class _Fenced(Exception):
    pass


class _Task:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.plan_id, self.run_id = spec["plan_id"], spec["run_id"]
        self.plugin = current_plugin(self.plan_id)
        self.msgs = Messages(self.plan_id, self.run_id, spec["key"])
        self.wm_var = Variable(spec["wm_var"])
        self.item = spec["item"]
        self.path: str = self.item.relpath
        self.ceiling = max(1, int(spec["ceiling"]))
        self.quarantined: list[list] = []  # records read since the last report
        self.total_events = 0
        self.total_quarantined = 0
        self.committed = 0
        self.stopped = False

    def result(self, state: ItemState, **fields) -> dict:
        """The task's answer: how it left the file, as an item state (PENDING when stopped or fenced)."""
        return {"state": state, "worker": self.msgs.worker.address, "token": self.msgs.token, **fields}

    def check_fence(self) -> None:
        fence = read_fence(self.plan_id)
        if fence.get("run") != self.run_id:
            raise _Fenced()
        self.stopped = self.stopped or bool(fence.get("stop"))

    def run(self) -> dict:
        if fenced(self.plan_id, self.run_id):
            return self.result(ItemState.PENDING, fenced=True)
        start = self.wm_var.get(timeout=10)
        self.base = start
        self.committed = int(start["published"])
        self.msgs.start()
        changed = changed_since_plan(self.path, self.item)
        if changed:
            return self.result(ItemState.SOURCE_CHANGED, error=changed, clean=True, last_msg=self.msgs.sent)
        with held(self.spec.get("eps")):
            return self.replay(start)

    def replay(self, start: dict) -> dict:
        spec = self.spec
        cfg = self.plugin.cfg
        listener = spec["listener"]
        pubsub_cfg = cfg.pubsub
        if spec.get("eps") is not None:
            pubsub_cfg = replace(pubsub_cfg, events_per_second=spec["eps"].share)
        window = Window(cfg.pubsub.max_in_flight_messages)
        st = FileState(self.item, listener, int(start["watermark"]), int(start["line"]), window)
        st.committed_watermark = int(start["watermark"])

        def on_done(tokens: list, message_ids, exc) -> None:
            seqs = [seq for _, seq in tokens]
            if exc is None:
                st.ack(seqs)
            else:
                st.fail(seqs, exc)

        def on_retry(exc: BaseException, attempt: int, tokens: list) -> None:
            st.retries += 1
            st.resent += len(tokens)

        pub = EventPublisher(
            topic_path(cfg.project.id, self.item.topic or listener.topic),
            pubsub_cfg,
            cfg.transfer,
            on_done=on_done,
            on_retry=on_retry,
            client=self.plugin.publisher_client(),
        )
        if pub.bucket is not None:
            pub.bucket.consume(int(pub.bucket.burst))  # a fresh lease brings no burst with it
        fenced_now = False
        try:
            self.read(st, pub, listener)
        except _Fenced:
            fenced_now = True
        finally:
            pub.close()  # waits for every request in flight
        if fenced_now:
            return self.result(ItemState.PENDING, fenced=True)
        self.report(st)
        out = {"last_msg": self.msgs.sent, "retries": st.retries, "resent": st.resent}
        if st.failed is not None:
            err = st.failed.message if isinstance(st.failed, SourceError) else describe(st.failed)
            return self.result(ItemState.FAILED, error=err, **out)
        if not st.reader_done:
            return self.result(ItemState.PENDING, clean=True, **out)
        changed = changed_since_plan(self.path, self.item)
        if changed:
            return self.result(ItemState.SOURCE_CHANGED, error=f"changed while replaying: {changed}", clean=True, **out)
        return self.result(ItemState.DONE, anomaly=st.anomaly, clean=True, **out)

    def read(self, st: FileState, pub: EventPublisher, listener) -> None:
        pid, lname = self.plan_id, listener.name
        fixed = {"plan_id": pid, "listener": lname}
        attributes = attributes_for(self.path)
        reader = iter_records(self.path, listener, st.watermark, st.line)
        planned_size = self.item.size
        since_report = since_fence = 0
        last_report = time.monotonic()
        try:
            for rec in reader:
                if self.stopped or st.failed is not None:
                    break
                if not reader.is_gzip and rec.end_offset > planned_size:
                    st.reader_done = True  # appended after planning: the next plan's lines
                    break
                since_report += 1
                since_fence += 1
                if since_fence >= FENCE_EVERY:
                    since_fence = 0
                    self.check_fence()
                    if self.stopped:
                        break
                if rec.error is not None:
                    self.quarantined.append([rec.line, rec.offset, rec.error, rec.data, rec.error_kind or ""])
                    st.register_quarantined(rec)
                else:
                    if self.total_above(st) >= self.ceiling or window_full(st):
                        self.wait_below_ceiling(st, pub)
                        if self.stopped or st.failed is not None:
                            break
                    attrs = attributes(rec)
                    seq = st.register_event(rec)
                    pub.publish(rec.data, attrs, (st, seq), rec.ordering_key, fixed)
                if since_report >= COMMIT_EVERY or (
                    since_report & 127 == 0 and time.monotonic() - last_report > COMMIT_INTERVAL
                ):
                    since_report = 0
                    last_report = time.monotonic()
                    self.report(st)
            else:
                st.reader_done = True
                st.anomaly = reader.anomaly
        except SourceError as exc:
            with st.lock:
                if st.failed is None:
                    st.failed = exc
        pub.flush()
        pub.wait()

    def total_above(self, st: FileState) -> int:
        """Events of this file published (or in flight) above the driver's committed watermark."""
        return int(self.base["published"]) + st.registered - self.committed

    def wait_below_ceiling(self, st: FileState, pub: EventPublisher) -> None:
        """Wait for the driver to commit; a driver gone for STALL seconds means stop (acks still drain)."""
        pub.flush()
        polls = 0
        last, since = self.committed, time.monotonic()
        while True:
            self.report(st)
            value = self.wm_var.get(timeout=10)
            self.committed = int(value["published"])
            if self.committed != last:
                last, since = self.committed, time.monotonic()
            elif time.monotonic() - since > STALL:
                self.stopped = True
            if self.total_above(st) < self.ceiling and not window_full(st):
                return
            polls += 1
            if polls % 25 == 0:
                self.check_fence()
            if self.stopped or st.failed is not None:
                return
            time.sleep(POLL)

    def report(self, st: FileState) -> None:
        """Send the acknowledged prefix (absolute position and counts) with its quarantined records."""
        wm, line, events, nbytes, quarantined = st.take()
        records, self.quarantined = self.quarantined, []
        if not events and not quarantined and not records and wm == st.committed_watermark:
            return
        self.total_events += events
        self.total_quarantined += quarantined
        st.committed_watermark = wm
        self.msgs.send(
            "wm",
            watermark=wm,
            line=line,
            published=int(self.base["published"]) + self.total_events,
            quarantined=int(self.base["quarantined"]) + self.total_quarantined,
            events=events,
            bytes=nbytes,
            records=records,
        )


def window_full(st: FileState) -> bool:
    return st.window.full()


def replay_one(spec: dict) -> dict:
    return _Task(spec).run()
