"""Emulator provisioning creates exactly what a plan's tfvars lists, idempotently, and only on emulators."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from migrate import clients
from migrate.config import load_config
from migrate.errors import PlanError, TargetError
from migrate.local.provision import provision
from migrate.names import dead_letter_topic, verification_subscription
from migrate.planning.tfvars import build_tfvars, tfvars_json


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def tfvars(write_config, tmp_path: Path) -> dict:
    """A tfvars document built the way `migrate plan` builds it, for fresh names."""
    (tmp_path / "src").mkdir()
    b1, b2, topic = unique_name("b"), unique_name("b"), unique_name("topic")
    cfg = load_config(
        write_config(
            catalog=[
                {"name": "audio", "root": "src", "bucket": b1, "storage_class": "STANDARD"},
                {"name": "art", "root": "src", "bucket": b2, "storage_class": "NEARLINE"},
            ],
            listeners=[{"name": "plays", "paths": ["src/*.jsonl"], "topic": topic}],
        )
    )
    return build_tfvars(cfg, [b1, b2], [topic])


def test_creates_every_target_then_is_idempotent(emulators, gcs_client, tfvars):
    (b1, b2), (topic,) = sorted(tfvars["buckets"]), list(tfvars["topics"])
    sub, dlt = verification_subscription(topic), dead_letter_topic(topic)

    first = provision(tfvars)
    assert sorted(first.created) == sorted(
        [
            ("bucket", b1),
            ("bucket", b2),
            ("topic", topic),
            ("topic", dlt),
            ("subscription", sub),
            ("subscription", dlt + "-hold"),
        ]
    )
    assert first.existing == []
    assert gcs_client.bucket(b1).exists() and gcs_client.bucket(b2).exists()

    subscriber = clients.subscriber_client()
    try:
        got = subscriber.get_subscription(subscription=subscriber.subscription_path(emulators.project, sub))
        assert got.topic.endswith(f"/topics/{topic}")
        assert got.dead_letter_policy.dead_letter_topic.endswith(f"/topics/{dlt}")
    finally:
        subscriber.close()

    second = provision(tfvars)
    assert second.created == []
    assert sorted(second.existing) == sorted(first.created)
    assert "0 created, 6 already existed" in second.summary()


def test_verification_subscription_receives_what_is_published(emulators, tfvars):
    topic = next(iter(tfvars["topics"]))
    provision(tfvars)
    publisher, subscriber = clients.publisher_client(), clients.subscriber_client()
    try:
        publisher.publish(publisher.topic_path(emulators.project, topic), b"hello", event_id="e1").result(timeout=30)
        sub_path = subscriber.subscription_path(emulators.project, verification_subscription(topic))
        resp = subscriber.pull(subscription=sub_path, max_messages=10, timeout=30)
        assert [m.message.data for m in resp.received_messages] == [b"hello"]
        assert resp.received_messages[0].message.attributes["event_id"] == "e1"
    finally:
        subscriber.close()
        publisher.transport.close()


def test_reads_a_tfvars_file(emulators, gcs_client, tfvars, tmp_path: Path):
    path = tmp_path / "plan.tfvars.json"
    path.write_text(tfvars_json(tfvars))
    report = provision(path)
    assert {name for kind, name in report.created if kind == "bucket"} == set(tfvars["buckets"])
    assert json.loads(json.dumps(report.to_dict()))["project"] == tfvars["project_id"]


def test_refuses_outside_emulator_mode(emulators, gcs_client, tfvars, monkeypatch):
    monkeypatch.delenv(clients.STORAGE_EMULATOR_ENV)
    with pytest.raises(TargetError) as info:
        provision(tfvars)
    assert "terraform/" in info.value.fix
    assert "STORAGE_EMULATOR_HOST" in info.value.message
    monkeypatch.setenv(clients.STORAGE_EMULATOR_ENV, emulators.gcs)
    for name in tfvars["buckets"]:
        assert not gcs_client.bucket(name).exists()

    monkeypatch.delenv(clients.PUBSUB_EMULATOR_ENV)
    with pytest.raises(TargetError, match="PUBSUB_EMULATOR_HOST"):
        provision(tfvars)


def test_missing_or_broken_tfvars_is_a_plan_error(tmp_path: Path):
    with pytest.raises(PlanError) as info:
        provision(tmp_path / "nope.tfvars.json")
    assert info.value.exit_code == 2 and "migrate plan" in info.value.fix
    broken = tmp_path / "broken.tfvars.json"
    broken.write_text('{"project_id": "p", "buckets": [')
    with pytest.raises(PlanError, match="broken.tfvars.json"):
        provision(broken)


def test_emulator_down_is_a_target_error(emulators, tfvars, monkeypatch):
    from migrate.local.emulators import free_port

    monkeypatch.setenv(clients.STORAGE_EMULATOR_ENV, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TargetError) as info:
        provision({**tfvars, "topics": {}})
    assert "cannot create bucket" in info.value.message
    assert "\n" not in info.value.one_line()


def test_existing_bucket_is_fine(gcs_client, bucket, tfvars):
    report = provision({**tfvars, "buckets": {bucket: {"storage_class": "STANDARD"}}, "topics": {}})
    assert report.existing == [("bucket", bucket)]


def test_cli_provision_from_a_tfvars_file(emulators, gcs_client, tfvars, tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from migrate.cli import app

    path = tmp_path / "wave.tfvars.json"
    path.write_text(tfvars_json(tfvars))
    res = CliRunner().invoke(app, ["provision", str(path), "--json"])
    assert res.exit_code == 0, res.output
    assert {c["name"] for c in json.loads(res.stdout)["created"] if c["kind"] == "bucket"} == set(tfvars["buckets"])

    monkeypatch.delenv(clients.PUBSUB_EMULATOR_ENV)
    res = CliRunner().invoke(app, ["provision", str(path)])
    assert res.exit_code == 1
    assert "terraform/" in res.output and "Traceback" not in res.output
