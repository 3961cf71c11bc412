"""Drain a topic's verification subscription into the ledger, with parallel pull streams.

Each of `streams` threads pulls (up to 1,000 messages a pull) through a `SubscriptionReader`
(targets/subscription.py: the only code that talks to Pub/Sub). The calling thread owns the ledger
connection: it appends every pull to `verify_pulls` and commits, then hands the ack ids to an ack
pool, so a message is acknowledged only after it is durable (a crash never loses one; a redelivery is
recognised by its message id). Folding into `event_ids.seen` is in `fold_pulls`.

When to stop. Real Pub/Sub may answer empty or short pulls while a backlog remains
(https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions/pull), so a few empty
pulls prove nothing. The drain stops, and `Drain.stopped` says which:
  complete  every event the plan expects on this topic has been seen (after at least one answered pull);
  quiet     nothing arrived for `quiet_seconds` and nothing is in flight (no pulled batch waiting to be
            stored, no acknowledgement outstanding);
  timeout   `max_seconds` passed (the drain is incomplete and verify fails).
Stopping then waits for the pulls under way (at most `pull_timeout`), storing and acking what they bring.
"Expected" is the re-read of the source logs (events.load_expected), written to event_ids before the
drain; the exact check is an SQL sum, run only when enough new messages of the plan arrived to possibly
complete it, and spaced so that it takes at most about a tenth of the drain's time.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from migrate.config import Config
from migrate.hashing import id_hash, signed64
from migrate.ledger import transaction
from migrate.names import verification_subscription
from migrate.plan import Plan
from migrate.progress import Event, Reporter, null_reporter
from migrate.retry import describe
from migrate.targets.subscription import PubSubSubscription, Pulled, SubscriptionReader
from migrate.verification.model import Drain

POLL = 0.2  # seconds the drain loop waits for a pull before re-checking its stop conditions
BATCH_PULLS = 16  # pulls waiting in the queue are stored in one transaction, up to this many


@dataclass(frozen=True)
class DrainSettings:
    """How to drain. An empty pull costs up to `pull_timeout` seconds; `quiet_seconds` is the stated quiet
    period after which, with nothing in flight, the drain stops without having seen every expected event."""

    max_messages: int = 1000  # per pull call (Pub/Sub's maximum)
    # A pull's deadline. One that passes after the server leased messages to the pull loses them until their ack
    # deadline passes, so it should be generous; but a stopped drain waits for its open pulls (up to this long).
    pull_timeout: float = 10.0
    quiet_seconds: float = 30.0
    streams: int = 4
    max_seconds: float = 4 * 3600.0  # stop anyway after this long (the drain is then incomplete)


ReaderFactory = Callable[[str], SubscriptionReader]  # topic -> reader of its verification subscription


def fold_pulls(conn: sqlite3.Connection) -> int:
    """Count every not-yet-folded drained message into event_ids.seen (all plans), atomically."""
    with transaction(conn):
        before = conn.total_changes
        conn.execute(
            "INSERT INTO event_ids(plan_id, source, id_hash, event_id, seen)"
            " SELECT plan_id, source, id_hash, MIN(event_id), COUNT(*) FROM verify_pulls WHERE folded = 0"
            " GROUP BY plan_id, source, id_hash"
            " ON CONFLICT(plan_id, source, id_hash) DO UPDATE SET seen = seen + excluded.seen"
        )
        merged = conn.total_changes - before
        conn.execute("UPDATE verify_pulls SET folded = 1 WHERE folded = 0")
    return merged


def expected_left(conn: sqlite3.Connection, plan_id: str, sources: Iterable[str]) -> int:
    """Expected deliveries of these sources not seen yet (after folding every stored pull)."""
    names = sorted(set(sources))
    if not names:
        return 0
    fold_pulls(conn)
    marks = ",".join("?" * len(names))
    (left,) = conn.execute(
        "SELECT COALESCE(SUM(expected - seen), 0) FROM event_ids"
        f" WHERE plan_id = ? AND source IN ({marks}) AND expected > seen",
        (plan_id, *names),
    ).fetchone()
    return int(left)


def _persist(conn: sqlite3.Connection, topic: str, plan_id: str, msgs: list[Pulled], d: Drain) -> int:
    """Append one pull to verify_pulls and commit (before the ack); a known message id is a redelivery.
    Returns how many new messages of this plan it held."""
    mine: list[tuple] = []
    others: list[tuple] = []
    for m in msgs:
        d.received += 1
        a = m.attributes
        pid, eid, listener = a.get("plan_id"), a.get("event_id"), a.get("listener")
        if not pid or eid is None or not listener:
            d.foreign += 1
            continue
        row = (topic, m.message_id, pid, listener, signed64(id_hash(eid)), eid)
        (mine if pid == plan_id else others).append(row)
    sql = (
        "INSERT OR IGNORE INTO verify_pulls(topic, message_id, plan_id, source, id_hash, event_id) VALUES(?,?,?,?,?,?)"
    )
    with transaction(conn):
        before = conn.total_changes
        conn.executemany(sql, mine)
        new_mine = conn.total_changes - before
        conn.executemany(sql, others)
        new_total = conn.total_changes - before
    d.new += new_total
    d.redelivered += len(mine) + len(others) - new_total
    d.this_plan += new_mine
    d.other_plans += new_total - new_mine
    return new_mine


class _Streams:
    """`n` threads pulling from one reader into a queue, until stopped."""

    def __init__(self, reader: SubscriptionReader, settings: DrainSettings) -> None:
        self.reader = reader
        self.settings = settings
        self.results: queue.Queue = queue.Queue(maxsize=max(2, 2 * settings.streams))
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(i,), name=f"drain-{i}", daemon=True)
            for i in range(max(1, settings.streams))
        ]
        for t in self.threads:
            t.start()

    def _run(self, index: int) -> None:
        s = self.settings
        while not self.stop.is_set():
            try:
                item = (index, self.reader.pull(s.max_messages, s.pull_timeout))
            except BaseException as exc:  # raised in the draining thread
                if not self.stop.is_set():
                    self.results.put((index, exc))
                return
            self.results.put(item)  # blocks while the draining thread is busy storing: back pressure

    def close(self) -> list:
        """Stop pulling; what the pulls under way still bring (each ends by its deadline). Waiting for them,
        rather than cancelling, leaves no pull open that could lease messages nobody will read: those would
        only come back after their ack deadline, and a verify right after this one would miss them."""
        self.stop.set()
        left: list = []
        while any(t.is_alive() for t in self.threads) or not self.results.empty():
            try:
                left.append(self.results.get(timeout=POLL))
            except queue.Empty:
                continue
        for t in self.threads:
            t.join()
        return left


def drain_topic(
    conn: sqlite3.Connection,
    reader: SubscriptionReader,
    topic: str,
    plan_id: str,
    sources: Iterable[str],
    settings: DrainSettings,
    report: Reporter = null_reporter,
    clock: Callable[[], float] = time.monotonic,
) -> Drain:
    """Pull until every expected event of `sources` is seen, or the quiet period passes, or the time limit."""
    sources = sorted(set(sources))
    d = Drain(topic=topic, subscription=reader.path, streams=max(1, settings.streams))
    d.quiet_seconds = settings.quiet_seconds
    started = clock()
    deadline = started + settings.max_seconds
    left = expected_left(conn, plan_id, sources)
    new_since_check, last_check, check_every = 0, started, 0.0
    last_message = started
    acks: list[Future] = []
    report(Event("phase", name=f"draining {reader.path} ({d.streams} streams)"))
    streams = _Streams(reader, settings)
    pool = ThreadPoolExecutor(max_workers=d.streams, thread_name_prefix="drain-ack")

    def take(results: list[tuple]) -> None:
        """Store the pulls in one transaction, then hand their acks to the pool (stored before acked)."""
        nonlocal new_since_check, last_message
        pulled = []
        for _, item in results:
            if isinstance(item, BaseException):
                raise item
            d.pulls += 1
            if item:
                pulled.append(item)
        if pulled:
            last_message = clock()
            new_since_check += _persist(conn, topic, plan_id, [m for msgs in pulled for m in msgs], d)
            for msgs in pulled:
                acks.append(pool.submit(reader.acknowledge, [m.ack_id for m in msgs]))
            report(Event("events", name=topic, n=sum(len(msgs) for msgs in pulled)))

    def settle_acks() -> None:
        for f in [f for f in acks if f.done()]:
            acks.remove(f)
            d.acked += f.result()

    try:
        while True:
            got = []
            try:
                got.append(streams.results.get(timeout=POLL))
                while len(got) < BATCH_PULLS:
                    got.append(streams.results.get_nowait())
            except queue.Empty:
                pass
            take(got)
            settle_acks()
            now = clock()
            if d.pulls and new_since_check >= left and now - last_check >= check_every:
                left = expected_left(conn, plan_id, sources)
                new_since_check, last_check = 0, clock()
                check_every = 10 * (last_check - now)  # checks take at most about a tenth of the time
                if left == 0:
                    d.stopped = "complete"
                    break
            idle = not acks and streams.results.empty()
            if idle and now - last_message >= settings.quiet_seconds:
                d.stopped = "quiet"
                break
            if now >= deadline:
                d.stopped = "timeout"
                break
    finally:
        d.seconds = round(clock() - started, 3)  # the reading; closing waits for the pulls under way
        try:
            take([r for r in streams.close() if not isinstance(r[1], BaseException)])
            for f in acks:
                d.acked += f.result()
        finally:
            pool.shutdown(wait=True)
    d.expected_left = expected_left(conn, plan_id, sources)
    return d


def topic_sources(plan: Plan) -> dict[str, set[str]]:
    """topic -> the plan's listener sources that publish to it."""
    out: dict[str, set[str]] = {}
    for item in plan.event_items():
        if item.topic:
            out.setdefault(item.topic, set()).add(item.source)
    return out


def drain_all(
    conn: sqlite3.Connection,
    cfg: Config,
    plan: Plan,
    settings: DrainSettings,
    report: Reporter = null_reporter,
    reader_factory: ReaderFactory | None = None,
) -> list[Drain]:
    """Drain the verification subscription of every topic of the plan, one topic after another.

    Call after events.load_expected(): the drain stops early once every expected event is seen."""
    topics = topic_sources(plan)
    if not topics:
        return []

    def on_retry(exc: BaseException, attempt: int) -> None:
        report(Event("retry", name="verification subscription", data={"error": describe(exc)}))

    if reader_factory is None:

        def reader_factory(topic: str) -> SubscriptionReader:
            return PubSubSubscription(
                cfg.project.id,
                verification_subscription(topic),
                cfg.transfer,
                endpoint=cfg.pubsub.endpoint,
                impersonate=cfg.project.impersonate_service_account,
                on_retry=on_retry,
            )

    fold_pulls(conn)  # a verify that crashed after committing pulls: count them now
    drains = []
    for topic, sources in sorted(topics.items()):
        reader = reader_factory(topic)
        try:
            drains.append(drain_topic(conn, reader, topic, plan.plan_id, sources, settings, report))
        finally:
            reader.close()
    fold_pulls(conn)
    return drains
