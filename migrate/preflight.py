"""Before anything moves: every target exists, and the identity the run uses holds every permission it needs.

Errors (the run must not start): a bucket or topic that is missing, unreachable, or on which the principal
lacks a permission the run will use. Warnings: a topic's verification subscription that is missing, attached
elsewhere, or not pullable by this principal (events published now could not be verified later).

Permissions (what each stage calls, https://cloud.google.com/storage/docs/access-control/iam-json and
https://cloud.google.com/pubsub/docs/access-control):
- buckets: storage.objects.create (run uploads), storage.objects.get (run stats an object after a 412,
  verify reads), storage.objects.list (plan and verify list the destination); storage.objects.delete too
  under conflict_policy = overwrite (replacing an object needs create and delete);
- topics: pubsub.topics.publish; verification subscriptions: pubsub.subscriptions.consume (verify pulls, acks).
They are asked with testIamPermissions, which changes nothing. Where composite uploads apply to a bucket
(targets.admin.upload_path), the run also deletes its parts under `.migrate-parts/`; terraform grants that
delete with an IAM condition on the object name, which a bucket-level testIamPermissions cannot see, so
preflight proves it the way the run uses it: create a tiny probe under `.migrate-parts/preflight/` with
ifGenerationMatch=0 and delete it again (https://cloud.google.com/storage/docs/access-control/iam#conditions).

Emulators: fake-gcs-server does not implement the IAM endpoints (404 or 501) and the Pub/Sub emulator has
no IAM at all. There the probe proves a bucket writable, and a topic's existence is the proof (we never
publish a probe message: it would reach the verification subscription and show up in `verify`). A preflight
killed between create and delete leaves its probe behind; the next probe of the bucket deletes every probe
it finds.

Every Google call goes through the target protocols of `migrate.targets.admin`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from migrate import clients
from migrate.config import Config
from migrate.names import verification_subscription
from migrate.plan import Plan, plan_paths
from migrate.preflight_report import (
    BUCKET_PERMISSIONS,
    BUCKET_WRITE,
    ERROR,
    OBJECT_DELETE,
    OK,
    OVERWRITE_ROLE,
    SUBSCRIPTION_CONSUME,
    SUBSCRIPTION_LEVEL,
    SUBSCRIPTION_ROLE,
    TOPIC_PUBLISH,
    TOPIC_ROLE,
    WARNING,
    Finding,
    PreflightReport,
    evaluate_grants,
    grant_fix,
    short_error,
)
from migrate.progress import Event, Reporter, null_reporter
from migrate.retry import call_with_retry, describe
from migrate.targets.admin import COMPOSITE, BucketAdmin, Denied, Missing, TopicAdmin, upload_path

T = TypeVar("T")
PROBE_PREFIX = ".migrate-parts/preflight/"  # under targets.gcs.PARTS_PREFIX
CALL_TIMEOUT = 20.0


def _create_fix(cfg: Config, plan_name: str | None) -> str:
    tfvars = plan_paths(Path(cfg.project.plans_dir), plan_name)["tfvars"] if plan_name else "plans/<name>.tfvars.json"
    return (
        f"apply terraform/ (terraform/examples/migration) with {tfvars}, "
        "or in emulator mode `migrate provision` / `migrate demo` creates it"
    )


@dataclass
class _Context:
    cfg: Config
    principal: str
    create_fix: str


def preflight(
    cfg: Config,
    buckets: Iterable[str],
    topics: Iterable[str],
    *,
    plan_name: str | None = None,
    report: Reporter = null_reporter,
    bucket_admin: BucketAdmin | None = None,
    topic_admin: TopicAdmin | None = None,
    identity: clients.Identity | None = None,
) -> PreflightReport:
    """Check each bucket and topic (exists, every permission the run uses) and each verification subscription.

    `bucket_admin` / `topic_admin`: the targets to ask; by default the Google clients of the config's identity.
    `identity`: who asks; by default clients.describe_identity, which also gets a token for an impersonated
    account, so one that cannot be impersonated fails here in one line.
    """
    buckets, topics = sorted(set(buckets)), sorted(set(topics))
    emulator = bool(clients.storage_emulator() or clients.pubsub_emulator())
    result = PreflightReport(cfg.project.id, plan_name, emulator)
    impersonate = cfg.project.impersonate_service_account
    result.identity = identity or clients.describe_identity(impersonate)
    report(Event("identity", data=result.identity.to_dict()))
    retry_cfg = dataclasses.replace(
        cfg.transfer,
        retry_max_attempts=min(cfg.transfer.retry_max_attempts, 4),
        retry_deadline=min(cfg.transfer.retry_deadline, 20.0),
    )
    timeout = min(cfg.transfer.timeout, CALL_TIMEOUT)
    ctx = _Context(cfg, result.identity.principal, _create_fix(cfg, plan_name))

    def on_retry(exc: BaseException, attempt: int) -> None:
        result.retries += 1
        report(Event("retry", data={"error": describe(exc)}))

    def call(fn: Callable[[], T]) -> T:
        return call_with_retry(fn, retry_cfg, on_retry)

    if buckets:
        if bucket_admin is None:
            from migrate.targets import gcs_json_admin

            bucket_admin = gcs_json_admin.connect(
                cfg.project.id, call, timeout, impersonate=impersonate, endpoint=cfg.storage.endpoint
            )
        for name in buckets:
            report(Event("phase", name=f"preflight bucket {name}"))
            result.findings.append(_check_bucket(bucket_admin, name, ctx))
    if topics:
        if topic_admin is None:
            from migrate.targets import pubsub_admin

            topic_admin = pubsub_admin.connect(
                cfg.project.id, call, timeout, impersonate=impersonate, endpoint=cfg.pubsub.endpoint
            )
        try:
            for name in topics:
                report(Event("phase", name=f"preflight topic {name}"))
                finding = _check_topic(topic_admin, name, ctx)
                result.findings.append(finding)
                if finding.status != "missing":
                    result.findings.append(_check_subscription(topic_admin, name, ctx))
        finally:
            topic_admin.close()
    report(Event("finish", data=result.to_dict()))
    return result


def preflight_plan(cfg: Config, plan: Plan, *, report: Reporter = null_reporter, **admins: Any) -> PreflightReport:
    """preflight() over the plan's targets (its buckets and topics); `admins` as for preflight()."""
    targets = plan.targets
    return preflight(cfg, targets["buckets"], targets["topics"], plan_name=plan.name, report=report, **admins)


# --- buckets ------------------------------------------------------------------------------------


def _check_bucket(admin: BucketAdmin, name: str, ctx: _Context) -> Finding:
    try:
        settings = admin.settings(name)
    except Missing:
        return Finding("bucket", name, "missing", ERROR, f"bucket '{name}' does not exist", ctx.create_fix)
    except Denied as exc:
        msg = f"{ctx.principal} has no access to bucket '{name}' ({short_error(exc)})"
        return Finding(
            "bucket",
            name,
            "no_access",
            ERROR,
            msg,
            grant_fix("roles/storage.legacyBucketReader", f"gs://{name}", ctx.principal),
        )
    except Exception as exc:
        return _unreachable("bucket", name, "GCS", exc)
    classes = [s.storage_class for s in ctx.cfg.catalog if s.bucket == name]
    path, why = upload_path(settings, classes)
    up = {"upload_path": path, "upload_reason": why}
    wanted = dict(BUCKET_PERMISSIONS)
    if ctx.cfg.transfer.conflict_policy == "overwrite":
        wanted[OBJECT_DELETE] = OVERWRITE_ROLE
    try:
        granted = admin.granted(name, sorted(wanted))
    except Exception as exc:
        return _unreachable("bucket", name, "GCS", exc)
    if granted is None:  # an emulator without IAM: the probe is the proof
        return dataclasses.replace(_probe_bucket(admin, name, ctx), **up)
    finding = evaluate_grants("bucket", name, f"gs://{name}", wanted, granted, ctx.principal)
    if finding is None and path == COMPOSITE:
        finding = dataclasses.replace(_probe_bucket(admin, name, ctx, composite=True), method="iam+probe")
    if finding is None:
        finding = Finding(
            "bucket", name, "ok", OK, f"bucket '{name}' exists and {ctx.principal} may use it", method="iam"
        )
    return dataclasses.replace(finding, **up)


def _probe_bucket(admin: BucketAdmin, name: str, ctx: _Context, *, composite: bool = False) -> Finding:
    probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    try:
        admin.create_object(name, probe)
    except Denied as exc:
        msg = f"{ctx.principal} may not create objects in bucket '{name}' ({short_error(exc)})"
        fix = grant_fix(BUCKET_PERMISSIONS[BUCKET_WRITE], f"gs://{name}", ctx.principal)
        return Finding(
            "bucket", name, "not_writable", ERROR, msg, fix, method="probe", missing_permissions=(BUCKET_WRITE,)
        )
    except Exception as exc:
        return _unreachable("bucket", name, "GCS", exc)
    try:
        admin.delete_objects(name, PROBE_PREFIX, also=[probe])
    except Denied as exc:
        if composite:  # the run deletes composite parts here: without this it leaves every part behind
            msg = (
                f"{ctx.principal} lacks {OBJECT_DELETE} under gs://{name}/.migrate-parts/, which composite"
                f" uploads of large files need ({short_error(exc)})"
            )
            fix = grant_fix(
                f"{OVERWRITE_ROLE} (conditioned on the .migrate-parts/ prefix)", f"gs://{name}", ctx.principal
            )
            return Finding(
                "bucket", name, "not_writable", ERROR, msg, fix, method="probe", missing_permissions=(OBJECT_DELETE,)
            )
        return _probe_left(name, probe, exc)
    except Exception as exc:
        return _probe_left(name, probe, exc)
    return Finding("bucket", name, "ok", OK, f"bucket '{name}' exists and is writable", method="probe")


def _probe_left(name: str, probe: str, exc: BaseException) -> Finding:
    return Finding(
        "bucket",
        name,
        "ok",
        WARNING,
        f"bucket '{name}' is writable, but the probe object {probe} could not be deleted ({short_error(exc)})",
        f"delete gs://{name}/{probe}",
        method="probe",
    )


# --- topics -------------------------------------------------------------------------------------


def _check_topic(admin: TopicAdmin, name: str, ctx: _Context) -> Finding:
    try:
        admin.check_topic(name)
    except Missing:
        return Finding("topic", name, "missing", ERROR, f"topic '{name}' does not exist", ctx.create_fix)
    except Denied as exc:
        msg = f"{ctx.principal} has no access to topic '{name}' ({short_error(exc)})"
        return Finding(
            "topic", name, "no_access", ERROR, msg, grant_fix("roles/pubsub.viewer", f"topic {name}", ctx.principal)
        )
    except Exception as exc:
        return _unreachable("topic", name, "Pub/Sub", exc)
    try:
        granted = admin.topic_granted(name, [TOPIC_PUBLISH])
    except Exception as exc:
        return _unreachable("topic", name, "Pub/Sub", exc)
    if granted is None:
        return Finding("topic", name, "ok", OK, f"topic '{name}' exists (emulator: no IAM)", method="emulator")
    finding = evaluate_grants("topic", name, f"topic {name}", {TOPIC_PUBLISH: TOPIC_ROLE}, granted, ctx.principal)
    return finding or Finding("topic", name, "ok", OK, f"topic '{name}' exists and is publishable", method="iam")


def _check_subscription(admin: TopicAdmin, topic: str, ctx: _Context) -> Finding:
    sub = verification_subscription(topic)
    level = SUBSCRIPTION_LEVEL
    try:
        got = admin.subscription(sub)
    except Missing:
        return Finding(
            "subscription",
            sub,
            "missing",
            level,
            f"verification subscription '{sub}' of topic '{topic}' does not exist: "
            "events published before it exists cannot be verified",
            ctx.create_fix,
        )
    except Denied as exc:
        msg = f"{ctx.principal} has no access to subscription '{sub}' ({short_error(exc)})"
        return Finding(
            "subscription",
            sub,
            "no_access",
            level,
            msg,
            grant_fix("roles/pubsub.viewer", f"subscription {sub}", ctx.principal),
        )
    except Exception as exc:
        return dataclasses.replace(_unreachable("subscription", sub, "Pub/Sub", exc), level=level)
    want = f"projects/{admin.project}/topics/{topic}"
    if got.topic != want:
        return Finding(
            "subscription",
            sub,
            "wrong_topic",
            level,
            f"verification subscription '{sub}' is attached to {got.topic}, not to topic '{topic}'",
            f"delete it and re-create it on {want} (terraform/ does)",
        )
    try:
        granted = admin.subscription_granted(sub, [SUBSCRIPTION_CONSUME])
    except Exception as exc:
        return dataclasses.replace(_unreachable("subscription", sub, "Pub/Sub", exc), level=level)
    if granted is None:
        return Finding("subscription", sub, "ok", OK, f"verification subscription '{sub}' exists", method="emulator")
    wanted = {SUBSCRIPTION_CONSUME: SUBSCRIPTION_ROLE}
    finding = evaluate_grants("subscription", sub, f"subscription {sub}", wanted, granted, ctx.principal, level)
    return finding or Finding(
        "subscription", sub, "ok", OK, f"verification subscription '{sub}' exists and is pullable", method="iam"
    )


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
