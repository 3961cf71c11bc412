"""Emulator mode: create the targets of a tfvars document, as terraform/ would in Google Cloud.

For each bucket: the bucket (storage class, location, labels, lifecycle rules, soft delete; versioning
when the emulator supports it). For each topic: the topic, its dead-letter topic, the verification
subscription (with the dead-letter policy) and the `<dead-letter topic>-hold` subscription, mirroring
terraform/modules/migration. Already-existing resources are fine, so provisioning is idempotent.

It refuses to run outside emulator mode: real projects get their targets from terraform/, reviewed.
Every create goes through the target protocols of `migrate.targets.admin`.
"""

from __future__ import annotations

import functools
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
# Google Cloud keeps a subscription's messages up to 31 days
# (https://cloud.google.com/pubsub/docs/subscription-properties#message_retention_duration, and terraform/ uses
# that), but the Pub/Sub emulator still refuses more than 7 ("message_retention_duration out of bounds").
# provision() only ever talks to the emulator.
MAX_SUBSCRIPTION_RETENTION_DAYS = 7
CALL_TIMEOUT = 30.0
_RETRY = TransferConfig(retry_max_attempts=5, retry_initial_delay=0.2, retry_max_delay=2.0, retry_deadline=30.0)
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


# --- GCS ---------------------------------------------------------------------------------------


def _retry(fn: Callable[[], Any]) -> Any:
    return call_with_retry(fn, _RETRY)


def _ensure(report: ProvisionReport, kind: str, name: str, where: str, create: Callable[[], bool]) -> None:
    try:
        created = create()
    except TargetError:
        raise
    except Exception as exc:
        raise TargetError(
            f"cannot create {kind} '{name}' on the {where}: {describe(exc)}",
            "check that the emulator is running and its env var points at it",
        ) from None
    (report.created if created else report.existing).append((kind, name))


def _provision_buckets(doc: dict, buckets: dict[str, dict], report: ProvisionReport) -> None:
    from migrate.targets import gcs_admin

    admin = gcs_admin.connect(report.project, _retry, CALL_TIMEOUT)
    location = doc.get("location") or "US"
    labels = doc.get("labels") or {}
    for name in sorted(buckets):
        spec = buckets[name] or {}
        create = functools.partial(admin.create_bucket, name, spec, location=location, labels=labels)
        _ensure(report, "bucket", name, "GCS emulator", create)
    report.notes.extend(admin.notes)


# --- Pub/Sub ------------------------------------------------------------------------------------


def _provision_topics(topics: dict[str, dict], report: ProvisionReport) -> None:
    from migrate.names import dead_letter_topic, verification_subscription
    from migrate.targets import pubsub_admin
    from migrate.targets.admin import SubscriptionSpec

    admin = pubsub_admin.connect(report.project, _retry, CALL_TIMEOUT)
    where = "Pub/Sub emulator"
    try:
        for topic_id in sorted(topics):
            spec = topics[topic_id] or {}
            retention = int(spec.get("message_retention_days") or MAX_SUBSCRIPTION_RETENTION_DAYS) * SECONDS_PER_DAY
            sub_retention = min(retention, MAX_SUBSCRIPTION_RETENTION_DAYS * SECONDS_PER_DAY)
            dlt_id = spec.get("dead_letter_topic") or dead_letter_topic(topic_id)
            sub_id = spec.get("verification_subscription") or verification_subscription(topic_id)
            hold_id = dlt_id + DEAD_LETTER_HOLD_SUFFIX
            for tid in (topic_id, dlt_id):
                _ensure(
                    report, "topic", tid, where, functools.partial(admin.create_topic, tid, retention_seconds=retention)
                )
            hold_retention = MAX_SUBSCRIPTION_RETENTION_DAYS * SECONDS_PER_DAY
            for spec in (
                SubscriptionSpec(sub_id, topic_id, ACK_DEADLINE_SECONDS, sub_retention, dlt_id, MAX_DELIVERY_ATTEMPTS),
                SubscriptionSpec(hold_id, dlt_id, ACK_DEADLINE_SECONDS, hold_retention),
            ):
                _ensure(report, "subscription", spec.name, where, functools.partial(admin.create_subscription, spec))
    finally:
        admin.close()
