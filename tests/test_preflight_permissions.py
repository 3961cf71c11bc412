"""Preflight asks for every permission the run will use, and names what is missing, where, for whom, and the fix.

The emulators have no IAM, so the real-cloud path is tested at the target-protocol level
(`migrate.targets.admin`): targets that answer testIamPermissions with a constructed answer, and
`GcsAdmin` against a small HTTP server replaying GCS's documented JSON answers
(https://cloud.google.com/storage/docs/json_api/v1/buckets/testIamPermissions,
https://cloud.google.com/storage/docs/json_api/v1/buckets#resource). The emulator path runs end to end.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from migrate import clients
from migrate.cli import app
from migrate.config import load_config
from migrate.errors import TargetError
from migrate.preflight import PROBE_PREFIX, preflight
from migrate.targets import gcs_json_admin
from migrate.targets.admin import COMPOSITE, RESUMABLE, BucketSettings, Denied, SubscriptionInfo, upload_path
from migrate.targets.gcs_admin import GcsAdmin

SA = "migrate-transfer@acme-music-prod.iam.gserviceaccount.com"
BUCKET, TOPIC = "acme-audio", "plays"
SUB = "plays-migrate-verify"
PROTECTED = BucketSettings(BUCKET, versioning=True, soft_delete_seconds=7 * 86_400)  # terraform/'s defaults
BARE = BucketSettings(BUCKET)  # STANDARD, nothing on: composite uploads apply


class RecordedBuckets:
    """A BucketAdmin whose testIamPermissions answer is given: the permissions held (GCS returns the
    subset of those asked that the caller holds)."""

    def __init__(self, settings: BucketSettings, held: Iterable[str], *, delete_denied: bool = False) -> None:
        self._settings, self.held, self.delete_denied = settings, set(held), delete_denied
        self.asked: list[list[str]] = []
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.notes: list[str] = []

    def settings(self, bucket: str) -> BucketSettings:
        return self._settings

    def granted(self, bucket: str, permissions: Sequence[str]) -> set[str] | None:
        self.asked.append(list(permissions))
        return set(permissions) & self.held

    def create_object(self, bucket: str, name: str) -> None:
        self.created.append(name)

    def delete_objects(self, bucket: str, prefix: str, also: Iterable[str] = ()) -> int:
        if self.delete_denied:
            raise Denied("403 storage.objects.delete denied")
        self.deleted += list(also)
        return len(self.deleted)


class RecordedTopics:
    def __init__(self, held: dict[str, set[str]]) -> None:
        self.project, self.held = "acme-music-prod", held

    def check_topic(self, topic: str) -> None:
        pass

    def topic_granted(self, topic: str, permissions: Sequence[str]) -> set[str] | None:
        return set(permissions) & self.held.get(topic, set())

    def subscription(self, subscription: str) -> SubscriptionInfo:
        return SubscriptionInfo(subscription, f"projects/{self.project}/topics/{TOPIC}")

    def subscription_granted(self, subscription: str, permissions: Sequence[str]) -> set[str] | None:
        return set(permissions) & self.held.get(subscription, set())

    def close(self) -> None:
        pass


@pytest.fixture
def cfg(write_config, tmp_path: Path, real_cloud_adc):
    def make(**transfer):
        return load_config(
            write_config(
                project={"id": "acme-music-prod", "impersonate_service_account": SA},
                catalog=[{"name": "audio", "root": str(tmp_path), "bucket": BUCKET}],
                listeners=[{"name": "plays", "paths": ["*.jsonl"], "topic": TOPIC}],
                transfer=transfer,
            )
        )

    return make


def _me() -> clients.Identity:
    """The identity of the ADC fixture impersonating SA, read from the credentials (no token requested)."""
    return clients.describe_identity(SA, lookup=False)


ALL_BUCKET = {"storage.objects.create", "storage.objects.get", "storage.objects.list"}


def test_every_permission_held_passes_and_names_the_principal(cfg):
    buckets = RecordedBuckets(PROTECTED, ALL_BUCKET)
    topics = RecordedTopics({TOPIC: {"pubsub.topics.publish"}, SUB: {"pubsub.subscriptions.consume"}})
    report = preflight(cfg(), [BUCKET], [TOPIC], bucket_admin=buckets, topic_admin=topics, identity=_me())
    assert report.ok and not report.warnings, [f.one_line() for f in report.findings]
    assert buckets.asked == [sorted(ALL_BUCKET)]  # no delete: versioned bucket, resumable path, skip policy
    assert buckets.created == []  # no probe on the real-cloud path of a resumable bucket
    [bucket] = [f for f in report.findings if f.kind == "bucket"]
    assert bucket.method == "iam" and bucket.upload_path.startswith(RESUMABLE)
    assert report.identity.principal == SA and report.identity.quota_project == "acme-billing"
    assert report.to_dict()["identity"]["principal"] == SA


def test_a_missing_bucket_permission_is_one_line_naming_permission_bucket_principal_and_role(cfg):
    buckets = RecordedBuckets(PROTECTED, {"storage.objects.create", "storage.objects.get"})
    report = preflight(cfg(), [BUCKET], [], bucket_admin=buckets, identity=_me())
    [err] = report.errors
    assert err.missing_permissions == ("storage.objects.list",)
    line = err.one_line()
    assert "storage.objects.list" in line and f"'{BUCKET}'" in line and SA in line
    assert "roles/storage.objectViewer" in line and "terraform/modules/migration" in line
    with pytest.raises(TargetError) as info:
        report.raise_for_errors()
    assert "\n" not in info.value.one_line() and info.value.exit_code == 1


def test_overwrite_policy_also_needs_delete(cfg):
    buckets = RecordedBuckets(PROTECTED, ALL_BUCKET)
    report = preflight(cfg(conflict_policy="overwrite"), [BUCKET], [], bucket_admin=buckets, identity=_me())
    assert "storage.objects.delete" in buckets.asked[0]
    [err] = report.errors
    assert err.missing_permissions == ("storage.objects.delete",) and "roles/storage.objectUser" in err.fix


def test_composite_bucket_proves_delete_under_the_scratch_prefix(cfg):
    ok = RecordedBuckets(BARE, ALL_BUCKET)
    report = preflight(cfg(), [BUCKET], [], bucket_admin=ok, identity=_me())
    [finding] = report.findings
    assert report.ok and finding.method == "iam+probe" and finding.upload_path.startswith(COMPOSITE)
    assert ok.created and ok.created == ok.deleted and ok.created[0].startswith(PROBE_PREFIX)

    denied = RecordedBuckets(BARE, ALL_BUCKET, delete_denied=True)
    [err] = preflight(cfg(), [BUCKET], [], bucket_admin=denied, identity=_me()).errors
    assert err.missing_permissions == ("storage.objects.delete",)
    assert ".migrate-parts/" in err.message and SA in err.message and "roles/storage.objectUser" in err.fix


def test_topic_publish_and_subscription_pull_are_checked(cfg):
    topics = RecordedTopics({TOPIC: set(), SUB: set()})
    report = preflight(cfg(), [], [TOPIC], topic_admin=topics, identity=_me())
    by_kind = {f.kind: f for f in report.findings}
    assert by_kind["topic"].level == "error" and by_kind["topic"].missing_permissions == ("pubsub.topics.publish",)
    assert "roles/pubsub.publisher" in by_kind["topic"].fix and SA in by_kind["topic"].message
    sub = by_kind["subscription"]
    assert sub.level != "ok" and sub.missing_permissions == ("pubsub.subscriptions.consume",)
    assert "roles/pubsub.subscriber" in sub.fix and SUB in sub.message


@pytest.mark.parametrize(
    ("settings", "classes", "path"),
    [
        (BARE, ["STANDARD"], COMPOSITE),
        (BARE, ["COLDLINE"], RESUMABLE),
        (BucketSettings(BUCKET, storage_class="NEARLINE"), [], RESUMABLE),
        (BucketSettings(BUCKET, versioning=True), [], RESUMABLE),
        (BucketSettings(BUCKET, soft_delete_seconds=604_800), [], RESUMABLE),
        (BucketSettings(BUCKET, retention_seconds=86_400), [], RESUMABLE),
        (BucketSettings(BUCKET, default_event_based_hold=True), [], RESUMABLE),
    ],
)
def test_upload_path_rules(settings, classes, path):
    assert upload_path(settings, classes)[0] == path


# --- GcsAdmin against GCS's documented JSON answers ---------------------------------------------


class _Replay(BaseHTTPRequestHandler):
    asked: list[list[str]] = []

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path.endswith("/iam/testPermissions"):
            asked = parse_qs(url.query)["permissions"]
            type(self).asked.append(asked)
            held = {"storage.objects.create", "storage.objects.get"}
            body = {"kind": "storage#testIamPermissionsResponse", "permissions": [p for p in asked if p in held]}
        else:
            body = {
                "kind": "storage#bucket",
                "name": BUCKET,
                "storageClass": "COLDLINE",
                "versioning": {"enabled": True},
                "softDeletePolicy": {"retentionDurationSeconds": "604800"},
                "retentionPolicy": {"retentionPeriod": "86400"},
                "defaultEventBasedHold": True,
            }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("kind", ["storage client", "json api"])
def test_gcs_admin_reads_settings_and_the_testiampermissions_answer(monkeypatch, kind):
    """Both bucket admins (google.cloud.storage's for provisioning, the JSON one preflight uses) read the same
    documented answers the same way."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Replay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv(clients.STORAGE_EMULATOR_ENV, f"http://127.0.0.1:{server.server_port}")
        if kind == "storage client":
            admin = GcsAdmin(clients.gcs_client("acme-music-prod", pool_size=2), lambda fn: fn(), 5.0)
        else:
            admin = gcs_json_admin.connect("acme-music-prod", lambda fn: fn(), 5.0)
        assert admin.settings(BUCKET) == BucketSettings(BUCKET, "COLDLINE", True, 604_800, 86_400, True)
        got = admin.granted(BUCKET, ["storage.objects.create", "storage.objects.get", "storage.objects.list"])
        assert got == {"storage.objects.create", "storage.objects.get"}
        assert _Replay.asked[-1] == ["storage.objects.create", "storage.objects.get", "storage.objects.list"]
    finally:
        server.shutdown()
        server.server_close()


# --- the emulator path, end to end --------------------------------------------------------------


def test_emulator_preflight_says_so_and_shows_the_upload_path(emulators, bucket, topic, write_config, tmp_path):
    path = write_config(
        catalog=[{"name": "audio", "root": str(tmp_path), "bucket": bucket}],
        listeners=[{"name": "plays", "paths": ["*.jsonl"], "topic": topic}],
    )
    runner = CliRunner()
    res = runner.invoke(app, ["preflight", "--config", str(path)])
    assert res.exit_code == 0, res.output
    assert "running on the local emulators" in res.output and "composite" in res.output
    doc = json.loads(runner.invoke(app, ["preflight", "--config", str(path), "--json"]).stdout)
    assert doc["identity"]["kind"] == "emulator"
    [b] = [f for f in doc["findings"] if f["kind"] == "bucket"]
    assert b["method"] == "probe" and b["upload_path"].startswith(COMPOSITE)
