"""What preflight found: one Finding per target, the permissions the run needs and the roles that carry them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from migrate.clients import Identity
from migrate.errors import TargetError

BUCKET_WRITE = "storage.objects.create"
OBJECT_DELETE = "storage.objects.delete"
TOPIC_PUBLISH = "pubsub.topics.publish"
SUBSCRIPTION_CONSUME = "pubsub.subscriptions.consume"
# permission -> the predefined role terraform/modules/migration grants for it; which call needs which permission:
# https://cloud.google.com/storage/docs/access-control/iam-json, https://cloud.google.com/pubsub/docs/access-control
BUCKET_PERMISSIONS = {
    BUCKET_WRITE: "roles/storage.objectCreator",
    "storage.objects.get": "roles/storage.objectViewer",
    "storage.objects.list": "roles/storage.objectViewer",
}
OVERWRITE_ROLE = "roles/storage.objectUser"  # terraform: allow_object_delete (conflict_policy = overwrite)
TOPIC_ROLE = "roles/pubsub.publisher"
SUBSCRIPTION_ROLE = "roles/pubsub.subscriber"
OK, WARNING, ERROR = "ok", "warning", "error"
SUBSCRIPTION_LEVEL = WARNING  # how much a verification subscription that cannot be used weighs


@dataclass(frozen=True)
class Finding:
    kind: str  # bucket | topic | subscription
    name: str
    status: str  # ok | missing | not_writable | no_access | unreachable | wrong_topic
    level: str  # ok | warning | error
    message: str
    fix: str | None = None
    method: str | None = None  # how access was shown: iam | iam+probe | probe | emulator (no IAM)
    upload_path: str | None = None  # buckets: how large files go (composite | resumable)
    upload_reason: str | None = None  # ... and why
    missing_permissions: tuple[str, ...] = ()

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
    identity: Identity | None = None

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
            "identity": self.identity.to_dict() if self.identity else None,
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


def grant_fix(role: str, resource: str, principal: str) -> str:
    return (
        f"grant {role} on {resource} to {principal} (terraform/modules/migration grants it to the migration"
        " service account: apply it, and set project.impersonate_service_account to that account)"
    )


def evaluate_grants(
    kind: str, name: str, resource: str, wanted: dict[str, str], granted: set[str], principal: str, level: str = ERROR
) -> Finding | None:
    """None if every wanted permission (permission -> role that carries it) is granted; else a Finding
    naming the missing permissions, the resource, the principal and the role to grant."""
    missing = sorted(set(wanted) - set(granted))
    if not missing:
        return None
    roles = sorted({wanted[p] for p in missing})
    return Finding(
        kind,
        name,
        "not_writable",
        level,
        f"{principal} lacks {', '.join(missing)} on {kind} '{name}'",
        grant_fix(" and ".join(roles), resource, principal),
        method="iam",
        missing_permissions=tuple(missing),
    )


def short_error(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
