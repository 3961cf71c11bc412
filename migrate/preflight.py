"""Before anything moves: every target bucket and topic exists and this identity may write to it.

Errors (the run must not start): a bucket or topic that is missing, not writable, or unreachable.
Warnings: a topic's verification subscription that is missing or attached elsewhere (events published
now could not be verified later).

How writability is proven:
- Buckets: `testIamPermissions` for storage.objects.create, which asks GCS what this caller may do
  without changing anything. fake-gcs-server does not implement the IAM endpoints (it answers 404 or
  501), so there we fall back to a probe: create a tiny object with if_generation_match=0 under
  `.migrate-parts/preflight/` and delete it again. That prefix is the run's scratch space: listings
  hide it, the Terraform role may delete there, and its lifecycle rule removes what is left. A
  preflight killed between create and delete leaves its probe behind; the next probe of the bucket
  deletes every probe it finds (a concurrent preflight whose probe vanished has proven its write).
- Topics: `testIamPermissions` for pubsub.topics.publish. The Pub/Sub emulator has no IAM at all
  (UNIMPLEMENTED) and accepts every publish to an existing topic, so there existence is the proof. We
  never publish a probe message: it would reach the verification subscription and show up in `verify`
  as an unexpected event.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from migrate import clients
from migrate.config import Config
from migrate.errors import TargetError
from migrate.names import verification_subscription
from migrate.plan import Plan, plan_paths
from migrate.progress import Event, Reporter, null_reporter
from migrate.retry import call_with_retry, describe

T = TypeVar("T")

BUCKET_WRITE = "storage.objects.create"
TOPIC_PUBLISH = "pubsub.topics.publish"
PROBE_PREFIX = ".migrate-parts/preflight/"  # under targets.gcs.PARTS_PREFIX
CALL_TIMEOUT = 20.0
OK, WARNING, ERROR = "ok", "warning", "error"


@dataclass(frozen=True)
class Finding:
    kind: str  # bucket | topic | subscription
    name: str
    status: str  # ok | missing | not_writable | no_access | unreachable | wrong_topic
    level: str  # ok | warning | error
    message: str
    fix: str | None = None
    method: str | None = None  # how writability was shown: iam | probe | emulator (no IAM)

    def one_line(self) -> str:
        return self.message + (f"; fix: {self.fix}" if self.fix else "")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class PreflightReport:
    project: str
    plan: str | None = None
    emulator: bool = False
    findings: list[Finding] = field(default_factory=list)
    retries: int = 0  # transient errors retried while checking

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def missing(self) -> list[str]:
        """'bucket x' / 'topic y' for each missing target."""
        return [f"{f.kind} {f.name}" for f in self.errors if f.status == "missing"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "project": self.project,
            "plan": self.plan,
            "emulator": self.emulator,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "retries": self.retries,
            "findings": [f.to_dict() for f in self.findings],
        }

    def raise_for_errors(self) -> None:
        """TargetError naming every failing target, on one line; nothing if all targets are fine."""
        if self.ok:
            return
        errors = self.errors
        fixes = list(dict.fromkeys(f.fix for f in errors if f.fix))
        raise TargetError("preflight: " + "; ".join(f.message for f in errors), " / ".join(fixes) or None)


def _create_fix(cfg: Config, plan_name: str | None) -> str:
    tfvars = plan_paths(Path(cfg.project.plans_dir), plan_name)["tfvars"] if plan_name else "plans/<name>.tfvars.json"
    return (
        f"apply terraform/ (terraform/examples/migration) with {tfvars}, "
        "or in emulator mode `migrate provision` / `migrate demo` creates it"
    )


_GRANT_FIX = "apply terraform/ so the migration service account gets its bucket and topic roles, or use that account"


def preflight(
    cfg: Config,
    buckets: Iterable[str],
    topics: Iterable[str],
    *,
    plan_name: str | None = None,
    report: Reporter = null_reporter,
) -> PreflightReport:
    """Check each bucket (exists, writable) and each topic (exists, publishable, verification subscription)."""
    buckets, topics = sorted(set(buckets)), sorted(set(topics))
    emulator = bool(clients.storage_emulator() or clients.pubsub_emulator())
    result = PreflightReport(cfg.project.id, plan_name, emulator)
    retry_cfg = dataclasses.replace(
        cfg.transfer,
        retry_max_attempts=min(cfg.transfer.retry_max_attempts, 4),
        retry_deadline=min(cfg.transfer.retry_deadline, 20.0),
    )
    timeout = min(cfg.transfer.timeout, CALL_TIMEOUT)
    create_fix = _create_fix(cfg, plan_name)

    def on_retry(exc: BaseException, attempt: int) -> None:
        result.retries += 1
        report(Event("retry", data={"error": describe(exc)}))

    def call(fn: Callable[[], T]) -> T:
        return call_with_retry(fn, retry_cfg, on_retry)

    if buckets:
        client = clients.gcs_client(cfg.project.id, pool_size=4)
        for name in buckets:
            report(Event("phase", name=f"preflight bucket {name}"))
            result.findings.append(_check_bucket(client, name, call, timeout, create_fix))
    if topics:
        publisher, subscriber = clients.publisher_client(), clients.subscriber_client()
        try:
            for name in topics:
                report(Event("phase", name=f"preflight topic {name}"))
                finding = _check_topic(publisher, cfg.project.id, name, call, timeout, create_fix)
                result.findings.append(finding)
                if finding.status != "missing":
                    result.findings.append(
                        _check_subscription(subscriber, cfg.project.id, name, call, timeout, create_fix)
                    )
        finally:
            subscriber.close()
            publisher.transport.close()
    report(Event("finish", data=result.to_dict()))
    return result


def preflight_plan(cfg: Config, plan: Plan, *, report: Reporter = null_reporter) -> PreflightReport:
    """preflight() over the plan's targets: plan.doc["targets"] = {"buckets": [...], "topics": [...]}."""
    targets = plan.doc.get("targets") or {}
    return preflight(
        cfg, targets.get("buckets") or [], targets.get("topics") or [], plan_name=plan.doc.get("name"), report=report
    )


# --- buckets ------------------------------------------------------------------------------------


def _check_bucket(client, name: str, call, timeout: float, create_fix: str) -> Finding:
    from google.api_core import exceptions as gexc

    bucket = client.bucket(name)
    try:
        call(lambda: bucket.reload(timeout=timeout, retry=None))
    except gexc.NotFound:
        return Finding("bucket", name, "missing", ERROR, f"bucket '{name}' does not exist", create_fix)
    except gexc.Forbidden as exc:
        return Finding(
            "bucket", name, "no_access", ERROR, f"no access to bucket '{name}' ({describe(exc)})", _GRANT_FIX
        )
    except Exception as exc:
        return _unreachable("bucket", name, "GCS", exc)

    try:
        granted = call(lambda: bucket.test_iam_permissions([BUCKET_WRITE], timeout=timeout, retry=None))
    except (gexc.NotFound, gexc.MethodNotImplemented, gexc.BadRequest):
        # The bucket exists (reload worked), so this is an endpoint the emulator does not implement.
        return _probe_bucket(bucket, call, timeout)
    except Exception as exc:
        return _unreachable("bucket", name, "GCS", exc)
    if BUCKET_WRITE in granted:
        return Finding("bucket", name, "ok", OK, f"bucket '{name}' exists and is writable", method="iam")
    return Finding(
        "bucket", name, "not_writable", ERROR, f"bucket '{name}' is not writable ({BUCKET_WRITE} missing)", _GRANT_FIX
    )


def _probe_bucket(bucket, call, timeout: float) -> Finding:
    from google.api_core import exceptions as gexc

    name = bucket.name
    blob = bucket.blob(f"{PROBE_PREFIX}{uuid.uuid4().hex}")
    try:
        call(lambda: blob.upload_from_string(b"", if_generation_match=0, timeout=timeout, retry=None))
    except gexc.Forbidden as exc:
        return Finding(
            "bucket", name, "not_writable", ERROR, f"bucket '{name}' is not writable ({describe(exc)})", _GRANT_FIX
        )
    except Exception as exc:
        return _unreachable("bucket", name, "GCS", exc)
    try:
        leftovers = call(lambda: [b.name for b in bucket.client.list_blobs(name, prefix=PROBE_PREFIX, retry=None)])
        for probe in {blob.name, *leftovers}:
            try:
                call(lambda probe=probe: bucket.blob(probe).delete(timeout=timeout, retry=None))
            except gexc.NotFound:
                pass  # deleted by a concurrent preflight: gone either way
    except Exception as exc:
        return Finding(
            "bucket",
            name,
            "ok",
            WARNING,
            f"bucket '{name}' is writable, but the probe object {blob.name} could not be deleted ({describe(exc)})",
            f"delete gs://{name}/{blob.name}",
            method="probe",
        )
    return Finding("bucket", name, "ok", OK, f"bucket '{name}' exists and is writable", method="probe")


# --- topics -------------------------------------------------------------------------------------


def _check_topic(publisher, project: str, name: str, call, timeout: float, create_fix: str) -> Finding:
    from google.api_core import exceptions as gexc

    path = publisher.topic_path(project, name)
    try:
        call(lambda: publisher.get_topic(topic=path, timeout=timeout, retry=None))
    except gexc.NotFound:
        return Finding("topic", name, "missing", ERROR, f"topic '{name}' does not exist", create_fix)
    except gexc.PermissionDenied as exc:
        return Finding("topic", name, "no_access", ERROR, f"no access to topic '{name}' ({describe(exc)})", _GRANT_FIX)
    except Exception as exc:
        return _unreachable("topic", name, "Pub/Sub", exc)
    try:
        resp = call(
            lambda: publisher.test_iam_permissions(
                request={"resource": path, "permissions": [TOPIC_PUBLISH]}, timeout=timeout, retry=None
            )
        )
    except (gexc.MethodNotImplemented, gexc.NotFound):
        # The Pub/Sub emulator has no IAM and lets anyone publish to an existing topic.
        return Finding("topic", name, "ok", OK, f"topic '{name}' exists (emulator: no IAM)", method="emulator")
    except Exception as exc:
        return _unreachable("topic", name, "Pub/Sub", exc)
    if TOPIC_PUBLISH in resp.permissions:
        return Finding("topic", name, "ok", OK, f"topic '{name}' exists and is publishable", method="iam")
    return Finding(
        "topic", name, "not_writable", ERROR, f"topic '{name}' is not publishable ({TOPIC_PUBLISH} missing)", _GRANT_FIX
    )


def _check_subscription(subscriber, project: str, topic: str, call, timeout: float, create_fix: str) -> Finding:
    from google.api_core import exceptions as gexc

    sub = verification_subscription(topic)
    path = subscriber.subscription_path(project, sub)
    try:
        got = call(lambda: subscriber.get_subscription(subscription=path, timeout=timeout, retry=None))
    except gexc.NotFound:
        return Finding(
            "subscription",
            sub,
            "missing",
            WARNING,
            f"verification subscription '{sub}' of topic '{topic}' does not exist: "
            "events published before it exists cannot be verified",
            create_fix,
        )
    except gexc.PermissionDenied as exc:
        return Finding(
            "subscription",
            sub,
            "no_access",
            WARNING,
            f"no access to subscription '{sub}' ({describe(exc)})",
            _GRANT_FIX,
        )
    except Exception as exc:
        finding = _unreachable("subscription", sub, "Pub/Sub", exc)
        return dataclasses.replace(finding, level=WARNING)
    want = f"projects/{project}/topics/{topic}"
    if got.topic != want:
        return Finding(
            "subscription",
            sub,
            "wrong_topic",
            WARNING,
            f"verification subscription '{sub}' is attached to {got.topic}, not to topic '{topic}'",
            f"delete it and re-create it on {want} (terraform/ does)",
        )
    return Finding("subscription", sub, "ok", OK, f"verification subscription '{sub}' exists")


def _unreachable(kind: str, name: str, service: str, exc: BaseException) -> Finding:
    where = clients.storage_emulator() if service == "GCS" else clients.pubsub_emulator()
    at = f" at {where}" if where else ""
    return Finding(
        kind,
        name,
        "unreachable",
        ERROR,
        f"cannot check {kind} '{name}': {service}{at} did not answer ({describe(exc)})",
        "check the network / credentials (or that the emulator is running) and try again",
    )
