"""Replay a plan's listener log files into Pub/Sub, with per-file watermarks in the ledger.

For each `kind='events'` item: check the file is unchanged since planning, resume at its
watermark, publish every valid record, quarantine every bad one, and advance the watermark only
over the contiguous prefix of records that are acknowledged (or quarantined). Acks arrive out of
order from several sender lanes; `_FileState` keeps that prefix.

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

import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from migrate.clients import publisher_client
from migrate.config import Config, ListenerSource
from migrate.errors import SourceError
from migrate.ledger import items, now, transaction
from migrate.ledger.states import ItemKind, ItemState
from migrate.plan import Plan
from migrate.progress import Event, Reporter
from migrate.quarantine import Quarantine
from migrate.retry import describe
from migrate.sources.eventlog import Record, iter_records, only_appended, source_attribute
from migrate.targets.pubsub import EventPublisher, encode_attributes, topic_path

COMMIT_EVERY = 1000  # records read between watermark commits (at most)
COMMIT_INTERVAL = 0.5  # seconds between watermark commits while acks arrive


@dataclass
class ReplaySummary:
    events: int = 0  # events acknowledged by Pub/Sub in this run
    bytes: int = 0
    quarantined: int = 0
    retries: int = 0
    files_done: int = 0
    files_failed: int = 0
    files_changed: int = 0
    files_pending: int = 0  # not finished because the run was stopped
    max_possible_duplicates: int = 0
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class _FileState:
    """One file's in-flight records and its acknowledged prefix.

    The reader thread registers records (without a lock: it alone writes `next_seq`, `entries`
    keys and `registered`); lane threads ack/fail under `lock`. The shared window counts events
    registered but not yet in the prefix, so a stuck head stops the reader.
    """

    __slots__ = (
        "item",
        "path",
        "listener",
        "lock",
        "entries",
        "acked",
        "head",
        "next_seq",
        "watermark",
        "line",
        "committed_watermark",
        "new_events",
        "new_bytes",
        "new_quarantined",
        "failed",
        "reader_done",
        "anomaly",
        "retries",
        "resent",
        "window",
        "registered",
        "resolved",
        "popped",
    )

    def __init__(self, item: sqlite3.Row, listener: ListenerSource, watermark: int, line: int, window) -> None:
        self.item = item
        self.path: str = item["relpath"]
        self.listener = listener
        self.lock = threading.Lock()
        self.entries: dict[int, tuple[int, int, int, int]] = {}  # seq -> (end_offset, line, is_event, nbytes)
        self.acked: set[int] = set()
        self.head = 0  # lowest seq not yet in the prefix
        self.next_seq = 0
        self.watermark = watermark
        self.line = line
        self.committed_watermark = watermark
        self.new_events = 0  # acknowledged into the prefix, not yet committed
        self.new_bytes = 0
        self.new_quarantined = 0
        self.failed: BaseException | None = None
        self.reader_done = False
        self.anomaly: str | None = None
        self.retries = 0
        self.resent = 0  # messages of this file in retried requests, not yet in the ledger
        self.window: _Window = window
        self.registered = 0  # events handed to the publisher (reader thread only)
        self.resolved = 0  # of those, acknowledged or failed (under lock)
        self.popped = 0  # of those, in the prefix (under lock)

    def register_event(self, rec: Record) -> int:
        seq = self.next_seq
        self.next_seq = seq + 1
        self.entries[seq] = (rec.end_offset, rec.last_line, 1, len(rec.data))
        self.registered += 1
        self.window.taken += 1
        return seq

    def register_quarantined(self, rec: Record) -> None:
        seq = self.next_seq
        self.next_seq = seq + 1
        with self.lock:
            self.entries[seq] = (rec.end_offset, rec.last_line, 0, 0)
            self.acked.add(seq)
            popped = self._advance()
        if popped:
            self.window.release(popped)

    def ack(self, seqs: list[int]) -> None:
        with self.lock:
            self.acked.update(seqs)
            self.resolved += len(seqs)
            popped = self._advance()
        if popped:
            self.window.release(popped)

    def fail(self, seqs: list[int], exc: BaseException) -> None:
        with self.lock:
            self.resolved += len(seqs)
            if self.failed is None:
                self.failed = exc

    def _advance(self) -> int:
        """Move the prefix over acknowledged records; returns how many events entered it."""
        entries, acked = self.entries, self.acked
        events = 0
        while self.head in acked:
            acked.discard(self.head)
            end, line, is_event, nbytes = entries.pop(self.head)
            self.head += 1
            self.watermark, self.line = end, line
            if is_event:
                events += 1
                self.new_bytes += nbytes
            else:
                self.new_quarantined += 1
        self.new_events += events
        self.popped += events
        return events

    def take(self) -> tuple[int, int, int, int, int]:
        """(watermark, line, events, bytes, quarantined) of the prefix since the last take()."""
        with self.lock:
            out = (self.watermark, self.line, self.new_events, self.new_bytes, self.new_quarantined)
            self.new_events = self.new_bytes = self.new_quarantined = 0
            return out

    @property
    def settled(self) -> bool:
        """Nothing of this file is in flight any more."""
        with self.lock:
            return self.resolved == self.registered

    def release_window(self) -> None:
        """At the end of a failed file: its events that never reached the prefix leave the window."""
        with self.lock:
            stuck = self.registered - self.popped
            self.popped = self.registered
        if stuck:
            self.window.release(stuck)


class _Window:
    """Events registered but not yet in their file's acknowledged prefix, across files.

    `taken` is written by the reader thread only, `released` by lanes under the condition.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.taken = 0
        self.released = 0
        self.cond = threading.Condition()

    def full(self) -> bool:
        return self.taken - self.released >= self.limit

    def release(self, n: int) -> None:
        with self.cond:
            self.released += n
            self.cond.notify_all()

    def wait_room(self, timeout: float) -> bool:
        with self.cond:
            if not self.full():
                return True
            self.cond.wait(timeout)
            return not self.full()


class _Replay:
    def __init__(self, conn, cfg: Config, plan: Plan, *, report: Reporter, stop: threading.Event, client):
        self.conn = conn
        self.cfg = cfg
        self.plan = plan
        self.report = report
        self.stop = stop
        self.client = client
        self.summary = ReplaySummary()
        self.window = _Window(cfg.pubsub.max_in_flight_messages)
        self.publishers: dict[str, EventPublisher] = {}
        self.active: list[_FileState] = []
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
                client=self.client or publisher_client(impersonate=self.cfg.project.impersonate_service_account),
            )
            self.publishers[topic] = pub
        return pub

    def on_done(self, tokens: list, message_ids: list[str] | None, exc: BaseException | None) -> None:
        groups: dict[_FileState, list[int]] = {}
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

    def run(self, rows: Sequence[sqlite3.Row]) -> ReplaySummary:
        resume = {}
        for it in rows:
            row = self._offsets(it)
            resume[it["relpath"]] = row["watermark"] if row else 0
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

    def _offsets(self, item) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM offsets WHERE plan_id=? AND path=?", (self.plan.plan_id, item["relpath"])
        ).fetchone()

    def _start(self, item: sqlite3.Row) -> _FileState | None:
        path = item["relpath"]
        pid = self.plan.plan_id
        row = self._offsets(item)
        if row is not None and row["done"]:
            if item["state"] != ItemState.DONE:
                self._set_item(item, ItemState.DONE, None)
            return None
        try:
            listener = self.cfg.listener_source(item["source"])
        except KeyError:
            self._failed(item, f"listener {item['source']!r} is not in the config any more")
            return None
        changed = _changed(path, item)
        if changed:
            self._set_item(item, ItemState.SOURCE_CHANGED, changed)
            self.summary.files_changed += 1
            self.report(Event("source_changed", name=path, data={"reason": changed}))
            return None
        watermark, line, published = (row["watermark"], row["line"], row["published"]) if row else (0, 0, 0)
        total = self.events_per_item.get(item["seq"])
        ceiling = self.ceiling if total is None else min(self.ceiling, max(0, total - published))
        with transaction(self.conn):
            self.conn.execute(
                "INSERT OR IGNORE INTO offsets(plan_id, source, path) VALUES(?,?,?)", (pid, item["source"], path)
            )
            self.conn.execute(
                "UPDATE offsets SET interrupted = interrupted + 1, in_flight_max = MAX(in_flight_max, ?)"
                " WHERE plan_id=? AND path=?",
                (ceiling, pid, path),
            )
            self.conn.execute(
                "UPDATE items SET attempts = attempts + 1, updated_at=? WHERE plan_id=? AND seq=?",
                (now(), pid, item["seq"]),
            )
        return _FileState(item, listener, watermark, line, self.window)

    def _read(self, st: _FileState) -> None:
        topic = st.item["topic"] or st.listener.topic
        pub = self.publisher(topic)
        pid = self.plan.plan_id
        lname = st.listener.name
        path = st.path
        short_source = len(path.encode("utf-8", "surrogateescape")) < 1000
        window = self.window
        q = self.quarantine
        assert q is not None
        fixed = encode_attributes({"plan_id": pid, "listener": lname})
        self.active.append(st)
        reader = iter_records(path, st.listener, st.watermark, st.line)
        planned_size = st.item["size"]
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
                    attrs = {
                        "event_id": rec.event_id,
                        "source": f"{path}:{rec.line}" if short_source else source_attribute(path, rec.line),
                    }
                    if rec.event_time:
                        attrs["event_time"] = rec.event_time
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

    def _wait_room(self, st: _FileState) -> None:
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
        finished: list[_FileState] = []
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
                self.conn.execute(
                    "UPDATE offsets SET watermark=?, line=?, published=published+?, quarantined=quarantined+?"
                    " WHERE plan_id=? AND path=?",
                    (wm, line, events, quarantined, pid, st.path),
                )
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

    def _finish(self, st: _FileState) -> None:
        """Inside a transaction: record how the file ended."""
        pid, path, item = self.plan.plan_id, st.path, st.item
        if st.retries:
            self.conn.execute(
                "UPDATE items SET retries = retries + ? WHERE plan_id=? AND seq=?", (st.retries, pid, item["seq"])
            )
        if st.resent:
            # a retried request may have been accepted the first time: verify shows these duplicates apart
            self.conn.execute(
                "UPDATE offsets SET resent = resent + ? WHERE plan_id=? AND path=?", (st.resent, pid, path)
            )
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
        self.conn.execute(
            "UPDATE offsets SET interrupted = MAX(0, interrupted - 1) WHERE plan_id=? AND path=?", (pid, path)
        )
        if not st.reader_done:  # stopped cleanly: everything sent was acknowledged and committed
            self.summary.files_pending += 1
            return
        changed = _changed(path, item)
        if changed:
            self._set_item(item, ItemState.SOURCE_CHANGED, f"changed while replaying: {changed}", tx=False)
            self.summary.files_changed += 1
            return
        self.conn.execute("UPDATE offsets SET done=1 WHERE plan_id=? AND path=?", (pid, path))
        self._set_item(item, ItemState.DONE, st.anomaly, tx=False)
        self.summary.files_done += 1
        if st.anomaly:
            self.summary.anomalies.append(f"{path}: {st.anomaly}")

    def _set_item(self, item, state: ItemState, error: str | None, tx: bool = True) -> None:
        if tx:
            with transaction(self.conn):
                items.set_state(self.conn, self.plan.plan_id, item["seq"], state, error)
        else:
            items.set_state(self.conn, self.plan.plan_id, item["seq"], state, error)

    def _failed(self, item, error: str) -> None:
        self._set_item(item, ItemState.FAILED, error)
        self.summary.files_failed += 1
        self.summary.errors.append(f"{item['relpath']}: {error}")

    def _duplicate_bound(self) -> int:
        row = self.conn.execute(
            "SELECT COALESCE(SUM(interrupted * in_flight_max), 0) FROM offsets WHERE plan_id=?", (self.plan.plan_id,)
        ).fetchone()
        return int(row[0])


def _changed(path: str, item) -> str | None:
    """Why the file no longer matches the plan's (size, mtime_ns, inode), or None.

    A plain log that was only appended to (same inode, its planned bytes with the CRC32C the plan
    recorded) still matches: the replay reads it up to the planned size, and the next plan replays
    the rest (planning/appended.py).
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot stat ({exc.strerror or exc})"
    if item["inode"] is not None and st.st_ino != item["inode"]:
        return "inode differs from the plan (file replaced)"
    if st.st_size > item["size"] and only_appended(path, item["size"], item["crc32c"]):
        return None
    if st.st_size != item["size"]:
        return f"size {st.st_size} != planned {item['size']}"
    if item["mtime_ns"] is not None and st.st_mtime_ns != item["mtime_ns"]:
        return "mtime differs from the plan"
    return None


def replay_events(
    conn: sqlite3.Connection,
    cfg: Config,
    plan: Plan,
    rows: Sequence[sqlite3.Row],
    *,
    report: Reporter,
    stop: threading.Event,
    client=None,
) -> ReplaySummary:
    """Publish the events of `rows` (the plan's kind='events' ledger rows); see the module docstring.

    Never raises for a bad file: failures are in the summary (and items.state/last_error).
    """
    return _Replay(conn, cfg, plan, report=report, stop=stop, client=client).run(
        [it for it in rows if it["kind"] == ItemKind.EVENTS and it["state"] != ItemState.DONE]
    )
