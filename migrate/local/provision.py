"""Emulator mode: create the targets of a tfvars document, as terraform/ would in Google Cloud.

For each bucket: the bucket (storage class, location, labels, lifecycle rules, soft delete; versioning
when the emulator supports it). For each topic: the topic, its dead-letter topic, the verification
subscription (with the dead-letter policy) and the `<dead-letter topic>-hold` subscription, mirroring
terraform/modules/migration. Already-existing resources are fine, so provisioning is idempotent.

It refuses to run outside emulator mode: real projects get their targets from terraform/, reviewed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrate import clients
from migrate.config import TransferConfig
from migrate.errors import PlanError, TargetError
from migrate.retry import call_with_retry, describe

DEAD_LETTER_HOLD_SUFFIX = "-hold"
ACK_DEADLINE_SECONDS = 60  # terraform/modules/migration: var.ack_deadline_seconds default
MAX_DELIVERY_ATTEMPTS = 10  # terraform/modules/migration: var.max_delivery_attempts default
SECONDS_PER_DAY = 86_400
MAX_SUBSCRIPTION_RETENTION_DAYS = 7
CALL_TIMEOUT = 30.0
_RETRY = TransferConfig(retry_max_attempts=5, retry_initial_delay=0.2, retry_max_delay=2.0, retry_deadline=30.0)
_NO_RETRY: dict[str, Any] = {"retry": None, "timeout": CALL_TIMEOUT}  # migrate.retry does the retrying
_TERRAFORM_FIX = "apply terraform/ (terraform/examples/migration) with this tfvars file; provisioning is emulator-only"


@dataclass
class ProvisionReport:
    project: str
    created: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    existing: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"provisioned on the emulators: {len(self.created)} created, {len(self.existing)} already existed"
        if self.created:
            text += " (" + ", ".join(f"{kind} {name}" for kind, name in self.created) + ")"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "created": [{"kind": k, "name": n} for k, n in self.created],
            "existing": [{"kind": k, "name": n} for k, n in self.existing],
            "notes": list(self.notes),
        }


def load_tfvars(tfvars: dict | str | Path) -> dict:
    """A tfvars document from a dict or a JSON file, with the keys provisioning needs checked."""
    if isinstance(tfvars, dict):
        doc, where = tfvars, "tfvars document"
    else:
        path = Path(tfvars)
        where = str(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PlanError(f"{where}: tfvars file not found", "run `migrate plan` to write it") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PlanError(
                f"{where}: cannot read tfvars JSON ({exc})", "re-run `migrate plan` to rewrite it"
            ) from None
    if not isinstance(doc, dict):
        raise PlanError(f"{where}: expected a JSON object", "re-run `migrate plan` to rewrite it")
    if not isinstance(doc.get("project_id"), str) or not doc["project_id"]:
        raise PlanError(f"{where}: project_id missing", "re-run `migrate plan` to rewrite it")
    for key in ("buckets", "topics"):
        if not isinstance(doc.get(key, {}), dict):
            raise PlanError(f"{where}: {key} must be an object keyed by name", "re-run `migrate plan` to rewrite it")
    return doc


def provision(tfvars: dict | str | Path, *, project: str | None = None) -> ProvisionReport:
    """Create every bucket, topic, dead-letter topic and subscription of `tfvars` on the emulators."""
    doc = load_tfvars(tfvars)
    buckets: dict[str, dict] = doc.get("buckets") or {}
    topics: dict[str, dict] = doc.get("topics") or {}
    report = ProvisionReport(project or doc["project_id"])
    if buckets and not clients.storage_emulator():
        raise TargetError(
            f"refusing to create {len(buckets)} bucket(s) in Google Cloud: {clients.STORAGE_EMULATOR_ENV} is not set",
            _TERRAFORM_FIX,
        )
    if topics and not clients.pubsub_emulator():
        raise TargetError(
            f"refusing to create {len(topics)} topic(s) in Google Cloud: {clients.PUBSUB_EMULATOR_ENV} is not set",
            _TERRAFORM_FIX,
        )
    if buckets:
        _provision_buckets(doc, buckets, report)
    if topics:
        _provision_topics(topics, report)
    return report


# --- GCS ----------------------------------------------------------------------------------------


def _call(kind: str, name: str, where: str, fn: Callable[[], Any]) -> Any:
    try:
        return call_with_retry(fn, _RETRY)
    except TargetError:
        raise
    except Exception as exc:
        raise TargetError(
            f"cannot create {kind} '{name}' on the {where}: {describe(exc)}",
            "check that the emulator is running and its env var points at it",
        ) from None


def _provision_buckets(doc: dict, buckets: dict[str, dict], report: ProvisionReport) -> None:
    from google.api_core import exceptions as gexc

    client = clients.gcs_client(report.project, pool_size=4)
    location = doc.get("location") or "US"
    labels = doc.get("labels") or {}
    for name in sorted(buckets):
        spec = buckets[name] or {}

        def create(name: str = name, spec: dict = spec) -> bool:
            """True if created, False if it already existed."""
            try:
                client.create_bucket(
                    _bucket(client, name, spec, labels, versioning=True), location=location, **_NO_RETRY
                )
                return True
            except gexc.Conflict:
                return False
            except gexc.InternalServerError as exc:
                # fake-gcs-server's filesystem backend has no object versioning: create without it.
                if "versioning" not in str(exc):
                    raise
            try:
                client.create_bucket(
                    _bucket(client, name, spec, labels, versioning=False), location=location, **_NO_RETRY
                )
                if spec.get("versioning"):
                    report.notes.append(f"bucket {name}: versioning not supported by the emulator; created without it")
                return True
            except gexc.Conflict:
                return False

        created = _call("bucket", name, "GCS emulator", create)
        (report.created if created else report.existing).append(("bucket", name))


def _bucket(client, name: str, spec: dict, labels: dict, *, versioning: bool):
    bucket = client.bucket(name)
    bucket.storage_class = spec.get("storage_class") or "STANDARD"
    bucket.versioning_enabled = bool(spec.get("versioning")) and versioning
    if labels:
        bucket.labels = dict(labels)
    days = spec.get("soft_delete_retention_days")
    if days:
        bucket.soft_delete_policy.retention_duration_seconds = int(days) * SECONDS_PER_DAY
    for rule in spec.get("lifecycle_rules") or []:
        if rule.get("action") == "SetStorageClass":
            bucket.add_lifecycle_set_storage_class_rule(rule["storage_class"], age=int(rule["age_days"]))
        elif rule.get("action") == "Delete":
            bucket.add_lifecycle_delete_rule(age=int(rule["age_days"]))
    return bucket


# --- Pub/Sub ------------------------------------------------------------------------------------


def _provision_topics(topics: dict[str, dict], report: ProvisionReport) -> None:
    from google.api_core import exceptions as gexc
    from google.protobuf import duration_pb2

    from migrate.names import dead_letter_topic, verification_subscription

    publisher = clients.publisher_client()
    subscriber = clients.subscriber_client()
    project = report.project

    def ensure(kind: str, name: str, create: Callable[..., Any], request: dict) -> None:
        def attempt() -> bool:
            try:
                create(request=request, **_NO_RETRY)
                return True
            except gexc.AlreadyExists:
                return False

        created = _call(kind, name, "Pub/Sub emulator", attempt)
        (report.created if created else report.existing).append((kind, name))

    def days(n: int) -> duration_pb2.Duration:
        return duration_pb2.Duration(seconds=n * SECONDS_PER_DAY)

    try:
        for topic_id in sorted(topics):
            spec = topics[topic_id] or {}
            retention = int(spec.get("message_retention_days") or MAX_SUBSCRIPTION_RETENTION_DAYS)
            dlt_id = spec.get("dead_letter_topic") or dead_letter_topic(topic_id)
            sub_id = spec.get("verification_subscription") or verification_subscription(topic_id)
            hold_id = dlt_id + DEAD_LETTER_HOLD_SUFFIX
            topic_path = publisher.topic_path(project, topic_id)
            dlt_path = publisher.topic_path(project, dlt_id)
            for tid, path in ((topic_id, topic_path), (dlt_id, dlt_path)):
                request = {"name": path, "message_retention_duration": days(retention)}
                ensure("topic", tid, publisher.create_topic, request)
            verification = {
                "name": subscriber.subscription_path(project, sub_id),
                "topic": topic_path,
                "ack_deadline_seconds": ACK_DEADLINE_SECONDS,
                "message_retention_duration": days(min(retention, MAX_SUBSCRIPTION_RETENTION_DAYS)),
                "expiration_policy": {},  # never expires
                "dead_letter_policy": {"dead_letter_topic": dlt_path, "max_delivery_attempts": MAX_DELIVERY_ATTEMPTS},
            }
            ensure("subscription", sub_id, subscriber.create_subscription, verification)
            hold = {
                "name": subscriber.subscription_path(project, hold_id),
                "topic": dlt_path,
                "ack_deadline_seconds": ACK_DEADLINE_SECONDS,
                "message_retention_duration": days(MAX_SUBSCRIPTION_RETENTION_DAYS),
                "expiration_policy": {},
            }
            ensure("subscription", hold_id, subscriber.create_subscription, hold)
    finally:
        subscriber.close()
        publisher.transport.close()
