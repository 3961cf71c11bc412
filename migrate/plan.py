"""The plan contract: plans/<name>.plan.json (the header) plus plans/<name>.manifest.jsonl (the items).

Every stage reads plans through this module: `load_plan` proves a plan intact, `Plan.iter_items`
yields typed `ObjectItem` / `EventItem`, `write_plan` writes both files. The plan id is a hash of the
canonical plan document (which includes the manifest's sha256), so editing either file is detected.
Nothing time-dependent is written: the same inventory and config give the same bytes.

Plan document (JSON, keys sorted):
  schema_version  PLAN_SCHEMA_VERSION
  plan_id         sha256 of the canonical document without plan_id, first 24 hex digits
  name            the plan name; files are plans/<name>.*
  manifest        {"file": "<name>.manifest.jsonl", "sha256", "items"}
  snapshot_id     the inventory snapshot planned from
  config_digest   Config.digest() of the config planned with
  project         the Google Cloud project id
  targets         {"buckets": [...], "topics": [...]}: everything run writes to
  bucket_storage_classes, service_account_id   for the tfvars and preflight
  inventory_hashed  whether the inventory hashed the files (CRC32C known before upload)
  skipped         {"file": "<name>.skipped.jsonl", "sha256", "items"}: entries not in the manifest
  summary         the numbers the report shows (planning/summary.py)

Manifest lines (one JSON object per item, keys sorted, in plan order), the fields of:
  ObjectItem  seq, kind="object", batch, source, relpath, path, bucket, object, size, mtime_ns, inode,
              crc32c, storage_class, overwrite (bool: true only under conflict_policy = overwrite for an
              object that exists with other content; then if_generation_match=0 is not used) and, when
              true, replace_generation (the generation listed at plan time)
  EventItem   seq, kind="events", batch, source, relpath, path, topic, size, mtime_ns, inode, events,
              event_bytes, malformed, oversized, id_digest, format, replayed_before (bool: replayed whole
              again after an earlier run), crc32c (plain logs), and for a log that only grew since an
              earlier replay start_offset / start_line (planning/appended.py)

Skipped list lines (plans/<name>.skipped.jsonl), plan order, keys sorted: kind ("object" | "events"),
source, relpath, entry (files.kind or "log"), size, reason (a SKIP_REASONS code), detail, and
bucket/object or topic.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from migrate.atomic import atomic_open, write_text_atomic
from migrate.errors import PlanError

PLAN_SCHEMA_VERSION = 1


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def compute_plan_id(doc: dict) -> str:
    body = {k: v for k, v in doc.items() if k != "plan_id"}
    return hashlib.sha256(canonical(body)).hexdigest()[:24]


# --- skip reasons: why an inventoried entry is not in the manifest (skipped list `reason`) ---------

SKIP_ALREADY_MIGRATED = "already-migrated"
SKIP_COMPLETED_EARLIER = "completed-earlier"
SKIP_CONFLICT = "conflict"
SKIP_REPLAYED_EARLIER = "replayed-earlier"
# reason code -> what the report says about it (planning/diff.py assigns them)
SKIP_REASONS: dict[str, str] = {
    SKIP_ALREADY_MIGRATED: "already in the bucket with equal size and CRC32C",
    SKIP_COMPLETED_EARLIER: "copied by an earlier run (the generation it wrote is still live)",
    SKIP_CONFLICT: "in the bucket with different content (conflict_policy = skip)",
    "symlink": "symbolic link (not followed)",
    "anomaly": "cannot be transferred (inventory anomaly)",
    "rejected-name": "object name GCS would reject",
    "empty-log": "log file holds no lines",
    "anomalous-log": "log file cannot be read",
    SKIP_REPLAYED_EARLIER: "fully replayed by an earlier run",
}
# reasons meaning "the destination already has it": not a problem, not a loss
DONE_SKIP_REASONS = (SKIP_ALREADY_MIGRATED, SKIP_COMPLETED_EARLIER, SKIP_REPLAYED_EARLIER)


# --- the items ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectItem:
    """One catalog file to copy to gs://bucket/object."""

    seq: int
    batch: int
    source: str
    relpath: str
    path: str
    bucket: str
    object: str
    size: int
    mtime_ns: int | None = None
    inode: int | None = None
    crc32c: str | None = None
    storage_class: str | None = None
    overwrite: bool = False
    replace_generation: int | None = None

    kind: ClassVar[str] = "object"

    def to_manifest(self) -> dict[str, Any]:
        doc = {f: getattr(self, f) for f in _OBJECT_FIELDS}
        doc["kind"] = self.kind
        if self.overwrite:
            doc["replace_generation"] = self.replace_generation
        return doc

    @classmethod
    def from_manifest(cls, doc: dict[str, Any]) -> ObjectItem:
        return cls(**_known(cls, doc))


@dataclass(frozen=True, slots=True)
class EventItem:
    """One listener log file to replay into a topic (from start_offset on, for a log that only grew)."""

    seq: int
    batch: int
    source: str
    relpath: str
    path: str
    topic: str
    size: int
    mtime_ns: int | None = None
    inode: int | None = None
    events: int = 0
    event_bytes: int = 0
    malformed: int = 0
    oversized: int = 0
    id_digest: str | None = None
    format: str = "jsonl"
    replayed_before: bool = False
    crc32c: str | None = None
    start_offset: int = 0
    start_line: int = 0

    kind: ClassVar[str] = "events"

    def to_manifest(self) -> dict[str, Any]:
        doc = {f: getattr(self, f) for f in _EVENT_FIELDS}
        doc["kind"] = self.kind
        if self.start_offset:
            doc["start_offset"], doc["start_line"] = self.start_offset, self.start_line
        return doc

    @classmethod
    def from_manifest(cls, doc: dict[str, Any]) -> EventItem:
        return cls(**_known(cls, doc))


Item = ObjectItem | EventItem


@dataclass(frozen=True, slots=True)
class SkippedEntry:
    """One line of the skipped list: an inventoried entry the plan does not copy, and why."""

    kind: str  # "object" | "events"
    source: str
    relpath: str
    entry: str  # files.kind, or "log"
    size: int
    reason: str  # a SKIP_REASONS code
    detail: str | None = None
    bucket: str | None = None
    object: str | None = None
    topic: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc = {f: getattr(self, f) for f in ("kind", "source", "relpath", "entry", "size", "reason", "detail")}
        if self.kind == ObjectItem.kind:
            doc.update(bucket=self.bucket, object=self.object)
        else:
            doc["topic"] = self.topic
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SkippedEntry:
        return cls(
            kind=doc["kind"],
            source=doc["source"],
            relpath=doc["relpath"],
            entry=doc.get("entry") or "",
            size=int(doc.get("size") or 0),
            reason=doc["reason"],
            detail=doc.get("detail"),
            bucket=doc.get("bucket"),
            object=doc.get("object"),
            topic=doc.get("topic"),
        )


_OBJECT_FIELDS = tuple(f for f in ObjectItem.__dataclass_fields__ if f != "replace_generation")
_EVENT_FIELDS = tuple(f for f in EventItem.__dataclass_fields__ if f not in ("start_offset", "start_line"))


def _known(cls: type, doc: dict[str, Any]) -> dict[str, Any]:
    """The manifest fields a dataclass knows (a field it lacks is an error: the manifest is hash-checked)."""
    return {k: v for k, v in doc.items() if k in cls.__dataclass_fields__ and k != "kind"}


def item_from_manifest(doc: dict[str, Any]) -> Item:
    kind = doc.get("kind")
    if kind == ObjectItem.kind:
        return ObjectItem.from_manifest(doc)
    if kind == EventItem.kind:
        return EventItem.from_manifest(doc)
    raise ValueError(f"manifest item {doc.get('seq')} has unknown kind {kind!r}")


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

    @property
    def targets(self) -> dict[str, list[str]]:
        """{"buckets": [...], "topics": [...]}"""
        targets = self.doc.get("targets") or {}
        return {"buckets": list(targets.get("buckets") or []), "topics": list(targets.get("topics") or [])}

    @property
    def skipped(self) -> dict[str, Any] | None:
        """{"file", "sha256", "items"} of the skipped list, if the plan has one."""
        meta = self.doc.get("skipped")
        return meta if isinstance(meta, dict) and meta.get("file") else None

    def iter_items(self) -> Iterator[Item]:
        return map(item_from_manifest, self.iter_docs())

    def iter_docs(self) -> Iterator[dict[str, Any]]:
        """The manifest's lines as parsed JSON, in plan order: what iter_items types, for the hot loops
        (registering and copying a plan's items) that need a few fields or one object per line."""
        with open(self.manifest_path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)

    def object_items(self) -> Iterator[ObjectItem]:
        return (it for it in self.iter_items() if isinstance(it, ObjectItem))

    def event_items(self) -> Iterator[EventItem]:
        return (it for it in self.iter_items() if isinstance(it, EventItem))

    def iter_skipped(self) -> Iterator[tuple[int, SkippedEntry]]:
        """(line number from 0, entry) of the skipped list; PlanError if it is missing, not JSON lines, or
        (checked at the end) modified after planning."""
        meta = self.skipped
        if meta is None:
            return
        path = self.path.parent / meta["file"]
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                for n, raw in enumerate(fh):
                    digest.update(raw)
                    if raw.strip():
                        yield n, SkippedEntry.from_json(json.loads(raw))
        except FileNotFoundError:
            raise PlanError(
                f"skipped list {path} of plan {self.path} is missing", "keep it next to the plan file"
            ) from None
        except (ValueError, KeyError, TypeError):
            raise PlanError(
                f"skipped list {path} is not JSON lines", "re-create the plan with `migrate plan`"
            ) from None
        if meta.get("sha256") and digest.hexdigest() != meta["sha256"]:
            raise PlanError(
                f"skipped list {path} was modified after planning (sha256 differs from plan {self.plan_id})",
                "do not edit plan files; re-create them with `migrate plan`",
            )

    def events_per_item(self) -> dict[int, int]:
        """seq -> the valid events the plan expects from that log item ({} if the manifest is unreadable).

        The manifest's count, not the inventory's: a tail replay expects only its appended lines.
        """
        try:
            return {it.seq: it.events for it in self.event_items()}
        except (OSError, ValueError, KeyError, TypeError):
            return {}


def plan_paths(plans_dir: Path, name: str) -> dict[str, Path]:
    return {
        "plan": plans_dir / f"{name}.plan.json",
        "manifest": plans_dir / f"{name}.manifest.jsonl",
        "report": plans_dir / f"{name}.md",
        "tfvars": plans_dir / f"{name}.tfvars.json",
    }


def write_jsonl(path: Path, rows: Iterable[dict]) -> dict[str, Any]:
    """Canonical JSON lines, written atomically: {"sha256", "items"} of what was written."""
    digest = hashlib.sha256()
    count = 0
    with atomic_open(path, "wb") as fh:
        for row in rows:
            line = canonical(row) + b"\n"
            digest.update(line)
            fh.write(line)
            count += 1
    return {"sha256": digest.hexdigest(), "items": count}


def write_plan(plans_dir: Path, name: str, header: dict, items: Iterable[Item]) -> Plan:
    """Stream items to the manifest, then write the plan document. Returns the loaded Plan.

    header holds everything but schema_version, name, manifest and plan_id.
    """
    plans_dir.mkdir(parents=True, exist_ok=True)
    paths = plan_paths(plans_dir, name)
    written = write_jsonl(paths["manifest"], (item.to_manifest() for item in items))
    doc = dict(header)
    doc.update(schema_version=PLAN_SCHEMA_VERSION, name=name, manifest={"file": paths["manifest"].name, **written})
    doc["plan_id"] = compute_plan_id(doc)
    write_text_atomic(paths["plan"], json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return Plan(paths["plan"], doc)


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
