"""The target side of preflight and provisioning: small protocols, so those stages never hold a Google client.

`BucketAdmin` and `TopicAdmin` are what preflight asks of GCS and Pub/Sub (does it exist, what are its
settings, which of these permissions does the caller hold) and what emulator provisioning asks to create.
`migrate.targets.gcs_admin` and `migrate.targets.pubsub_admin` implement them over the Google clients;
tests may implement them over recorded answers.

Errors are translated at this boundary: `Missing` (404), `Denied` (403) and, from the `granted` calls,
`None` when the endpoint is not implemented (the emulators have no IAM). Anything else is raised as is
and reported by the caller as "did not answer".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Call = Callable[[Callable[[], T]], T]  # runs a request under the caller's retry policy


class Missing(Exception):
    """The bucket, topic or subscription does not exist."""


class Denied(Exception):
    """The caller may not even look at the resource (403 / PERMISSION_DENIED)."""


@dataclass(frozen=True)
class BucketSettings:
    """The bucket settings that decide how large files may be uploaded (see `upload_path`)."""

    name: str
    storage_class: str = "STANDARD"
    versioning: bool = False
    soft_delete_seconds: int = 0
    retention_seconds: int = 0
    default_event_based_hold: bool = False


@dataclass(frozen=True)
class SubscriptionSpec:
    """A subscription to create (ids, not paths); dead letters go to `dead_letter_topic` when given."""

    name: str
    topic: str
    ack_deadline_seconds: int
    retention_seconds: int
    dead_letter_topic: str | None = None
    max_delivery_attempts: int = 0


@dataclass(frozen=True)
class SubscriptionInfo:
    name: str
    topic: str  # projects/<project>/topics/<topic>


class BucketAdmin(Protocol):
    def settings(self, bucket: str) -> BucketSettings:
        """Raises Missing or Denied."""
        ...

    def granted(self, bucket: str, permissions: Sequence[str]) -> set[str] | None:
        """The subset of `permissions` the caller holds on the bucket (testIamPermissions); None when
        the endpoint is not implemented (an emulator)."""
        ...

    def create_object(self, bucket: str, name: str) -> None:
        """An empty object, created only if absent (ifGenerationMatch=0)."""
        ...

    def delete_objects(self, bucket: str, prefix: str, also: Iterable[str] = ()) -> int:
        """Delete every object under `prefix` plus the names in `also`; absent ones are fine. Returns the count."""
        ...

    def create_bucket(self, bucket: str, spec: dict[str, Any], *, location: str, labels: dict[str, str]) -> bool:
        """Create a bucket from a tfvars bucket spec; False if it already existed."""
        ...

    notes: list[str]  # what create_bucket could not do as asked (an emulator's missing features)


class TopicAdmin(Protocol):
    project: str

    def check_topic(self, topic: str) -> None:
        """Raises Missing or Denied."""
        ...

    def topic_granted(self, topic: str, permissions: Sequence[str]) -> set[str] | None: ...

    def subscription(self, subscription: str) -> SubscriptionInfo:
        """Raises Missing or Denied."""
        ...

    def subscription_granted(self, subscription: str, permissions: Sequence[str]) -> set[str] | None: ...

    def create_topic(self, topic: str, *, retention_seconds: int) -> bool:
        """False if it already existed."""
        ...

    def create_subscription(self, spec: SubscriptionSpec) -> bool:
        """False if it already existed; it never expires."""
        ...

    def close(self) -> None: ...


# --- the large-file upload path of a bucket ------------------------------------------------------

COMPOSITE, RESUMABLE = "composite", "resumable"


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

    Parallel composite uploads are safe only where parts can be composed and then really deleted:
    - compose needs every source in the destination's storage class, and parts in a cold class pay
      early deletion (https://cloud.google.com/storage/docs/composite-objects,
      https://cloud.google.com/storage/pricing#early-delete);
    - with object versioning or soft delete on, deleting a part keeps its bytes billable
      (https://cloud.google.com/storage/docs/object-versioning, https://cloud.google.com/storage/docs/soft-delete);
    - a retention policy or an event-based hold makes parts undeletable
      (https://cloud.google.com/storage/docs/bucket-lock, https://cloud.google.com/storage/docs/object-holds).
    gcloud applies the same rules (https://cloud.google.com/storage/docs/parallel-composite-uploads).
    """
    cls = (storage_class or settings.storage_class).upper()
    return COMPOSITE if cls == "STANDARD" and not composite_blockers(settings) else RESUMABLE


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
