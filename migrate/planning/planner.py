"""`migrate plan`: inventory + config + destination listing -> plan files, report and Terraform variables.

Everything streams through TEMP tables of the ledger connection: the destination listing, the
classified files, and the manifest (a generator over an ordered SQL query). Nothing written depends
on the clock, so the same inventory, config and destination give byte-identical files.

Files written to project.plans_dir (their fields: migrate/plan.py, the one description of them):
  <name>.plan.json       the plan header (plan.write_plan)
  <name>.manifest.jsonl  the items: ObjectItem / EventItem
  <name>.skipped.jsonl   one SkippedEntry per inventoried entry not in the manifest
  <name>.md              report.render_report(plan document)
  <name>.tfvars.json     tfvars.build_tfvars for every configured bucket and topic
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from migrate.atomic import write_text_atomic
from migrate.config import Config
from migrate.errors import PlanError, UsageError
from migrate.ledger import latest_snapshot
from migrate.plan import EventItem, Item, ObjectItem, SkippedEntry, plan_paths, write_jsonl, write_plan
from migrate.planning import appended, diff, listing, summary
from migrate.planning.batching import assign_batches
from migrate.planning.report import render_report
from migrate.planning.tfvars import bucket_storage_classes, build_tfvars, tfvars_json
from migrate.progress import Event, Reporter, null_reporter

_PLAN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CONFLICTS_SHOWN = 20
TEMP_TABLES = ("plan_dest", "plan_src", "plan_obj", "plan_lsrc", "plan_ev", "plan_done_ev")


@dataclass(frozen=True)
class PlanResult:
    name: str
    plan_id: str
    snapshot_id: int
    config_digest: str
    paths: dict[str, Path]  # plan, manifest, skipped, report, tfvars
    targets: dict[str, list[str]]  # {"buckets": [...], "topics": [...]}
    summary: dict = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        return list(self.summary.get("warnings", []))

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "plan_id": self.plan_id,
            "snapshot_id": self.snapshot_id,
            "config_digest": self.config_digest,
            "files": {k: str(v) for k, v in self.paths.items()},
            "targets": self.targets,
            "summary": self.summary,
        }


def skipped_path(plans_dir: Path, name: str) -> Path:
    return Path(plans_dir) / f"{name}.skipped.jsonl"


def make_plan(
    cfg: Config,
    conn: sqlite3.Connection,
    name: str,
    *,
    report: Reporter = null_reporter,
    gcs_client=None,
) -> PlanResult:
    """Write plans/<name>.{plan.json,manifest.jsonl,skipped.jsonl,md,tfvars.json} and return the numbers."""
    if not _PLAN_NAME.match(name or ""):
        raise UsageError(f"plan name {name!r} is not usable as a file name", "use letters, digits, '.', '_' or '-'")
    snap = latest_snapshot(conn)
    if snap is None:
        raise PlanError("no finished inventory in the ledger", "run `migrate inventory` first")
    snapshot_id = int(snap["id"])
    try:
        return _plan(cfg, conn, name, snap, snapshot_id, report, gcs_client)
    finally:
        for t in TEMP_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS temp.{t}")


def _plan(cfg, conn, name, snap, snapshot_id, report, gcs_client) -> PlanResult:
    report(Event("phase", name="listing destination"))
    if gcs_client is None and cfg.catalog:
        from migrate.clients import gcs_endpoint

        gcs_client = gcs_endpoint(
            cfg.project.id, impersonate=cfg.project.impersonate_service_account, endpoint=cfg.storage.endpoint
        )
    listings = listing.load_destination(
        conn, gcs_client, [(s.bucket, s.prefix) for s in cfg.catalog], transfer=cfg.transfer, report=report
    )

    report(Event("phase", name="comparing"))
    diff.classify_objects(conn, cfg, snapshot_id)
    policy = cfg.transfer.conflict_policy
    if policy == "fail":
        n = conn.execute("SELECT COUNT(*) FROM plan_obj WHERE code = 'conflict'").fetchone()[0]
        if n:
            shown = diff.conflict_examples(conn, CONFLICTS_SHOWN)
            more = f" (and {n - len(shown)} more)" if n > len(shown) else ""
            raise PlanError(
                f"{n} object(s) already exist in the bucket with different content: {'; '.join(shown)}{more}",
                "set transfer.conflict_policy = 'skip' or 'overwrite', or remove those objects",
            )
    conflicts = diff.apply_conflict_policy(conn, policy)
    n, shown = diff.duplicate_destinations(conn, cfg, CONFLICTS_SHOWN)
    if n:
        more = f" (and {n - len(shown)} more)" if n > len(shown) else ""
        raise PlanError(
            f"{n} object name(s) would be written by more than one catalog source: {'; '.join(shown)}{more}",
            "give catalog sources that share a bucket prefixes that do not nest",
        )
    diff.classify_events(conn, cfg, snapshot_id)
    appended.resume_appended(conn, cfg)

    report(Event("phase", name="summarising"))
    summ = summary.build_summary(conn, cfg, listings, snapshot=snap, conflicts=conflicts)
    targets = {
        "buckets": sorted({s.bucket for s in cfg.catalog}),
        "topics": sorted({s.topic for s in cfg.listeners}),
    }
    plans_dir = Path(cfg.project.plans_dir)
    plans_dir.mkdir(parents=True, exist_ok=True)
    paths = plan_paths(plans_dir, name)
    paths["skipped"] = skipped_path(plans_dir, name)

    report(Event("phase", name="writing skipped list"))
    skipped_meta = write_jsonl(paths["skipped"], _skipped_rows(conn))
    header = {
        "snapshot_id": snapshot_id,
        "config_digest": cfg.digest(),
        "project": cfg.project.id,
        "targets": targets,
        "bucket_storage_classes": dict(sorted(bucket_storage_classes(cfg).items())),
        "service_account_id": cfg.targets.service_account_id,
        "inventory_hashed": bool(snap["hashed"]),
        "skipped": {"file": paths["skipped"].name, **skipped_meta},
        "summary": summ,
    }
    report(Event("phase", name="writing manifest"))
    plan = write_plan(plans_dir, name, header, _items(conn, cfg))
    write_text_atomic(paths["report"], render_report(plan.doc))
    write_text_atomic(paths["tfvars"], tfvars_json(build_tfvars(cfg, targets["buckets"], targets["topics"])))
    result = PlanResult(name, plan.plan_id, snapshot_id, cfg.digest(), paths, targets, summ)
    report(Event("finish", data=result.to_dict()))
    return result


def _items(conn: sqlite3.Connection, cfg: Config) -> Iterator[Item]:
    """Manifest items in plan order: objects in batches, then one batch per listener log file."""
    t = cfg.transfer
    seq = 0
    last_batch = 0
    rows = summary.planned_objects(conn)
    for batch, r in assign_batches(
        rows, size=lambda r: r["size"], key=lambda r: r["ord"], max_files=t.batch_max_files, max_bytes=t.batch_max_bytes
    ):
        seq += 1
        last_batch = batch
        yield ObjectItem(
            seq=seq,
            batch=batch,
            source=r["source"],
            relpath=r["relpath"],
            path=r["path"],
            bucket=r["bucket"],
            object=r["object"],
            size=r["size"],
            mtime_ns=r["mtime_ns"],
            inode=r["inode"],
            crc32c=r["crc32c"],
            storage_class=r["storage_class"],
            overwrite=bool(r["overwrite"]),
            replace_generation=r["d_generation"] if r["overwrite"] else None,
        )
    for r in summary.planned_logs(conn):
        seq += 1
        last_batch += 1
        yield EventItem(
            seq=seq,
            batch=last_batch,
            source=r["source"],
            relpath=r["path"],
            path=r["path"],
            topic=r["topic"],
            size=r["size"],
            mtime_ns=r["mtime_ns"],
            inode=r["inode"],
            events=r["events"],
            event_bytes=r["event_bytes"],
            malformed=r["malformed"],
            oversized=r["oversized"],
            id_digest=r["id_digest"],
            format=r["format"],
            replayed_before=bool(r["changed_since_replay"]),
            crc32c=r["crc32c"],
            start_offset=r["start_offset"] or 0,
            start_line=(r["start_line"] or 0) if r["start_offset"] else 0,
        )


def _skipped_rows(conn: sqlite3.Connection) -> Iterator[dict]:
    for r in conn.execute(
        "SELECT source, relpath, kind, size, code, detail, bucket, object FROM plan_obj"
        " WHERE code IS NOT NULL ORDER BY ord, relpath"
    ):
        yield SkippedEntry(ObjectItem.kind, r[0], r[1], r[2], r[3], r[4], r[5], bucket=r[6], object=r[7]).to_json()
    for r in conn.execute(
        "SELECT source, path, size, code, detail, topic FROM plan_ev WHERE code IS NOT NULL ORDER BY ord, path"
    ):
        yield SkippedEntry(EventItem.kind, r[0], r[1], "log", r[2], r[3], r[4], topic=r[5]).to_json()
