"""The plan on disk: plans/<name>.plan.json plus plans/<name>.manifest.jsonl.

The plan id is a hash of the canonical plan document (which includes the manifest's
sha256), so editing either file is detected. Nothing time-dependent is written:
the same inventory and config give the same bytes.

Manifest lines (one JSON object per item, keys sorted):
  object: seq, kind="object", batch, source, relpath, path, bucket, object, size,
          mtime_ns, inode, crc32c, storage_class
  events: seq, kind="events", batch, source, relpath, path, topic, size, mtime_ns,
          inode, events, id_digest, format
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrate.errors import PlanError
from migrate.ledger import latest_snapshot, now, transaction

PLAN_SCHEMA_VERSION = 1
INSERT_BATCH = 5000


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def compute_plan_id(doc: dict) -> str:
    body = {k: v for k, v in doc.items() if k != "plan_id"}
    return hashlib.sha256(canonical(body)).hexdigest()[:24]


@dataclass(frozen=True)
class Plan:
    path: Path
    doc: dict

    @property
    def plan_id(self) -> str:
        return self.doc["plan_id"]

    @property
    def name(self) -> str:
        return self.doc["name"]

    @property
    def snapshot_id(self) -> int:
        return int(self.doc["snapshot_id"])

    @property
    def manifest_path(self) -> Path:
        return self.path.parent / self.doc["manifest"]["file"]

    @property
    def item_count(self) -> int:
        return int(self.doc["manifest"]["items"])

    def iter_items(self) -> Iterator[dict]:
        with open(self.manifest_path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)

    def events_per_item(self) -> dict[int, int]:
        """seq -> the valid events the plan expects from that log item ({} if the manifest is unreadable).

        The manifest's count, not the inventory's: a tail replay expects only its appended lines.
        """
        out: dict[int, int] = {}
        try:
            for it in self.iter_items():
                if it.get("kind") == "events" and isinstance(it.get("events"), int):
                    out[it["seq"]] = it["events"]
        except (OSError, ValueError):
            return {}
        return out


def plan_paths(plans_dir: Path, name: str) -> dict[str, Path]:
    return {
        "plan": plans_dir / f"{name}.plan.json",
        "manifest": plans_dir / f"{name}.manifest.jsonl",
        "report": plans_dir / f"{name}.md",
        "tfvars": plans_dir / f"{name}.tfvars.json",
    }


def write_plan(plans_dir: Path, name: str, header: dict, items: Iterable[dict]) -> Plan:
    """Stream items to the manifest, then write the plan document. Returns the loaded Plan.

    header holds everything but schema_version, name, manifest and plan_id.
    """
    plans_dir.mkdir(parents=True, exist_ok=True)
    paths = plan_paths(plans_dir, name)
    digest = hashlib.sha256()
    count = 0
    tmp = paths["manifest"].with_suffix(".jsonl.tmp")
    with open(tmp, "wb") as fh:
        for item in items:
            line = canonical(item) + b"\n"
            digest.update(line)
            fh.write(line)
            count += 1
    os.replace(tmp, paths["manifest"])
    doc = dict(header)
    doc.update(
        schema_version=PLAN_SCHEMA_VERSION,
        name=name,
        manifest={"file": paths["manifest"].name, "sha256": digest.hexdigest(), "items": count},
    )
    doc["plan_id"] = compute_plan_id(doc)
    write_text_atomic(paths["plan"], json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return Plan(paths["plan"], doc)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_plan(path: str | Path) -> Plan:
    """Read a plan and prove it is intact: schema, plan id and manifest hash."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"plan file {path} not found", "run `migrate plan --name <name>` first") from None
    except (OSError, ValueError) as exc:
        raise PlanError(f"plan file {path} is unreadable: {exc}", "re-create it with `migrate plan`") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != PLAN_SCHEMA_VERSION:
        raise PlanError(f"{path} is not a plan of schema {PLAN_SCHEMA_VERSION}", "re-create it with `migrate plan`")
    if doc.get("plan_id") != compute_plan_id(doc):
        raise PlanError(
            f"{path} was modified after planning: its content no longer matches plan id {doc.get('plan_id')}",
            "do not edit plan files; re-create it with `migrate plan`",
        )
    plan = Plan(path, doc)
    mpath = plan.manifest_path
    digest = hashlib.sha256()
    try:
        with open(mpath, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        raise PlanError(
            f"manifest {mpath} of plan {path} is missing", "keep the manifest next to the plan file"
        ) from None
    if digest.hexdigest() != doc["manifest"]["sha256"]:
        raise PlanError(
            f"manifest {mpath} was modified after planning (sha256 differs from plan {plan.plan_id})",
            "do not edit plan files; re-create them with `migrate plan`",
        )
    return plan


def register_items(conn: sqlite3.Connection, plan: Plan) -> None:
    """Insert the plan's items into the ledger once; later calls are no-ops."""
    row = conn.execute("SELECT COUNT(*) FROM items WHERE plan_id=?", (plan.plan_id,)).fetchone()
    if row[0] == plan.item_count:
        return
    pid = plan.plan_id
    batch: list[tuple] = []
    starts: list[tuple] = []

    def flush() -> None:
        conn.executemany(
            "INSERT OR IGNORE INTO items(plan_id, seq, kind, batch, source, relpath, bucket, object, topic, size,"
            " mtime_ns, inode, crc32c, updated_at) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            batch,
        )
        batch.clear()

    with transaction(conn):
        conn.execute(
            "INSERT OR IGNORE INTO plans(plan_id, name, snapshot_id, created_at, path) VALUES(?,?,?,?,?)",
            (pid, plan.name, plan.snapshot_id, now(), str(plan.path)),
        )
        t = now()
        for it in plan.iter_items():
            batch.append(
                (
                    pid,
                    it["seq"],
                    it["kind"],
                    it["batch"],
                    it["source"],
                    it["relpath"],
                    it.get("bucket"),
                    it.get("object"),
                    it.get("topic"),
                    it["size"],
                    it.get("mtime_ns"),
                    it.get("inode"),
                    it.get("crc32c"),
                    t,
                )
            )
            if len(batch) >= INSERT_BATCH:
                flush()
            if it.get("start_offset"):
                # a log that only grew since an earlier replay: this plan replays it from there on
                starts.append((pid, it["source"], it["relpath"], it["start_offset"], it.get("start_line") or 0))
        if batch:
            flush()
        conn.executemany(
            "INSERT OR IGNORE INTO offsets(plan_id, source, path, watermark, line) VALUES(?,?,?,?,?)", starts
        )


def drift(conn: sqlite3.Connection, plan: Plan, limit: int = 20) -> tuple[int, list[str]]:
    """Files whose inventory changed since the plan was made: (count, up to `limit` names).

    Compares the plan's items with the newest inventory; nothing drifts if no inventory ran since.
    """
    latest = latest_snapshot(conn)
    if latest is None or latest["id"] == plan.snapshot_id:
        return 0, []
    register_items(conn, plan)
    sql = """
      SELECT i.source, i.relpath FROM items i
      LEFT JOIN files f ON f.source = i.source AND f.relpath = i.relpath
      WHERE i.plan_id = :pid AND i.kind = 'object' AND i.state != 'done' AND (
        f.relpath IS NULL OR f.seen != :snap OR f.kind != 'file' OR f.size != i.size OR f.mtime_ns != i.mtime_ns
        OR f.inode != i.inode OR (f.crc32c IS NOT NULL AND i.crc32c IS NOT NULL AND f.crc32c != i.crc32c))
      UNION ALL
      SELECT i.source, i.relpath FROM items i
      LEFT JOIN event_files e ON e.source = i.source AND e.path = i.relpath
      WHERE i.plan_id = :pid AND i.kind = 'events' AND i.state != 'done' AND (
        e.path IS NULL OR e.seen != :snap OR e.size != i.size OR e.mtime_ns != i.mtime_ns OR e.inode != i.inode)
    """
    names: list[str] = []
    count = 0
    for row in conn.execute(sql, {"pid": plan.plan_id, "snap": latest["id"]}):
        count += 1
        if len(names) < limit:
            names.append(f"{row['source']}:{row['relpath']}")
    return count, names
