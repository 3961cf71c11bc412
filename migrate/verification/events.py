"""Events: drain the verification subscription, re-read the source logs, compare hashed ids in SQL.

Both sides meet in the ledger table `event_ids` (plan_id, source, id_hash -> event_id, seen, expected):
  seen      incremented for every message drained (pull -> commit -> ack, so a crash never loses one;
            a redelivered message id is recognised through `verify_messages` and not counted twice).
            Draining acks, so a second verify cannot read those messages again: `seen` persists,
            and a re-run reports the same result plus whatever arrived since.
  expected  recomputed on every verify by re-reading the plan's log files with the same reader the
            run uses (sources.eventlog.iter_records): valid records minus the ones quarantined.

Then missing = expected > seen, duplicates = seen > expected > 0, unexpected = expected = 0 < seen,
all as SQL aggregates; only up to --show ids per kind come back to Python. Messages of other plans
on the same topic are kept under their own plan id for their own verify.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from migrate.config import Config, TransferConfig
from migrate.errors import SourceError, TargetError
from migrate.hashing import IdDigest, id_hash, signed64
from migrate.ledger import transaction
from migrate.names import verification_subscription
from migrate.planning.planfile import Plan
from migrate.progress import Event, Reporter, null_reporter
from migrate.retry import describe, retrying
from migrate.verification.model import Drain, EventSourceResult
from migrate.verification.problems import DIFFERS, ERROR, EXTRA, MATCH, MISSING, ProblemLines, event_path, file_path

BATCH = 5000
ACK_CHUNK = 1000
_MASK64 = (1 << 64) - 1
RUN_PROBLEM_STATES = ("failed", "source-changed", "conflict")

PULLED_TABLE = """
DROP TABLE IF EXISTS temp.verify_pulled;
CREATE TEMP TABLE verify_pulled(
  message_id TEXT PRIMARY KEY, plan_id TEXT NOT NULL, source TEXT NOT NULL, id_hash INTEGER NOT NULL,
  event_id TEXT NOT NULL) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class DrainSettings:
    """How long to keep pulling. An empty pull costs up to `pull_timeout` seconds."""

    max_messages: int = 1000  # per pull call (Pub/Sub's maximum)
    pull_timeout: float = 5.0
    empty_pulls: int = 3  # stop after this many empty pulls in a row
    max_seconds: float = 3600.0  # stop anyway after this long (the drain is then incomplete)


def quarantine_path(state_dir: Path, plan_id: str) -> Path:
    return Path(state_dir) / "quarantine" / f"{plan_id}.jsonl"


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
    conn.executescript(PULLED_TABLE)
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
    conn.execute("DROP TABLE IF EXISTS temp.verify_pulled")
    return d


def _persist(conn: sqlite3.Connection, topic: str, plan_id: str, msgs: list, d: Drain) -> None:
    rows = []
    for m in msgs:
        d.received += 1
        a = m.message.attributes
        pid, eid, listener = a.get("plan_id"), a.get("event_id"), a.get("listener")
        if not pid or eid is None or not listener:
            d.foreign += 1
            continue
        rows.append((m.message.message_id, pid, listener, signed64(id_hash(eid)), eid))
    with transaction(conn):
        conn.execute("DELETE FROM temp.verify_pulled")
        conn.executemany(
            "INSERT OR IGNORE INTO temp.verify_pulled(message_id, plan_id, source, id_hash, event_id)"
            " VALUES(?,?,?,?,?)",
            rows,
        )
        conn.execute(
            "DELETE FROM temp.verify_pulled WHERE EXISTS (SELECT 1 FROM verify_messages v"
            " WHERE v.topic = ? AND v.message_id = verify_pulled.message_id)",
            (topic,),
        )
        conn.execute(
            "INSERT INTO verify_messages(topic, message_id) SELECT ?, message_id FROM temp.verify_pulled", (topic,)
        )
        conn.execute(
            "INSERT INTO event_ids(plan_id, source, id_hash, event_id, seen)"
            " SELECT plan_id, source, id_hash, MIN(event_id), COUNT(*) FROM temp.verify_pulled WHERE true"
            " GROUP BY plan_id, source, id_hash"
            " ON CONFLICT(plan_id, source, id_hash) DO UPDATE SET seen = seen + excluded.seen"
        )
        mine, new = conn.execute(
            "SELECT COALESCE(SUM(plan_id = ?), 0), COUNT(*) FROM temp.verify_pulled", (plan_id,)
        ).fetchone()
    d.new += new
    d.redelivered += len(rows) - new
    d.this_plan += mine
    d.other_plans += new - mine


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


def load_quarantine(path: Path) -> dict[str, dict[int, str]]:
    """file -> {byte offset: reason} of the run's quarantine records (small: bad records only)."""
    out: dict[str, dict[int, str]] = {}
    if not path.exists():
        return out
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                out.setdefault(str(rec["file"]), {})[int(rec["offset"])] = str(rec.get("reason", ""))
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line after a crash
    return out


def event_items(plan: Plan) -> Iterator[dict]:
    for item in plan.iter_items():
        if item.get("kind") == "events":
            yield item


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
    """Re-read every planned log file; upsert expected counts of hashed ids; per-source digests."""
    from migrate.sources.eventlog import iter_records

    pid = plan.plan_id
    results: dict[str, EventSourceResult] = {}
    inventory: dict[str, IdDigest] = {}
    reread: dict[str, IdDigest] = {}
    expected: dict[str, IdDigest] = {}
    states = {
        r[0]: (r[1], r[2])
        for r in conn.execute(
            "SELECT relpath, state, last_error FROM items WHERE plan_id = ? AND kind = 'events' AND state IN (?,?,?)",
            (pid, *RUN_PROBLEM_STATES),
        )
    }
    with transaction(conn):
        conn.execute("UPDATE event_ids SET expected = 0 WHERE plan_id = ? AND expected != 0", (pid,))
    sql = (
        "INSERT INTO event_ids(plan_id, source, id_hash, event_id, expected) VALUES(?,?,?,?,1)"
        " ON CONFLICT(plan_id, source, id_hash) DO UPDATE SET expected = expected + 1"
    )
    batch: list[tuple] = []

    def flush() -> None:
        with transaction(conn):
            conn.executemany(sql, batch)
        batch.clear()

    for item in event_items(plan):
        source, path, relpath = item["source"], item.get("path") or item["relpath"], item["relpath"]
        res = results.setdefault(source, EventSourceResult(source=source, topic=item.get("topic") or ""))
        res.files += 1
        res.inventory_events += int(item.get("events") or 0)
        inventory.setdefault(source, IdDigest()).merge(
            IdDigest.from_hex(int(item.get("events") or 0), item.get("id_digest"))
        )
        exp = expected.setdefault(source, IdDigest())
        seen_src = reread.setdefault(source, IdDigest())
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
            for rec in iter_records(path, listener):
                if rec.error is not None or rec.event_id is None:
                    continue
                h = id_hash(rec.event_id)
                seen_src.add_hash(h)
                if rec.offset in q:
                    res.quarantined_valid += 1
                    continue
                exp.add_hash(h)
                batch.append((pid, source, signed64(h), rec.event_id))
                if len(batch) >= BATCH:
                    flush()
        except SourceError as exc:
            res.unreadable.append(f"{path} ({exc.message})")
            lines.add(ERROR, file_path(path))
    if batch:
        flush()
    for source, res in results.items():
        inv, rr, exp = inventory[source], reread[source], expected[source]
        res.inventory_digest = inv.hex
        res.expected_events, res.expected_digest = exp.count, exp.hex
        res.source_drift = not res.unreadable and (rr.count, rr.total) != (inv.count, inv.total)
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
            "SELECT COALESCE(SUM(in_flight_max * interrupted), 0), COALESCE(SUM(interrupted), 0),"
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
    total = 0
    for h, n in conn.execute(
        "SELECT id_hash, seen FROM event_ids WHERE plan_id = ? AND source = ? AND seen > 0", (plan_id, source)
    ):
        total = (total + (h & _MASK64) * n) & _MASK64
    return f"{total:016x}"


def topics_of(plan: Plan) -> list[str]:
    return sorted({item["topic"] for item in event_items(plan) if item.get("topic")})


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
        from migrate.clients import subscriber_client as subscriber_factory
    subscriber = subscriber_factory()
    try:
        return [
            drain_topic(conn, subscriber, cfg.project.id, t, plan.plan_id, settings, cfg.transfer, report)
            for t in topics
        ]
    finally:
        close = getattr(subscriber, "close", None)
        if close is not None:
            close()
