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

# the bucket settings and the large-file path they allow live in one place: targets.buckets
from migrate.targets.buckets import (  # noqa: F401 (re-exported for preflight and the cost estimate)
    COMPOSITE,
    RESUMABLE,
    BucketSettings,
    composite_blockers,
    large_file_path,
    upload_path,
)

T = TypeVar("T")
Call = Callable[[Callable[[], T]], T]  # runs a request under the caller's retry policy


class Missing(Exception):
    """The bucket, topic or subscription does not exist."""


class Denied(Exception):
    """The caller may not even look at the resource (403 / PERMISSION_DENIED)."""


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
