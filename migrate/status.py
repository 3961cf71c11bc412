"""`migrate status`: per plan, where the ledger stands. Reads the ledger only; touches no target."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from migrate.config import Config
from migrate.ledger import connect, items, ledger_path
from migrate.ledger.states import ItemKind, ItemState


@dataclass
class LastRun:
    run_id: int
    started_at: float
    finished_at: float | None
    status: str
    objects: int
    bytes: int
    events: int
    elapsed: float | None
    rate: float | None  # bytes/s of the object copy
    events_per_second: float | None


@dataclass
class PlanStatus:
    plan_id: str
    name: str
    path: str
    objects: dict[str, int] = field(default_factory=dict)  # state -> count
    object_bytes: dict[str, int] = field(default_factory=dict)  # state -> bytes
    event_files: dict[str, int] = field(default_factory=dict)
    events_published: int = 0
    quarantined: int = 0
    max_possible_duplicates: int = 0
    retries: int = 0
    runs: int = 0
    last_run: LastRun | None = None
    last_copy_rate: float | None = None  # bytes/s of the newest run that copied anything

    @property
    def complete(self) -> bool:
        """Every planned item is done (source-changed and conflict items are not)."""
        return not any(self.objects.get(s) or self.event_files.get(s) for s in ItemState if s != ItemState.DONE)

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["complete"] = self.complete
        return doc


@dataclass
class StatusReport:
    ledger: str
    plans: list[PlanStatus] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"ledger": self.ledger, "plans": [p.to_dict() for p in self.plans]}


def status(cfg: Config) -> StatusReport:
    """Every plan the ledger knows (registered by a run or a verify), newest first."""
    conn = connect(cfg.project.state_dir, create=False)
    try:
        report = StatusReport(str(ledger_path(cfg.project.state_dir)))
        for row in conn.execute("SELECT plan_id, name, path FROM plans ORDER BY created_at DESC, name").fetchall():
            report.plans.append(_plan_status(conn, row[0], row[1], row[2]))
        return report
    finally:
        conn.close()


def _plan_status(conn, plan_id: str, name: str, path: str) -> PlanStatus:
    ps = PlanStatus(plan_id, name, path)
    ps.objects = {s.value: 0 for s in ItemState}
    ps.object_bytes = {s.value: 0 for s in ItemState}
    ps.event_files = {s.value: 0 for s in ItemState}
    for kind, state, count, size, retries in items.counts_by_state(conn, plan_id):
        if kind == ItemKind.OBJECT:
            ps.objects[state] = ps.objects.get(state, 0) + count
            ps.object_bytes[state] = ps.object_bytes.get(state, 0) + size
        else:
            ps.event_files[state] = ps.event_files.get(state, 0) + count
        ps.retries += retries
    row = conn.execute(
        "SELECT COALESCE(SUM(published), 0), COALESCE(SUM(quarantined), 0),"
        " COALESCE(SUM(interrupted * in_flight_max), 0) FROM offsets WHERE plan_id=?",
        (plan_id,),
    ).fetchone()
    ps.events_published, ps.quarantined, ps.max_possible_duplicates = int(row[0]), int(row[1]), int(row[2])
    ps.runs = conn.execute("SELECT COUNT(*) FROM runs WHERE plan_id=?", (plan_id,)).fetchone()[0]
    last = conn.execute("SELECT * FROM runs WHERE plan_id=? ORDER BY run_id DESC LIMIT 1", (plan_id,)).fetchone()
    if last is not None:
        ps.last_run = _last_run(last)
    copied = conn.execute(
        "SELECT * FROM runs WHERE plan_id=? AND bytes > 0 ORDER BY run_id DESC LIMIT 1", (plan_id,)
    ).fetchone()
    if copied is not None:
        ps.last_copy_rate = _last_run(copied).rate
    return ps


def _last_run(r) -> LastRun:
    summary: dict = {}
    if r["summary"]:
        try:
            summary = json.loads(r["summary"])
        except ValueError:
            summary = {}
    objects = summary.get("objects") or {}
    events = summary.get("events") or {}
    elapsed = (r["finished_at"] - r["started_at"]) if r["finished_at"] else None
    ev_rate = None
    if events and elapsed:
        ev_rate = round(int(events.get("events", 0)) / max(summary.get("elapsed") or elapsed, 1e-9), 1)
    return LastRun(
        run_id=r["run_id"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        status=r["status"],
        objects=r["objects"],
        bytes=r["bytes"],
        events=r["events"],
        elapsed=round(elapsed, 3) if elapsed is not None else None,
        rate=objects.get("rate"),
        events_per_second=ev_rate,
    )
