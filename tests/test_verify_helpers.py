"""Builds the state a finished `migrate run` leaves behind, without depending on `migrate run`.

A plan (plan.write_plan + manifest) over a small catalog and one JSONL listener log; the objects
uploaded with the GCS client; the events published with a PublisherClient carrying the run's
attributes; the ledger's items marked done. Tests then break one thing and call verify.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from migrate import clients
from migrate.config import Config, load_config
from migrate.hashing import crc32c_of_bytes
from migrate.ledger import connect
from migrate.ledger.items import register_items
from migrate.plan import EventItem, Item, ObjectItem, Plan, canonical, write_plan
from migrate.sources.eventlog import iter_records, scan_file, source_attribute
from migrate.verification.drain import DrainSettings
from migrate.verification.verify import VerifyReport, verify_plan

# Draining stops once every expected event is seen, else after 2 s with nothing arriving and nothing in flight.
FAST_DRAIN = DrainSettings(pull_timeout=1.0, quiet_seconds=2.0, max_seconds=120)
PREFIX = "audio/"


@dataclass
class World:
    cfg: Config
    plan: Plan
    bucket: str | None
    topic: str | None
    gcs: object
    objects: dict[str, bytes] = field(default_factory=dict)  # relpath -> bytes
    log: Path | None = None
    event_ids: list[str] = field(default_factory=list)

    def name(self, relpath: str) -> str:
        return PREFIX + relpath

    def gs(self, relpath: str) -> str:
        return f"gs://{self.bucket}/{self.name(relpath)}"

    def verify(self, **kw) -> VerifyReport:
        kw.setdefault("drain", FAST_DRAIN)
        return verify_plan(self.cfg, self.plan.path, **kw)

    def listing(self) -> list[str]:
        path = self.plan.path.parent / f"{self.plan.name}.verify.txt"
        return path.read_text(encoding="utf-8").splitlines()

    def records(self) -> list:
        listener = self.cfg.listener_source("plays")
        return [r for r in iter_records(str(self.log), listener) if r.error is None]

    def publish(self, records=None) -> list[str]:
        """Publish records (default: every valid one) as the run would; returns message ids."""
        records = self.records() if records is None else records
        pub = clients.publisher_client()
        try:
            path = pub.topic_path(self.cfg.project.id, self.topic)
            futures = [
                pub.publish(
                    path,
                    r.data,
                    event_id=r.event_id,
                    event_time=r.event_time or "",
                    source=source_attribute(str(self.log), r.line),
                    plan_id=self.plan.plan_id,
                    listener="plays",
                )
                for r in records
            ]
            return [f.result(timeout=60) for f in futures]
        finally:
            pub.transport.close()


def build_world(
    tmp_path: Path,
    write_config,
    gcs_client,
    *,
    bucket: str | None = None,
    topic: str | None = None,
    n_objects: int = 6,
    n_events: int = 12,
    upload: bool = True,
    publish: bool = True,
    skipped: list[dict] | None = None,
) -> World:
    root = tmp_path / "catalog"
    root.mkdir()
    objects: dict[str, bytes] = {}
    for i in range(n_objects if bucket else 0):
        rel = f"artist-{i % 2}/track {i:02d}.ogg"
        data = bytes((i * 7 + j) % 251 for j in range(100 + 37 * i))
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        objects[rel] = data
    log = tmp_path / "logs" / "plays-20240101.jsonl"
    log.parent.mkdir()
    lines = [
        json.dumps({"event_id": f"ev-{i:04d}", "track_id": i, "ts": "2024-01-01T00:00:00Z"}) for i in range(n_events)
    ]
    lines.insert(3, "{not json")  # malformed: inventory excludes it, so verify must too
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")

    sections: dict = {}
    if bucket:
        sections["catalog"] = [{"name": "music", "root": str(root), "bucket": bucket, "prefix": PREFIX}]
    if topic:
        sections["listeners"] = [
            {
                "name": "plays",
                "paths": [str(log)],
                "topic": topic,
                "event_id_field": "event_id",
                "event_time_field": "ts",
            }
        ]
    cfg = load_config(write_config(**sections))

    items: list[Item] = []
    for rel, data in objects.items():
        st = (root / rel).stat()
        items.append(
            ObjectItem(
                seq=len(items) + 1,
                batch=1,
                source="music",
                relpath=rel,
                path=str(root / rel),
                bucket=bucket,
                object=PREFIX + rel,
                size=len(data),
                mtime_ns=st.st_mtime_ns,
                inode=st.st_ino,
                crc32c=crc32c_of_bytes(data),
                storage_class="STANDARD",
            )
        )
    if topic:
        scan = scan_file(str(log), cfg.listener_source("plays"))
        items.append(
            EventItem(
                seq=len(items) + 1,
                batch=2,
                source="plays",
                relpath=str(log),
                path=str(log),
                topic=topic,
                size=scan.size,
                mtime_ns=scan.mtime_ns,
                inode=scan.inode,
                events=scan.events,
                malformed=scan.malformed,
                oversized=scan.oversized,
                id_digest=scan.digest.hex,
                format="jsonl",
            )
        )
    header = {"snapshot_id": 1, "project": cfg.project.id, "config_digest": cfg.digest()}
    if skipped is not None:
        plans_dir = Path(cfg.project.plans_dir)
        plans_dir.mkdir(parents=True, exist_ok=True)
        body = b"".join(canonical(row) + b"\n" for row in skipped)
        (plans_dir / "wave1.skipped.jsonl").write_bytes(body)
        header["skipped"] = {
            "file": "wave1.skipped.jsonl",
            "sha256": hashlib.sha256(body).hexdigest(),
            "items": len(skipped),
        }
    plan = write_plan(Path(cfg.project.plans_dir), "wave1", header, items)

    world = World(cfg, plan, bucket, topic, gcs_client, objects, log if topic else None)
    conn = connect(cfg.project.state_dir)
    try:
        register_items(conn, plan)
        if upload:
            for rel, data in objects.items():
                blob = gcs_client.bucket(bucket).blob(world.name(rel))
                blob.upload_from_string(data, if_generation_match=0, checksum="crc32c")
                conn.execute(
                    "UPDATE items SET state = 'done', generation = ? WHERE plan_id = ? AND object = ?",
                    (blob.generation, plan.plan_id, world.name(rel)),
                )
        if topic:
            world.event_ids = [r.event_id for r in world.records()]
            if publish:
                world.publish()
                conn.execute("UPDATE items SET state = 'done' WHERE plan_id = ? AND kind = 'events'", (plan.plan_id,))
    finally:
        conn.close()
    return world
