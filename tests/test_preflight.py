"""Preflight names every missing target with its fix, proves writability, and exits 1 when something is missing."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from migrate import clients
from migrate.cli import app
from migrate.config import load_config
from migrate.errors import TargetError
from migrate.names import verification_subscription
from migrate.plan import Plan
from migrate.preflight import PROBE_PREFIX, preflight, preflight_plan


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_cfg(write_config, tmp_path: Path):
    """Config whose catalog writes to `buckets` and whose listeners publish to `topics`."""

    def make(buckets: list[str], topics: list[str]):
        path = write_config(
            catalog=[{"name": f"c{i}", "root": str(tmp_path), "bucket": b} for i, b in enumerate(buckets)],
            listeners=[{"name": f"l{i}", "paths": ["*.jsonl"], "topic": t} for i, t in enumerate(topics)],
            transfer={"retry_initial_delay": 0.01, "retry_max_delay": 0.05},
        )
        return load_config(path), path

    return make


def test_existing_targets_pass_and_the_probe_leaves_nothing(emulators, gcs_client, bucket, topic, make_cfg):
    cfg, _ = make_cfg([bucket], [topic])
    report = preflight(cfg, [bucket], [topic])
    assert report.ok and report.emulator
    by_kind = {f.kind: f for f in report.findings}
    assert by_kind["bucket"].status == "ok" and by_kind["bucket"].method == "probe"  # fake-gcs-server has no IAM
    assert by_kind["topic"].status == "ok" and by_kind["topic"].method == "emulator"
    assert by_kind["subscription"].name == verification_subscription(topic)
    assert by_kind["subscription"].level == "ok"
    assert list(gcs_client.list_blobs(bucket, prefix=PROBE_PREFIX)) == []
    assert report.retries == 0  # the emulator's 501 for IAM calls is permanent: probed at once, not retried
    report.raise_for_errors()  # nothing to raise


def test_a_probe_left_by_a_killed_preflight_is_removed_by_the_next(emulators, gcs_client, bucket, make_cfg):
    from migrate.targets.gcs import PARTS_PREFIX

    assert PROBE_PREFIX.startswith(PARTS_PREFIX)  # scratch space: hidden from listings, swept by lifecycle
    stale = gcs_client.bucket(bucket).blob(f"{PROBE_PREFIX}left-by-a-kill")
    stale.upload_from_string(b"")
    cfg, _ = make_cfg([bucket], [])
    report = preflight(cfg, [bucket], [])
    assert report.ok and not report.warnings
    assert list(gcs_client.list_blobs(bucket, prefix=PROBE_PREFIX)) == []


def test_missing_bucket_and_topic_are_named_with_their_fix(emulators, bucket, topic, make_cfg):
    gone_bucket, gone_topic = unique_name("b"), unique_name("topic")
    cfg, _ = make_cfg([bucket, gone_bucket], [topic, gone_topic])
    report = preflight(cfg, [bucket, gone_bucket], [topic, gone_topic], plan_name="wave1")
    assert not report.ok
    assert report.missing() == [f"bucket {gone_bucket}", f"topic {gone_topic}"]
    for finding in report.errors:
        assert "terraform/" in finding.fix and "wave1.tfvars.json" in finding.fix
        assert finding.name in finding.message
    with pytest.raises(TargetError) as info:
        report.raise_for_errors()
    line = info.value.one_line()
    assert f"bucket '{gone_bucket}' does not exist" in line and f"topic '{gone_topic}' does not exist" in line
    assert "\n" not in line and info.value.exit_code == 1


def test_missing_verification_subscription_is_a_warning(emulators, make_cfg):
    topic_id = unique_name("topic")
    publisher = clients.publisher_client()
    publisher.create_topic(name=publisher.topic_path(emulators.project, topic_id))
    publisher.transport.close()
    cfg, _ = make_cfg([], [topic_id])
    report = preflight(cfg, [], [topic_id])
    assert report.ok
    [warning] = report.warnings
    assert warning.kind == "subscription" and warning.status == "missing"
    assert verification_subscription(topic_id) in warning.message


def test_preflight_plan_uses_the_plan_targets(emulators, bucket, topic, make_cfg, tmp_path: Path):
    gone = unique_name("b")
    cfg, _ = make_cfg([bucket], [topic])
    plan = Plan(tmp_path / "p.plan.json", {"name": "p", "targets": {"buckets": [bucket, gone], "topics": [topic]}})
    report = preflight_plan(cfg, plan)
    assert report.plan == "p"
    assert report.missing() == [f"bucket {gone}"]
    assert str(Path(cfg.project.plans_dir) / "p.tfvars.json") in report.errors[0].fix


def test_unreachable_emulator_is_an_error_not_a_traceback(emulators, make_cfg, monkeypatch):
    from migrate.local.emulators import free_port

    cfg, _ = make_cfg(["some-bucket"], [])
    monkeypatch.setenv(clients.STORAGE_EMULATOR_ENV, f"http://127.0.0.1:{free_port()}")
    report = preflight(cfg, ["some-bucket"], [])
    [finding] = report.errors
    assert finding.status == "unreachable" and "did not answer" in finding.message


def test_cli_exit_codes_and_json(emulators, bucket, topic, make_cfg):
    runner = CliRunner()
    _, good = make_cfg([bucket], [topic])
    ok = runner.invoke(app, ["preflight", "--config", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "exist and are writable" in ok.output

    gone = unique_name("b")
    _, bad = make_cfg([bucket, gone], [topic])
    res = runner.invoke(app, ["preflight", "--config", str(bad)])
    assert res.exit_code == 1
    assert f"bucket '{gone}' does not exist" in res.output
    assert "Traceback" not in res.output

    res = runner.invoke(app, ["preflight", "--config", str(bad), "--json"])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["ok"] is False
    assert [f["name"] for f in doc["findings"] if f["level"] == "error"] == [gone]


def test_cli_unknown_plan_is_a_plan_error(emulators, make_cfg, bucket):
    _, cfg_path = make_cfg([bucket], [])
    res = CliRunner().invoke(app, ["preflight", "no-such-plan", "--config", str(cfg_path)])
    assert res.exit_code == 2
    assert "no-such-plan" in res.output and "Traceback" not in res.output
