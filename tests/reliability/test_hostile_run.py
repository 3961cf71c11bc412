"""Hostile input through a whole run (real CLI, real emulators): what must arrive arrives byte for byte,
what cannot is quarantined or reported, nothing is corrupted, nothing hangs, no traceback.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from pubsubkit import drain
from relkit import (
    assert_clean_error,
    assert_no_traceback,
    build_hostile_estate,
    create_audit_subscription,
    estate_config,
    kill_group,
    run_cli,
    start_cli,
)

from migrate.hashing import crc32c_of_bytes


def unique_name(prefix: str) -> str:
    import uuid

    return f"{prefix}-{uuid.uuid4().hex[:12]}"


pytestmark = pytest.mark.slow  # whole runs against the emulators: about a minute in all
PLAN = "h1"


def _inventory_and_plan(cfg: Path, name: str = PLAN) -> dict:
    res = run_cli("inventory", "--config", cfg, "--hash", "--json")
    assert res.returncode == 0, str(res)
    res = run_cli("plan", "--config", cfg, "--name", name, "--json")
    assert res.returncode == 0, str(res)
    return res.json()


def _ledger(cfg: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(cfg.parent / "state" / "ledger.sqlite")
    conn.row_factory = sqlite3.Row
    return conn


def _objects(gcs_client, bucket: str) -> dict[str, bytes]:
    return {b.name: b.download_as_bytes() for b in gcs_client.list_blobs(bucket)}


@pytest.fixture
def hostile(tmp_path, emulators, bucket, topic):
    est = build_hostile_estate(tmp_path / "dc", bucket=bucket, topic=topic, csv_topic=topic)
    audit = create_audit_subscription(emulators.project, topic, f"{topic}-audit")
    return est, audit


@dataclass
class HostileRun:
    est: object
    bucket: str
    run: object
    verify: object
    rerun: object
    objects: dict
    ids: Counter
    ids_after_rerun: list
    quarantine: list


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, emulators, gcs_client) -> HostileRun:
    """One full inventory -> plan -> run -> verify -> run again of the hostile estate, judged by several tests."""
    tmp = tmp_path_factory.mktemp("hostile")
    bucket, topic = unique_name("b"), unique_name("topic")
    gcs_client.create_bucket(bucket)
    from migrate import clients, names

    pub, sub = clients.publisher_client(), clients.subscriber_client()
    try:
        tp = pub.topic_path(emulators.project, topic)
        pub.create_topic(name=tp)
        sub.create_subscription(
            name=sub.subscription_path(emulators.project, names.verification_subscription(topic)), topic=tp
        )
    finally:
        sub.close()
    est = build_hostile_estate(tmp / "dc", bucket=bucket, topic=topic, csv_topic=topic)
    audit = create_audit_subscription(emulators.project, topic, f"{topic}-audit")
    _inventory_and_plan(est.config)
    run = run_cli("run", "--config", est.config, PLAN, "--json")
    objects = _objects(gcs_client, bucket)
    ids = Counter(m.attributes["event_id"] for m in drain(audit))
    verify = run_cli("verify", "--config", est.config, PLAN, "--json")
    rerun = run_cli("run", "--config", est.config, PLAN, "--json")
    again = [m.attributes["event_id"] for m in drain(audit, quiet_pulls=1)]
    plan_id = json.loads((est.root / "plans" / f"{PLAN}.plan.json").read_text())["plan_id"]
    qpath = est.root / "state" / "quarantine" / f"{plan_id}.jsonl"
    quarantine = [json.loads(line) for line in qpath.read_text().splitlines()] if qpath.exists() else []
    return HostileRun(est, bucket, run, verify, rerun, objects, ids, again, quarantine)


def test_hostile_run_exits_cleanly(hostile_run):
    r = hostile_run
    assert r.run.returncode == 0, str(r.run)
    assert_no_traceback(r.run)
    assert r.verify.returncode == 0, str(r.verify)
    assert_no_traceback(r.verify)


def test_good_files_arrive_byte_for_byte_and_nothing_else(hostile_run):
    r = hostile_run
    want = {"audio/" + rel: data for rel, data in r.est.good_files.items()}
    assert r.objects == want  # 0-byte files included; anomalies, FIFO and links not uploaded


def test_bad_event_records_are_quarantined_with_their_raw_bytes(hostile_run):
    r = hostile_run
    est = r.est
    jsonl = [e for e in r.quarantine if e["file"].endswith("a.jsonl.gz")]
    csv = [e for e in r.quarantine if e["file"].endswith(".csv")]
    assert len(jsonl) == 3 + est.jsonl_oversized, jsonl
    assert len(csv) == est.csv_bad, csv
    for e in r.quarantine:
        assert {"file", "line", "offset", "reason", "raw_b64"} <= set(e)
    raws = {base64.b64decode(e["raw_b64"]) for e in r.quarantine}
    assert b"not json at all" in raws and b"only-two,columns" in raws and b'{"event_id": "broken", "ts": ' in raws
    (huge,) = [e for e in jsonl if "10 MB" in e["reason"]]
    assert huge["line"] == 21 and base64.b64decode(huge["raw_b64"]).startswith(b'{"event_id":"evt-huge"')
    summary = r.run.json()
    assert summary["events"]["quarantined"] == len(r.quarantine)


def test_valid_events_arrive_once_with_their_ids(hostile_run):
    r = hostile_run
    expected = set(r.est.jsonl_valid_ids) - {i for i in r.est.jsonl_valid_ids if i.startswith("evt-t-")}
    expected |= set(r.est.csv_valid_ids)
    assert expected <= set(r.ids)
    assert max(r.ids.values()) == 1  # no crash, no retry: no duplicate
    assert "evt-huge" not in r.ids


def test_truncated_gzip_events_before_the_cut_arrive(hostile_run):
    """A truncated log is an anomaly, but the complete events before the cut are data: they must arrive,
    and the torn tail is quarantined."""
    r = hostile_run
    before_cut = {i for i in r.est.jsonl_valid_ids if i.startswith("evt-t-")}
    assert len(before_cut) > 100
    missing = before_cut - set(r.ids)
    assert not missing, f"{len(missing)} of {len(before_cut)} valid events of the truncated log never arrived"
    assert any(e["file"] == str(r.est.truncated_log) for e in r.quarantine)


def test_second_run_moves_nothing(hostile_run):
    r = hostile_run
    assert r.rerun.returncode == 0, str(r.rerun)
    assert r.ids_after_rerun == []


def test_file_deleted_between_inventory_and_run_is_reported(hostile, gcs_client, bucket):
    est, _ = hostile
    _inventory_and_plan(est.config)
    (est.tree / "plain.ogg").unlink()
    res = run_cli("run", "--config", est.config, PLAN, "--json")
    assert_no_traceback(res)
    got = _objects(gcs_client, bucket)
    assert "audio/plain.ogg" not in got
    assert got["audio/empty.ogg"] == b""  # the rest arrived
    row = _ledger(est.config).execute("SELECT state, last_error FROM items WHERE relpath='plain.ogg'").fetchone()
    assert row["state"] == "source-changed", dict(row)
    assert "plain.ogg" in res.output
    verify = run_cli("verify", "--config", est.config, PLAN)
    assert verify.returncode == 1 and "plain.ogg" in verify.output, str(verify)
    assert res.returncode == 1, str(res)  # a planned file was not copied: not a success


def test_planned_file_replaced_by_a_fifo_does_not_hang(hostile, gcs_client, bucket):
    est, _ = hostile
    _inventory_and_plan(est.config)
    victim = est.tree / "space and # hash?.ogg"
    victim.unlink()
    os.mkfifo(victim)
    res = run_cli("run", "--config", est.config, PLAN, "--json", timeout=120)
    assert_no_traceback(res)
    got = _objects(gcs_client, bucket)
    assert "audio/space and # hash?.ogg" not in got
    assert got["audio/plain.ogg"] == b"OggS plain"
    assert "space and # hash?.ogg" in res.output
    assert res.returncode == 1, str(res)  # a planned file was not copied: not a success


@pytest.mark.parametrize("change", ["rewrite", "delete"])
def test_file_changed_during_upload_never_lands_corrupted(
    tmp_path, emulators, gcs_client, bucket, topic, started, change
):
    tree = tmp_path / "tree"
    tree.mkdir()
    size = 3 * 1024 * 1024
    original = os.urandom(size)
    (tree / "master.flac").write_bytes(original)
    (tree / "small.ogg").write_bytes(b"OggS small")
    cfg = estate_config(
        tmp_path,
        bucket=bucket,
        topic=topic,
        csv_topic=topic,
        tree=tree,
        jsonl_glob=str(tmp_path / "none" / "*.jsonl"),
        csv_glob=str(tmp_path / "none" / "*.csv"),
    )
    text = cfg.read_text().replace(
        "workers = 2", 'workers = 1\nbandwidth_limit = "1MiB/s"\nlarge_file_threshold = "1MiB"\nchunk_size = "256KiB"'
    )
    cfg.write_text(text)
    _inventory_and_plan(cfg)
    proc, out, err = start_cli("run", "--config", cfg, PLAN, "--json", log_dir=tmp_path / "logs")
    started.append(proc)
    deadline = time.monotonic() + 60
    # wait until the large upload is under way (its first part objects exist), then rewrite the file
    while proc.poll() is None and time.monotonic() < deadline:
        if any(True for _ in gcs_client.list_blobs(bucket, prefix=".migrate-parts/", max_results=1)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the upload finished before the file could be modified"
    if change == "rewrite":
        with open(tree / "master.flac", "r+b") as fh:  # same size, new bytes: only the content tells
            fh.seek(size // 2)
            fh.write(os.urandom(size // 2))
    else:
        (tree / "master.flac").unlink()  # removed mid-run: the parts not yet sent cannot be read
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    stdout, stderr = out.read_text(), err.read_text()
    assert "Traceback" not in stderr, stderr
    blob = gcs_client.bucket(bucket).get_blob("audio/master.flac")
    if blob is not None:  # if anything landed, it is the planned content, never a mix
        assert blob.crc32c == crc32c_of_bytes(original)
    assert gcs_client.bucket(bucket).blob("audio/small.ogg").download_as_bytes() == b"OggS small"
    row = _ledger(cfg).execute("SELECT state FROM items WHERE relpath='master.flac'").fetchone()
    assert row["state"] == "source-changed"
    assert "master.flac" in stdout + stderr
    assert not list(gcs_client.list_blobs(bucket, prefix=".migrate-parts/"))  # no part left behind
    assert proc.returncode == 1, stdout + stderr  # a planned file was not copied: not a success


def test_missing_targets_are_each_named_by_preflight_and_run(tmp_path, emulators, gcs_client, bucket, topic):
    est = build_hostile_estate(tmp_path / "dc", bucket="no-such-bucket-x1", topic="no-such-topic-x1", csv_topic=topic)
    text = est.config.read_text()
    # a second catalog source whose bucket exists: nothing may move to it either
    text += f'\n[[catalog]]\nname = "art"\nroot = "{est.tree}"\nbucket = "{bucket}"\nprefix = "art/"\n'
    est.config.write_text(text)
    _inventory_and_plan(est.config)
    for argv in (["preflight", "--config", est.config], ["run", "--config", est.config, PLAN]):
        res = run_cli(*argv)
        lines = assert_clean_error(res, 1, "no-such-bucket-x1", "no-such-topic-x1")
        assert topic not in lines and bucket not in lines  # only the missing ones are named
    assert list(gcs_client.list_blobs(bucket)) == []  # nothing moved before the check


def test_preflight_passes_when_every_target_exists(hostile):
    est, _ = hostile
    res = run_cli("preflight", "--config", est.config)
    assert res.returncode == 0, str(res)
    assert_no_traceback(res)
