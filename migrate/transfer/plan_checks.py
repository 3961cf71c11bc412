"""Refuse, before anything moves, a plan that does not belong to this ledger's inventory (another
ledger's snapshot) or whose files changed since planning (drift; `--allow-drift` skips the check)."""

from __future__ import annotations

from migrate.errors import PlanError
from migrate.ledger import latest_snapshot
from migrate.ledger.items import drift
from migrate.plan import ObjectItem, Plan

DRIFT_SHOWN = 20
IDENTITY_SAMPLE = 200


def check_identity(conn, plan: Plan) -> None:
    """Refuse a plan made from another ledger's inventory (same snapshot number, other files).

    The plan's snapshot must exist here, and a sample of its items must match that snapshot's
    files (size, mtime, inode): they always do for a plan made from this ledger.
    """
    fix = f"run it with the config (state_dir) it was planned with, or re-plan: `migrate plan --name {plan.name}`"
    snap = conn.execute("SELECT id FROM snapshots WHERE id=?", (plan.snapshot_id,)).fetchone()
    if snap is None:
        raise PlanError(
            f"plan {plan.name} was made from inventory snapshot {plan.snapshot_id}, which this ledger does not have",
            fix,
        )
    checked = 0
    for item in plan.iter_items():
        if checked >= IDENTITY_SAMPLE:
            break
        checked += 1
        if isinstance(item, ObjectItem):
            row = conn.execute(
                "SELECT size, mtime_ns, inode FROM files WHERE source=? AND relpath=?", (item.source, item.relpath)
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT size, mtime_ns, inode FROM event_files WHERE source=? AND path=?", (item.source, item.relpath)
            ).fetchone()
        if row is None:
            if latest_snapshot(conn)["id"] == plan.snapshot_id:
                raise PlanError(f"plan {plan.name} names {item.source}:{item.relpath}, unknown to this inventory", fix)
            continue  # gone since: drift reports it
        same = (row[0], row[1], row[2]) == (item.size, item.mtime_ns, item.inode)
        if not same and latest_snapshot(conn)["id"] == plan.snapshot_id:
            raise PlanError(
                f"plan {plan.name} does not match this ledger's inventory ({item.source}:{item.relpath} differs);"
                " it was made from another inventory",
                fix,
            )


def check_drift(conn, plan: Plan) -> None:
    count, names = drift(conn, plan, limit=DRIFT_SHOWN)
    if count:
        more = f" and {count - len(names)} more" if count > len(names) else ""
        raise PlanError(
            f"plan {plan.name}: {count} planned file(s) changed since planning: {', '.join(names)}{more}",
            f"re-run `migrate inventory` and `migrate plan --name {plan.name}`, or pass --allow-drift",
        )
