"""Events: re-read the source logs, drain the verification subscription (drain.py), compare hashed ids in SQL.

Both sides meet in the ledger table `event_ids` (plan_id, source, id_hash -> event_id, seen, expected):
  seen      messages drained (verification/drain.py). Each pull is appended to the ledger table
            `verify_pulls` and committed before it is acked, so a crash never loses one; its unique
            (topic, message_id) keeps a redelivery from counting twice. Unfolded pulls are folded into
            `seen` in one sorted INSERT .. SELECT .. GROUP BY .. ON CONFLICT merge. Draining acks, so a second
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

import sqlite3

from migrate.config import Config
from migrate.errors import SourceError
from migrate.hashing import IdDigest, id_hash, signed64
from migrate.ledger import items, transaction
from migrate.ledger.states import ItemKind
from migrate.plan import Plan
from migrate.progress import Event, Reporter, null_reporter
from migrate.verification.model import EventSourceResult
from migrate.verification.problems import DIFFERS, ERROR, EXTRA, MATCH, MISSING, ProblemLines, event_path, file_path

BATCH = 5000
_MASK64 = (1 << 64) - 1

EXPECTED_TABLE = """
DROP TABLE IF EXISTS temp.verify_expected;
CREATE TEMP TABLE verify_expected(source TEXT NOT NULL, id_hash INTEGER NOT NULL, event_id TEXT NOT NULL);
"""


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
