"""The work items the dispatcher hands to the pool, typed: one class per kind of task.

A small file is one CopyOne. A large file is a LargeJob that goes one of two ways:
  composite: PrepareLarge -> UploadPart x n -> Compose
  resumable: ResumableStep, repeated: start the session, then one chunk per step (the dispatcher
             records the session URI and each acknowledged offset in the ledger between steps)
and, when it ends for good, at most one Cleanup (its parts deleted, or its session cancelled).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

from migrate.plan import ObjectItem
from migrate.targets.gcs import ObjectInfo
from migrate.transfer.outcome import Outcome

_ITEM_FIELDS = tuple(f.name for f in fields(ObjectItem))
_ITEM_KEYS = frozenset(_ITEM_FIELDS)


@dataclass(frozen=True, slots=True)
class Work(ObjectItem):
    """One object item to copy: the plan's ObjectItem, its path resolved and replace_generation set only
    when it overwrites, plus the ledger's resume state (a large upload's layout or session)."""

    upload_state: dict | None = None

    @classmethod
    def of(cls, item: ObjectItem, path: str, upload_state: dict | None = None) -> Work:
        return cls._build({name: getattr(item, name) for name in _ITEM_FIELDS}, path, upload_state)

    @classmethod
    def from_manifest_line(cls, doc: dict, path: str, upload_state: dict | None = None) -> Work:
        """Work.of(ObjectItem.from_manifest(doc), path, upload_state) without the intermediate ObjectItem
        (a frozen dataclass costs a few microseconds per field set, per file of a large plan)."""
        return cls._build({k: v for k, v in doc.items() if k in _ITEM_KEYS}, path, upload_state)

    @classmethod
    def _build(cls, values: dict, path: str, upload_state: dict | None) -> Work:
        values.update(path=path, upload_state=upload_state)
        if not values.get("overwrite"):
            values["replace_generation"] = None
        return cls(**values)


@dataclass(slots=True)
class PartResult:
    index: int
    info: ObjectInfo | None
    crc: int
    length: int
    uploaded: int = 0
    reused: int = 0
    retries: int = 0
    error: BaseException | None = None  # why this part could not be uploaded


@dataclass(slots=True)
class LargeJob:
    work: Work
    kind: str  # targets.buckets.COMPOSITE | RESUMABLE
    part_size: int = 0
    n_parts: int = 0
    resumed: bool = False
    existing: dict[int, ObjectInfo] = field(default_factory=dict)
    parts: dict[int, PartResult] = field(default_factory=dict)
    outstanding: int = 0
    retries: int = 0
    corrupt: int = 0
    uploaded: int = 0
    reused: int = 0
    error: Outcome | None = None
    session: dict | None = None  # resumable: {"uri", "offset", "crc", "match"}, as the ledger holds it
    query_first: bool = False  # resumable: ask the server what it holds before the next chunk
    cleanup: Callable[[], object] | None = None  # registered where the resource is created
    ending: Outcome | None = None  # recorded once the cleanup has run


@dataclass(frozen=True, slots=True)
class CopyOne:
    work: Work


@dataclass(frozen=True, slots=True)
class PrepareLarge:
    job: LargeJob


@dataclass(frozen=True, slots=True)
class UploadPart:
    job: LargeJob
    index: int


@dataclass(frozen=True, slots=True)
class Compose:
    job: LargeJob


@dataclass(frozen=True, slots=True)
class ResumableStep:
    job: LargeJob


@dataclass(frozen=True, slots=True)
class Cleanup:
    job: LargeJob


Task = CopyOne | PrepareLarge | UploadPart | Compose | ResumableStep | Cleanup
