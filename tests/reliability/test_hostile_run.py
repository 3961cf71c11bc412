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
from pathlib import Path

import pytest
from relkit import (
    assert_clean_error,
    assert_no_traceback,
    build_hostile_estate,
    create_audit_subscription,
    drain,
    estate_config,
    kill_group,
    run_cli,
    start_cli,
)

from migrate.hashing import crc32c_of_bytes

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


def test_hostile_estate_end_to_end(hostile, gcs_client, bucket):
    est, audit = hostile
    _inventory_and_plan(est.config)
    res = run_cli("run", "--config", est.config, PLAN, "--json")
    assert res.returncode == 0, str(res)
    assert_no_traceback(res)
    summary = res.json()

    # objects: every good file byte for byte (0-byte files too), nothing else
    got = _objects(gcs_client, bucket)
    want = {"audio/" + rel: data for rel, data in est.good_files.items()}
    assert got == want

    # events: every valid event once, with its id; bad records quarantined with their raw bytes
    msgs = drain(audit)
    ids = Counter(m["attributes"]["event_id"] for m in msgs)
    assert set(ids) == set(est.jsonl_valid_ids) | set(est.csv_valid_ids)
    assert max(ids.values()) == 1  # no crash, no retry: no duplicate
    plan_id = json.loads((est.root / "plans" / f"{PLAN}.plan.json").read_text())["plan_id"]
    qpath = est.root / "state" / "quarantine" / f"{plan_id}.jsonl"
    entries = [json.loads(line) for line in qpath.read_text().splitlines()]
    assert len(entries) == est.jsonl_bad + est.jsonl_oversized + est.csv_bad, entries
    by_reason = Counter("10 MB" in e["reason"] for e in entries)
    assert by_reason[True] == est.jsonl_oversized
    for e in entries:
        assert {"file", "line", "offset", "reason", "raw_b64"} <= set(e)
    raws = {base64.b64decode(e["raw_b64"]) for e in entries}
    assert b"not json at all" in raws and b"only-two,columns" in raws
    huge = next(e for e in entries if "10 MB" in e["reason"])
    assert huge["line"] == 21
    assert len(base64.b64decode(huge["raw_b64"])) > 0
    text = json.dumps(summary)
    assert str(len(entries)) in text  # the run reports how many it quarantined

    # the truncated gzip is reported, and the run is honest about the rest
    verify = run_cli("verify", "--config", est.config, PLAN, "--json")
    assert_no_traceback(verify)
    assert verify.returncode == 0, str(verify)
    # a second run moves nothing
    again = run_cli("run", "--config", est.config, PLAN, "--json")
    assert again.returncode == 0, str(again)
    assert not drain(audit, idle_rounds=1)
    assert _objects(gcs_client, bucket) == want


def test_file_deleted_between_inventory_and_run_is_reported(hostile, gcs_client, bucket):
    est, _ = hostile
    _inventory_and_plan(est.config)
    (est.tree / "plain.ogg").unlink()
    res = run_cli("run", "--config", est.config, PLAN, "--json")
    assert_no_traceback(res)
    assert res.returncode == 1, str(res)
    assert "plain.ogg" in res.output
    got = _objects(gcs_client, bucket)
    assert "audio/plain.ogg" not in got
    assert got["audio/empty.ogg"] == b""  # the rest arrived
    row = _ledger(est.config).execute("SELECT state, last_error FROM items WHERE relpath='plain.ogg'").fetchone()
    assert row["state"] != "done", dict(row)
    verify = run_cli("verify", "--config", est.config, PLAN)
    assert verify.returncode == 1 and "plain.ogg" in verify.output, str(verify)


def test_planned_file_replaced_by_a_fifo_does_not_hang(hostile, gcs_client, bucket):
    est, _ = hostile
    _inventory_and_plan(est.config)
    victim = est.tree / "space and # hash?.ogg"
    victim.unlink()
    os.mkfifo(victim)
    res = run_cli("run", "--config", est.config, PLAN, "--json", timeout=120)
    assert_no_traceback(res)
    assert res.returncode == 1, str(res)
    assert "space and # hash?.ogg" in res.output
    got = _objects(gcs_client, bucket)
    assert "audio/space and # hash?.ogg" not in got
    assert got["audio/plain.ogg"] == b"OggS plain"


def test_file_modified_during_upload_never_lands_corrupted(tmp_path, emulators, gcs_client, bucket, topic, started):
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
    conn = _ledger(cfg)
    deadline = time.monotonic() + 60
    # wait until the large upload is under way (a resumable session is recorded), then rewrite the file
    while proc.poll() is None and time.monotonic() < deadline:
        row = conn.execute("SELECT upload_url, state FROM items WHERE relpath='master.flac'").fetchone()
        if row and (row["upload_url"] or row["state"] != "pending"):
            break
        time.sleep(0.05)
    time.sleep(0.5)
    with open(tree / "master.flac", "r+b") as fh:  # same size, new bytes: only the content tells
        fh.seek(size // 2)
        fh.write(os.urandom(size // 2))
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    stdout, stderr = out.read_text(), err.read_text()
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 1, stdout + stderr
    assert "master.flac" in stdout + stderr
    blob = gcs_client.bucket(bucket).get_blob("audio/master.flac")
    if blob is not None:  # if anything landed, it is the planned content, never a mix
        assert blob.crc32c == crc32c_of_bytes(original)
    assert gcs_client.bucket(bucket).blob("audio/small.ogg").download_as_bytes() == b"OggS small"


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
