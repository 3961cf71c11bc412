"""Replay a plan's listener log files into Pub/Sub, with per-file watermarks in the ledger.

For each `kind='events'` item: check the file is unchanged since planning, resume at its
watermark, publish every valid record, quarantine every bad one, and advance the watermark only
over the contiguous prefix of records that are acknowledged (or quarantined). Acks arrive out of
order from several sender lanes; `FileState` keeps that prefix.

Crash accounting
  Before a run touches a file, `offsets.interrupted` is incremented and `offsets.in_flight_max`
  raised to this run's ceiling: the most events of the file that can be above the committed
  watermark at any moment, min(max_in_flight_messages + COMMIT_EVERY, events left). The reader
  waits when more than max_in_flight_messages events are unacknowledged, and commits at least
  every COMMIT_EVERY records, so the ceiling holds. A clean end (done, or drained after a stop)
  decrements `interrupted` again. After a SIGKILL it stays up, and
  `sum(interrupted * in_flight_max)` bounds the duplicates every later summary reports. Requests
  re-sent after an error may also have been stored once; their messages are added to the bound.

The ledger connection is used from the calling thread only; sender lanes touch memory alone.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence

from migrate import clients
from migrate.config import Config
from migrate.errors import SourceError
from migrate.ledger import items, offsets, transaction
from migrate.ledger.items import EventFile
from migrate.ledger.states import ItemState
from migrate.plan import Plan
from migrate.progress import Event, Reporter
from migrate.quarantine import Quarantine
from migrate.retry import describe
from migrate.sources.eventlog import iter_records
from migrate.targets.pubsub import EventPublisher, topic_path
from migrate.transfer.replay_state import (
    COMMIT_EVERY,
    COMMIT_INTERVAL,
    FileState,
    ReplaySummary,
    Window,
    attributes_for,
    changed_since_plan,
)


class _Replay:
    def __init__(self, conn, cfg: Config, plan: Plan, *, report: Reporter, stop: threading.Event, client):
        self.conn = conn
        self.cfg = cfg
        self.plan = plan
        self.report = report
        self.stop = stop
        self.client = client
        self.summary = ReplaySummary()
        self.window = Window(cfg.pubsub.max_in_flight_messages)
        self.publishers: dict[str, EventPublisher] = {}
        self.active: list[FileState] = []
        self.retry_events: list[tuple[str, str]] = []
        self.retry_lock = threading.Lock()
        self.retried_messages = 0
        self.quarantine: Quarantine | None = None
        self.last_commit = time.monotonic()
        self.ceiling = cfg.pubsub.max_in_flight_messages + COMMIT_EVERY
        self.events_per_item = plan.events_per_item()

    # --- publishers -------------------------------------------------------------------------

    def publisher(self, topic: str) -> EventPublisher:
        pub = self.publishers.get(topic)
        if pub is None:
            pub = EventPublisher(
                topic_path(self.cfg.project.id, topic),
                self.cfg.pubsub,
                self.cfg.transfer,
                on_done=self.on_done,
                on_retry=self.on_retry,
                client=self.client
                or clients.publisher_client(
                    impersonate=self.cfg.project.impersonate_service_account, endpoint=self.cfg.pubsub.endpoint
                ),
            )
            self.publishers[topic] = pub
        return pub

    def on_done(self, tokens: list, message_ids: list[str] | None, exc: BaseException | None) -> None:
        groups: dict[FileState, list[int]] = {}
        for st, seq in tokens:
            groups.setdefault(st, []).append(seq)
        for st, seqs in groups.items():
            if exc is None:
                st.ack(seqs)
            else:
                st.fail(seqs, exc)

    def on_retry(self, exc: BaseException, attempt: int, tokens: list) -> None:
        files = {st for st, _ in tokens}
        with self.retry_lock:
            self.retried_messages += len(tokens)
            for st, _ in tokens:
                st.resent += 1
            for st in files:
                st.retries += 1
                self.retry_events.append((st.path, describe(exc)))

    # --- main loop --------------------------------------------------------------------------

    def run(self, rows: Sequence[EventFile]) -> ReplaySummary:
        resume = {}
        for it in rows:
            row = self._offsets(it)
            resume[it.relpath] = row.watermark if row else 0
        self.quarantine = Quarantine(self.cfg.project.state_dir, self.plan.plan_id, resume)
        try:
            for n, item in enumerate(rows):
                if self.stop.is_set():
                    self.summary.files_pending += len(rows) - n
                    break
                st = self._start(item)
                if st is not None:
                    self._read(st)
        finally:
            try:
                for pub in self.publishers.values():
                    pub.wait()
                self._commit(final=True)
            finally:
                for pub in self.publishers.values():
                    pub.close()
                self.quarantine.close()
        for pub in self.publishers.values():
            self.summary.errors.extend(f"internal error in a publish callback: {exc!r}" for exc in pub.errors)
        self.summary.interrupted = self.stop.is_set()
        self.summary.retries = sum(p.stats.retries for p in self.publishers.values())
        self.summary.max_possible_duplicates = self._duplicate_bound() + self.retried_messages
        return self.summary

    def _offsets(self, item: EventFile) -> offsets.Offsets | None:
        return offsets.get(self.conn, self.plan.plan_id, item.relpath)

    def _start(self, item: EventFile) -> FileState | None:
        path = item.relpath
        pid = self.plan.plan_id
        row = self._offsets(item)
        if row is not None and row.done:
            if item.state != ItemState.DONE:
                self._set_item(item, ItemState.DONE, None)
            return None
        try:
            listener = self.cfg.listener_source(item.source)
        except KeyError:
            self._failed(item, f"listener {item.source!r} is not in the config any more")
            return None
        changed = changed_since_plan(path, item)
        if changed:
            self._set_item(item, ItemState.SOURCE_CHANGED, changed)
            self.summary.files_changed += 1
            self.report(Event("source_changed", name=path, data={"reason": changed}))
            return None
        watermark, line, published = (row.watermark, row.line, row.published) if row else (0, 0, 0)
        total = self.events_per_item.get(item.seq)
        ceiling = self.ceiling if total is None else min(self.ceiling, max(0, total - published))
        with transaction(self.conn):
            offsets.begin(self.conn, pid, item.source, path, ceiling)
            items.count_attempt(self.conn, pid, item.seq)
        return FileState(item, listener, watermark, line, self.window)

    def _read(self, st: FileState) -> None:
        topic = st.item.topic or st.listener.topic
        pub = self.publisher(topic)
        pid = self.plan.plan_id
        lname = st.listener.name
        path = st.path
        attributes = attributes_for(path)
        window = self.window
        q = self.quarantine
        assert q is not None
        fixed = {"plan_id": pid, "listener": lname}
        self.active.append(st)
        reader = iter_records(path, st.listener, st.watermark, st.line)
        planned_size = st.item.size
        since_commit = 0
        try:
            for rec in reader:
                if self.stop.is_set() or st.failed is not None:
                    break
                if not reader.is_gzip and rec.end_offset > planned_size:
                    st.reader_done = True  # appended after planning: the next plan's lines
                    break
                since_commit += 1
                if rec.error is not None:
                    q.add(path, rec.line, rec.offset, rec.error, rec.data, listener=lname, kind=rec.error_kind or "")
                    st.register_quarantined(rec)
                else:
                    if window.full():
                        self._wait_room(st)
                        if self.stop.is_set() or st.failed is not None:
                            break
                    attrs = attributes(rec)
                    seq = st.register_event(rec)
                    pub.publish(rec.data, attrs, (st, seq), rec.ordering_key, fixed)
                if since_commit >= COMMIT_EVERY or (
                    since_commit & 127 == 0 and time.monotonic() - self.last_commit > COMMIT_INTERVAL
                ):
                    since_commit = 0
                    self._commit()
            else:
                st.reader_done = True
                st.anomaly = reader.anomaly
        except SourceError as exc:
            with st.lock:
                if st.failed is None:
                    st.failed = exc
        pub.flush()
        self._commit()

    def _wait_room(self, st: FileState) -> None:
        """Wait until the window has room; commits meanwhile (which also finishes failed files)."""
        for p in self.publishers.values():
            p.flush()
        while not self.window.wait_room(COMMIT_INTERVAL):
            self._commit()
            if self.stop.is_set() or st.failed is not None:
                return
        self._commit()

    # --- ledger -----------------------------------------------------------------------------

    def _commit(self, final: bool = False) -> None:
        """Persist every active file's acknowledged prefix; finish files that are settled."""
        self.last_commit = time.monotonic()
        assert self.quarantine is not None
        self.quarantine.sync()  # quarantined records are durable before a watermark passes them
        pid = self.plan.plan_id
        finished: list[FileState] = []
        updates = []
        for st in self.active:
            wm, line, events, nbytes, quarantined = st.take()
            settled = st.settled
            if wm != st.committed_watermark or events or quarantined:
                updates.append((st, wm, line, events, nbytes, quarantined))
            if settled and (st.reader_done or st.failed is not None or final):
                finished.append(st)
        with self.retry_lock:
            retry_events, self.retry_events = self.retry_events, []
        if not updates and not finished:
            self._report_retries(retry_events)
            return
        with transaction(self.conn):
            for st, wm, line, events, _nbytes, quarantined in updates:
                offsets.advance(self.conn, pid, st.path, wm, line, events, quarantined)
                st.committed_watermark = wm
            for st in finished:
                self._finish(st)
        for st, _wm, _line, events, nbytes, quarantined in updates:
            self.summary.events += events
            self.summary.bytes += nbytes
            self.summary.quarantined += quarantined
            if events:
                self.report(Event("events", name=st.path, n=events, data={"bytes": nbytes}))
            if quarantined:
                self.report(Event("quarantined", name=st.path, n=quarantined))
        self._report_retries(retry_events)
        for st in finished:
            self.active.remove(st)
            self.quarantine.forget_below(st.path, st.committed_watermark)

    def _report_retries(self, retry_events: list[tuple[str, str]]) -> None:
        for path, error in retry_events:
            self.report(Event("retry", name=path, data={"error": error}))

    def _finish(self, st: FileState) -> None:
        """Inside a transaction: record how the file ended."""
        pid, path, item = self.plan.plan_id, st.path, st.item
        if st.retries:
            items.add_retries(self.conn, pid, item.seq, st.retries)
        if st.resent:
            # a retried request may have been accepted the first time: verify shows these duplicates apart
            offsets.add_resent(self.conn, pid, path, st.resent)
            st.resent = 0
        if st.failed is not None:
            st.release_window()
            # Events acknowledged above the failed one will be re-sent: keep `interrupted` up.
            err = st.failed.message if isinstance(st.failed, SourceError) else describe(st.failed)
            self._set_item(item, ItemState.FAILED, err, tx=False)
            self.summary.files_failed += 1
            self.summary.errors.append(f"{path}: {err}")
            self.report(Event("object_failed", name=path, data={"error": err}))
            return
        offsets.end_clean(self.conn, pid, path)
        if not st.reader_done:  # stopped cleanly: everything sent was acknowledged and committed
            self.summary.files_pending += 1
            return
        changed = changed_since_plan(path, item)
        if changed:
            self._set_item(item, ItemState.SOURCE_CHANGED, f"changed while replaying: {changed}", tx=False)
            self.summary.files_changed += 1
            return
        offsets.mark_done(self.conn, pid, path)
        self._set_item(item, ItemState.DONE, st.anomaly, tx=False)
        self.summary.files_done += 1
        if st.anomaly:
            self.summary.anomalies.append(f"{path}: {st.anomaly}")

    def _set_item(self, item, state: ItemState, error: str | None, tx: bool = True) -> None:
        if tx:
            with transaction(self.conn):
                items.set_state(self.conn, self.plan.plan_id, item.seq, state, error)
        else:
            items.set_state(self.conn, self.plan.plan_id, item.seq, state, error)

    def _failed(self, item, error: str) -> None:
        self._set_item(item, ItemState.FAILED, error)
        self.summary.files_failed += 1
        self.summary.errors.append(f"{item.relpath}: {error}")

    def _duplicate_bound(self) -> int:
        return offsets.duplicate_bound(self.conn, self.plan.plan_id)


def replay_events(
    conn: sqlite3.Connection,
    cfg: Config,
    plan: Plan,
    rows: Sequence[EventFile],
    *,
    report: Reporter,
    stop: threading.Event,
    client=None,
) -> ReplaySummary:
    """Publish the events of `rows` (the plan's log files in the ledger); see the module docstring.

    Never raises for a bad file: failures are in the summary (and items.state/last_error).
    """
    return _Replay(conn, cfg, plan, report=report, stop=stop, client=client).run(
        [it for it in rows if it.state != ItemState.DONE]
    )
