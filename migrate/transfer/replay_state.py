"""The bookkeeping of an event replay, shared by the local replay (replay.py) and the Dask engine:
the run's summary, one file's acknowledged prefix, the in-flight window across files, and whether a
log still is the file the plan saw."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from migrate.config import ListenerSource
from migrate.ledger.items import EventFile
from migrate.sources.eventlog import Record, only_appended, source_attribute

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


class FileState:
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

    def __init__(self, item: EventFile, listener: ListenerSource, watermark: int, line: int, window) -> None:
        self.item = item
        self.path: str = item.relpath
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
        self.window: Window = window
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


class Window:
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


def attributes_for(path: str) -> Callable[[Record], dict[str, str]]:
    """The per-event message attributes of one log file: event_id, source (`file:line`) and event_time.

    A path well under Pub/Sub's 1,024-byte attribute value limit skips the cut in source_attribute.
    """
    short = len(path.encode("utf-8", "surrogateescape")) < 1000

    def attributes(rec: Record) -> dict[str, str]:
        attrs = {
            "event_id": rec.event_id,
            "source": f"{path}:{rec.line}" if short else source_attribute(path, rec.line),
        }
        if rec.event_time:
            attrs["event_time"] = rec.event_time
        return attrs

    return attributes


def changed_since_plan(path: str, item: EventFile) -> str | None:
    """Why the file no longer matches the plan's (size, mtime_ns, inode), or None.

    A plain log that was only appended to (same inode, its planned bytes with the CRC32C the plan
    recorded) still matches: the replay reads it up to the planned size, and the next plan replays
    the rest (planning/appended.py).
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot stat ({exc.strerror or exc})"
    if item.inode is not None and st.st_ino != item.inode:
        return "inode differs from the plan (file replaced)"
    if st.st_size > item.size and only_appended(path, item.size, item.crc32c):
        return None
    if st.st_size != item.size:
        return f"size {st.st_size} != planned {item.size}"
    if item.mtime_ns is not None and st.st_mtime_ns != item.mtime_ns:
        return "mtime differs from the plan"
    return None
