"""Events: drain the verification subscription, re-read the source logs, compare hashed ids in SQL.

Both sides meet in the ledger table `event_ids` (plan_id, source, id_hash -> event_id, seen, expected):
  seen      messages drained. Each pull is appended to the ledger table `verify_pulls` and committed
            before it is acked, so a crash never loses one; its unique (topic, message_id) keeps a
            redelivery from counting twice. After draining, unfolded pulls are folded into `seen` in
            one sorted INSERT .. SELECT .. GROUP BY .. ON CONFLICT merge. Draining acks, so a second
            verify cannot read those messages again: `seen` persists, and a re-run reports the same
            result plus whatever arrived since.
  expected  recomputed on every verify by re-reading the plan's log files with the same reader the
            run uses (sources.eventlog.iter_records): valid records minus the ones quarantined.
            Ids are appended to a TEMP table, then merged into `expected` in one sorted statement.

Appends plus one sorted merge, rather than an upsert per id at a random key, keep the B-tree writes
sequential: a million ids cost seconds, not minutes, and memory stays flat.

Then missing = expected > seen, duplicates = seen > expected > 0, unexpected = expected = 0 < seen,
all as SQL aggregates; only up to --show ids per kind come back to Python. Messages of other plans
on the same topic are kept under their own plan id for their own verify.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from migrate.config import Config, TransferConfig
from migrate.errors import SourceError, TargetError
from migrate.hashing import IdDigest, id_hash, signed64
from migrate.ledger import items, transaction
from migrate.ledger.states import ItemKind
from migrate.names import verification_subscription
from migrate.plan import Plan
from migrate.progress import Event, Reporter, null_reporter
from migrate.retry import describe, retrying
from migrate.verification.model import Drain, EventSourceResult
from migrate.verification.problems import DIFFERS, ERROR, EXTRA, MATCH, MISSING, ProblemLines, event_path, file_path

BATCH = 5000
ACK_CHUNK = 1000
_MASK64 = (1 << 64) - 1

EXPECTED_TABLE = """
DROP TABLE IF EXISTS temp.verify_expected;
CREATE TEMP TABLE verify_expected(source TEXT NOT NULL, id_hash INTEGER NOT NULL, event_id TEXT NOT NULL);
"""


@dataclass(frozen=True)
class DrainSettings:
    """How long to keep pulling. An empty pull costs up to `pull_timeout` seconds."""

    max_messages: int = 1000  # per pull call (Pub/Sub's maximum)
    pull_timeout: float = 2.0
    empty_pulls: int = 3  # stop after this many empty pulls in a row
    max_seconds: float = 3600.0  # stop anyway after this long (the drain is then incomplete)


# --- drain -----------------------------------------------------------------------------------------


def drain_topic(
    conn: sqlite3.Connection,
    subscriber,
    project: str,
    topic: str,
    plan_id: str,
    settings: DrainSettings,
    retry_cfg: TransferConfig,
    report: Reporter = null_reporter,
) -> Drain:
    """Pull until the subscription stays empty; persist what was read, then ack it."""
    from google.api_core import exceptions as gexc

    sub_id = verification_subscription(topic)
    sub_path = subscriber.subscription_path(project, sub_id)
    d = Drain(topic=topic, subscription=sub_path)
    deadline = time.monotonic() + settings.max_seconds
    empties = 0

    def on_retry(exc: BaseException, attempt: int) -> None:
        report(Event("retry", name=sub_path, data={"error": describe(exc)}))

    def pull() -> list:
        try:
            resp = subscriber.pull(
                subscription=sub_path, max_messages=settings.max_messages, timeout=settings.pull_timeout, retry=None
            )
        except gexc.DeadlineExceeded:
            return []  # a long poll that found nothing
        return list(resp.received_messages)

    report(Event("phase", name=f"draining {sub_path}"))
    while True:
        if empties >= settings.empty_pulls:
            d.stopped = "empty"
            break
        if time.monotonic() >= deadline:
            d.stopped = "timeout"
            break
        try:
            msgs = retrying(retry_cfg, on_retry)(pull)
        except gexc.NotFound:
            raise TargetError(
                f"verification subscription {sub_path} not found",
                "create it before the run (terraform/, or `migrate provision` in emulator mode); "
                "events published before it existed cannot be verified",
            ) from None
        except gexc.GoogleAPICallError as exc:
            raise TargetError(f"pulling from {sub_path} failed: {describe(exc)}", "retry verify later") from None
        d.pulls += 1
        if not msgs:
            empties += 1
            continue
        empties = 0
        _persist(conn, topic, plan_id, msgs, d)
        _ack(subscriber, sub_path, [m.ack_id for m in msgs], retry_cfg, on_retry, d)
        report(Event("events", name=topic, n=len(msgs)))
    return d


def _persist(conn: sqlite3.Connection, topic: str, plan_id: str, msgs: list, d: Drain) -> None:
    """Append one pull to verify_pulls and commit (before the ack); a known message id is a redelivery."""
    mine: list[tuple] = []
    others: list[tuple] = []
    for m in msgs:
        d.received += 1
        a = m.message.attributes
        pid, eid, listener = a.get("plan_id"), a.get("event_id"), a.get("listener")
        if not pid or eid is None or not listener:
            d.foreign += 1
            continue
        row = (topic, m.message.message_id, pid, listener, signed64(id_hash(eid)), eid)
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


def _ack(subscriber, sub_path: str, ack_ids: list[str], cfg: TransferConfig, on_retry, d: Drain) -> None:
    from google.api_core import exceptions as gexc

    for i in range(0, len(ack_ids), ACK_CHUNK):
        chunk = ack_ids[i : i + ACK_CHUNK]
        try:
            retrying(cfg, on_retry)(lambda c=chunk: subscriber.acknowledge(subscription=sub_path, ack_ids=c))
            d.acked += len(chunk)
        except gexc.GoogleAPICallError:
            # Already counted and committed: a redelivery is recognised by its message id.
            pass


# --- expected: the source logs, re-read ------------------------------------------------------------


def load_expected(
    conn: sqlite3.Connection,
    cfg: Config,
    plan: Plan,
    quarantine: dict[str, dict[int, str]],
    lines: ProblemLines,
    *,
    show: int = 20,
    report: Reporter = null_reporter,
) -> dict[str, EventSourceResult]:
    """Re-read every planned log file; set event_ids.expected for the plan; per-source digests."""
    from migrate.sources.eventlog import iter_records

    pid = plan.plan_id
    results: dict[str, EventSourceResult] = {}
    inventory: dict[str, IdDigest] = {}
    reread: dict[str, IdDigest] = {}  # every valid record now in the logs
    held: dict[str, IdDigest] = {}  # valid records the run quarantined instead of publishing
    states = items.run_problems(conn, pid, ItemKind.EVENTS)
    conn.executescript(EXPECTED_TABLE)
    batch: list[tuple] = []

    def flush() -> None:
        conn.executemany("INSERT INTO temp.verify_expected(source, id_hash, event_id) VALUES(?,?,?)", batch)
        batch.clear()

    for item in plan.event_items():
        source, path, relpath = item.source, item.path, item.relpath
        res = results.setdefault(source, EventSourceResult(source=source, topic=item.topic))
        res.files += 1
        res.inventory_events += item.events
        inventory.setdefault(source, IdDigest()).merge(IdDigest.from_hex(item.events, item.id_digest))
        now, q_digest = reread.setdefault(source, IdDigest()), held.setdefault(source, IdDigest())
        if relpath in states:
            state, err = states[relpath]
            res.run_failed += 1
            shown = res.examples.setdefault("run_failed", [])
            if len(shown) < show:
                shown.append(f"{path} ({state}{': ' + err if err else ''})")
            lines.add(ERROR, file_path(path))
        q = quarantine.get(path) or quarantine.get(relpath) or {}
        res.quarantined += len(q)
        try:
            listener = cfg.listener_source(source)
        except KeyError:
            res.unreadable.append(f"{path} (listener {source!r} is no longer in the config)")
            lines.add(ERROR, file_path(path))
            continue
        report(Event("phase", name=f"re-reading {path}"))
        try:
            reader = iter_records(path, listener, item.start_offset, item.start_line)
            for rec in reader:
                if not reader.is_gzip and rec.end_offset > item.size:
                    break  # appended after planning: a later plan's lines, not this one's
                if rec.error is not None or rec.event_id is None:
                    continue
                h = id_hash(rec.event_id)
                now.add_hash(h)
                if q and rec.offset in q:
                    q_digest.add_hash(h)
                    continue
                batch.append((source, signed64(h), rec.event_id))
                if len(batch) >= BATCH:
                    flush()
        except SourceError as exc:
            res.unreadable.append(f"{path} ({exc.message})")
            lines.add(ERROR, file_path(path))
    if batch:
        flush()
    with transaction(conn):
        conn.execute("UPDATE event_ids SET expected = 0 WHERE plan_id = ? AND expected != 0", (pid,))
        conn.execute(
            "INSERT INTO event_ids(plan_id, source, id_hash, event_id, expected)"
            " SELECT ?, source, id_hash, MIN(event_id), COUNT(*) FROM temp.verify_expected WHERE true"
            " GROUP BY source, id_hash"
            " ON CONFLICT(plan_id, source, id_hash) DO UPDATE SET expected = excluded.expected",
            (pid,),
        )
    conn.execute("DROP TABLE IF EXISTS temp.verify_expected")
    for source, res in results.items():
        inv, now, q_digest = inventory[source], reread[source], held[source]
        res.inventory_digest = inv.hex
        res.quarantined_valid = q_digest.count
        res.expected_events = now.count - q_digest.count
        res.expected_digest = f"{(now.total - q_digest.total) & _MASK64:016x}"
        res.source_drift = not res.unreadable and (now.count, now.total) != (inv.count, inv.total)
    return results


# --- compare ---------------------------------------------------------------------------------------


def previously_seen(conn: sqlite3.Connection, plan_id: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT source, SUM(seen) FROM event_ids WHERE plan_id = ? AND seen > 0 GROUP BY source", (plan_id,)
    )
    return {r[0]: int(r[1]) for r in rows}


def compare(
    conn: sqlite3.Connection,
    plan_id: str,
    results: dict[str, EventSourceResult],
    lines: ProblemLines,
    *,
    show: int,
    before: dict[str, int],
) -> list[EventSourceResult]:
    """Fill counts, digests and example ids per source; add `+`/`*`/`-` lines. Returns sources sorted."""
    for (source,) in conn.execute("SELECT DISTINCT source FROM event_ids WHERE plan_id = ? AND seen > 0", (plan_id,)):
        results.setdefault(source, EventSourceResult(source=source, topic=""))
    for source, res in sorted(results.items()):
        missing, dups, unexpected, received = conn.execute(
            """SELECT COALESCE(SUM(CASE WHEN expected > seen THEN expected - seen END), 0),
                      COALESCE(SUM(CASE WHEN seen > expected AND expected > 0 THEN seen - expected END), 0),
                      COALESCE(SUM(CASE WHEN expected = 0 THEN seen END), 0),
                      COALESCE(SUM(seen), 0)
               FROM event_ids WHERE plan_id = ? AND source = ?""",
            (plan_id, source),
        ).fetchone()
        res.missing, res.duplicates, res.unexpected, res.received_events = missing, dups, unexpected, received
        res.received_digest = _received_digest(conn, plan_id, source)
        res.received_before = before.get(source, 0)
        budget, interrupted, in_flight = conn.execute(
            "SELECT COALESCE(SUM(in_flight_max * interrupted + resent), 0), COALESCE(SUM(interrupted), 0),"
            " COALESCE(MAX(in_flight_max), 0) FROM offsets WHERE plan_id = ? AND source = ?",
            (plan_id, source),
        ).fetchone()
        res.interrupted_runs, res.in_flight_max = interrupted, in_flight
        res.duplicates_explained = min(dups, budget)
        for kind, sym, cond, count in (
            ("missing", MISSING, "expected > seen", "expected - seen"),
            ("duplicates", DIFFERS, "seen > expected AND expected > 0", "seen"),
            ("unexpected", EXTRA, "expected = 0 AND seen > 0", "seen"),
        ):
            _name_ids(conn, plan_id, res, kind, sym, cond, count, lines, show)
        if lines.include_matches:
            for (eid,) in conn.execute(
                "SELECT event_id FROM event_ids WHERE plan_id = ? AND source = ? AND seen = expected AND seen > 0",
                (plan_id, source),
            ):
                lines.add(MATCH, event_path(source, eid))
    lines.flush()
    return [results[k] for k in sorted(results)]


def _name_ids(
    conn: sqlite3.Connection,
    plan_id: str,
    res: EventSourceResult,
    kind: str,
    sym: str,
    cond: str,
    count: str,
    lines: ProblemLines,
    show: int,
) -> None:
    shown = res.examples.setdefault(kind, [])
    cur = conn.execute(
        f"SELECT event_id, {count} FROM event_ids WHERE plan_id = ? AND source = ? AND {cond} ORDER BY event_id",
        (plan_id, res.source),
    )
    for eid, n in cur:
        lines.add(sym, event_path(res.source, eid))
        if len(shown) < show:
            shown.append(eid if kind == "missing" and n == 1 else f"{eid} (x{n})")
    if not shown:
        del res.examples[kind]


def _received_digest(conn: sqlite3.Connection, plan_id: str, source: str) -> str:
    """Sum of seen * hash mod 2**64, in SQL: two 32-bit halves so SQLite's 64-bit SUM cannot overflow."""
    hi, lo = conn.execute(
        "SELECT COALESCE(SUM(((id_hash >> 32) & 4294967295) * seen), 0),"
        " COALESCE(SUM((id_hash & 4294967295) * seen), 0) FROM event_ids WHERE plan_id = ? AND source = ? AND seen > 0",
        (plan_id, source),
    ).fetchone()
    return f"{((hi << 32) + lo) & _MASK64:016x}"


def topics_of(plan: Plan) -> list[str]:
    return sorted({item.topic for item in plan.event_items() if item.topic})


def drain_all(
    conn: sqlite3.Connection,
    cfg: Config,
    plan: Plan,
    settings: DrainSettings,
    report: Reporter = null_reporter,
    subscriber_factory: Callable[[], object] | None = None,
) -> list[Drain]:
    topics = topics_of(plan)
    if not topics:
        return []
    if subscriber_factory is None:
        from migrate.clients import subscriber_client

        subscriber_factory = functools.partial(subscriber_client, impersonate=cfg.project.impersonate_service_account)
    fold_pulls(conn)  # a verify that crashed after committing pulls: count them now
    subscriber = subscriber_factory()
    try:
        drains = [
            drain_topic(conn, subscriber, cfg.project.id, t, plan.plan_id, settings, cfg.transfer, report)
            for t in topics
        ]
    finally:
        close = getattr(subscriber, "close", None)
        if close is not None:
            close()
    fold_pulls(conn)
    return drains
