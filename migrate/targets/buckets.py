"""A destination bucket's settings, read once, and the large-file upload path they allow.

Parallel composite uploads (parts under targets.gcs.PARTS_PREFIX, then compose) are only used where
they cost nothing extra and the parts can really go away; everywhere else a large file goes through one
resumable upload. The rules, as gcloud applies them and as the docs explain why:

- compose needs every source in the destination's storage class, and parts in NEARLINE, COLDLINE or
  ARCHIVE would pay early-deletion fees: composite only for a STANDARD destination
  (https://cloud.google.com/storage/docs/composite-objects,
  https://cloud.google.com/storage/docs/json_api/v1/objects/compose);
- a retention policy or a default event-based hold makes the parts undeletable until it lapses
  (https://cloud.google.com/storage/docs/bucket-lock, https://cloud.google.com/storage/docs/object-holds);
- with versioning on, deleting a part only makes it noncurrent; with soft delete on, it stays billable for
  the retention duration (https://cloud.google.com/storage/docs/object-versioning,
  https://cloud.google.com/storage/docs/soft-delete);
- gcloud itself turns parallel composite uploads off for the same cases
  (https://cloud.google.com/storage/docs/parallel-composite-uploads).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

COMPOSITE = "composite"
RESUMABLE = "resumable"
STANDARD = "STANDARD"


@dataclass(frozen=True, slots=True)
class BucketSettings:
    name: str
    storage_class: str = STANDARD
    versioning: bool = False
    soft_delete_seconds: int = 0
    retention_seconds: int = 0
    default_event_based_hold: bool = False

    @classmethod
    def from_json(cls, doc: dict) -> BucketSettings:
        retention = doc.get("retentionPolicy") or {}
        soft = doc.get("softDeletePolicy") or {}
        return cls(
            name=doc.get("name", ""),
            storage_class=(doc.get("storageClass") or STANDARD).upper(),
            versioning=bool((doc.get("versioning") or {}).get("enabled")),
            soft_delete_seconds=int(soft.get("retentionDurationSeconds") or 0),
            retention_seconds=int(retention.get("retentionPeriod") or 0),
            default_event_based_hold=bool(doc.get("defaultEventBasedHold")),
        )

    def composite_blockers(self) -> list[str]:
        return composite_blockers(self)

    def path_for(self, storage_class: str | None) -> str:
        """COMPOSITE or RESUMABLE for a large object of this class (None: the bucket's default class)."""
        return large_file_path(self, storage_class)

    def describe(self) -> str:
        """One line for preflight and the run summary: which path large files take here, and why."""
        blockers = self.composite_blockers()
        if blockers:
            return f"resumable uploads for large files ({', '.join(blockers)}: composite parts would stay billable)"
        if self.storage_class != STANDARD:
            return f"resumable uploads for large files (default class {self.storage_class})"
        return "parallel composite uploads for large STANDARD files, resumable uploads for other classes"

    def to_dict(self) -> dict:
        return {
            "storage_class": self.storage_class,
            "versioning": self.versioning,
            "soft_delete_seconds": self.soft_delete_seconds,
            "retention_seconds": self.retention_seconds,
            "default_event_based_hold": self.default_event_based_hold,
            "large_files": self.describe(),
        }


def composite_blockers(settings: BucketSettings) -> list[str]:
    """Why composite parts could not be deleted for good in this bucket (empty: they can)."""
    reasons = []
    if settings.retention_seconds:
        reasons.append("retention policy")
    if settings.default_event_based_hold:
        reasons.append("default event-based hold")
    if settings.versioning:
        reasons.append("versioning on")
    if settings.soft_delete_seconds:
        reasons.append("soft delete on")
    return reasons


def large_file_path(settings: BucketSettings, storage_class: str | None = None) -> str:
    """COMPOSITE or RESUMABLE for a large object of this class (None: the bucket's default class).

    Composite parts pay early deletion in a cold class (https://cloud.google.com/storage/pricing#early-delete);
    the other rules are in the module docstring.
    """
    cls = (storage_class or settings.storage_class).upper()
    return COMPOSITE if cls == STANDARD and not composite_blockers(settings) else RESUMABLE


def upload_path(settings: BucketSettings, object_classes: Iterable[str] = ()) -> tuple[str, str]:
    """(COMPOSITE if any large file bound for this bucket is uploaded as parts, else RESUMABLE; why)."""
    classes = sorted(set(object_classes)) or [settings.storage_class]
    blockers = composite_blockers(settings)
    if blockers:
        return RESUMABLE, "; ".join(blockers)
    cold = [c for c in classes if large_file_path(settings, c) == RESUMABLE]
    if len(cold) == len(classes):
        return RESUMABLE, f"storage class {', '.join(cold)}"
    if cold:
        return COMPOSITE, f"STANDARD objects; resumable for {', '.join(cold)}"
    return COMPOSITE, "STANDARD, no versioning, soft delete, retention policy or holds"
