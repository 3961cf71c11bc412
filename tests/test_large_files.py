"""Large files: the resumable path (on gcp-storage-emulator, which gets resumable sessions right), the
composite path only where the bucket allows it, and what the wire shows for each.

Which emulator covers what: fake-gcs-server (the session emulators) runs the composite path and a clean
resumable upload; its status query is wrong, so every resumed session is tested on gcp-storage-emulator
(tests/gcsemu.py). Neither enforces ifGenerationMatch on sessions or x-goog-hash: tests/wirecheck.py
checks those on every request.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pipeline
import pytest
from files import write_tree
from gcsemu import ResumableGcs
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from wirecheck import WireProxy

from migrate.config import load_config
from migrate.ledger import ledger_path
from migrate.preflight import preflight
from migrate.targets.buckets import COMPOSITE, RESUMABLE, BucketSettings
from migrate.targets.gcs import Gcs
from migrate.targets.gcs_admin import GcsAdmin
from migrate.transfer.run import run_plan
from migrate.verification.verify import verify_plan

MIB = 1024 * 1024


# --- the second emulator -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resumable_gcs(tmp_path_factory):
    """gcp-storage-emulator behind a recording proxy: (emulator, proxy)."""
    log = tmp_path_factory.mktemp("gcp-storage-emulator") / "emulator.log"
    with ResumableGcs(log) as emu, WireProxy(emu.url) as proxy:
        yield emu, proxy


@pytest.fixture
def on_resumable_gcs(resumable_gcs, monkeypatch):
    """STORAGE_EMULATOR_HOST -> the proxy in front of gcp-storage-emulator; returns (proxy, direct client)."""
    emu, proxy = resumable_gcs
    proxy.log.clear()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    client = storage.Client(
        project="test-project", credentials=AnonymousCredentials(), client_options={"api_endpoint": emu.url}
    )
    yield proxy, client
    problems = proxy.log.violations()
    assert not problems, "GCS wire contract broken:\n" + "\n".join(problems[:20])


def _new_bucket(client, name: str) -> str:
    client.create_bucket(name)
    return name


def _plan(config: Path, name: str = "w1") -> tuple[object, Path]:
    cfg = load_config(config)
    return cfg, pipeline.plan_path(cfg, name)


def one_file_plan(tmp_path: Path, write_config, client, prefix: str, size: int, seed: int, transfer: dict):
    """A new bucket and a plan of one random file of `size` bytes to c/master.flac: (bucket, config, cfg, plan)."""
    bucket = _new_bucket(client, f"{prefix}-{random.randrange(1 << 30)}")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "master.flac").write_bytes(random.Random(seed).randbytes(size))
    config = write_config(
        catalog=[{"name": "cat", "root": str(tree), "bucket": bucket, "prefix": "c/"}], transfer=transfer
    )
    cfg, plan = _plan(config)
    return bucket, config, cfg, plan


def _session_state(state_dir: Path) -> dict | None:
    path = ledger_path(state_dir)
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT upload_state FROM items WHERE kind='object' AND upload_state IS NOT NULL").fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()
    return json.loads(row[0]) if row and row[0] else None


# --- the path each bucket gets -------------------------------------------------------------------


def test_bucket_settings_pick_the_upload_path():
    plain = BucketSettings.from_json({"name": "b", "storageClass": "STANDARD"})
    assert plain.path_for("STANDARD") == COMPOSITE
    assert plain.path_for(None) == COMPOSITE
    for cls in ("NEARLINE", "COLDLINE", "ARCHIVE"):
        assert plain.path_for(cls) == RESUMABLE  # compose needs the destination's class for every part
    blocked = {
        "versioning on": {"versioning": {"enabled": True}},
        "soft delete on": {"softDeletePolicy": {"retentionDurationSeconds": "604800"}},
        "retention policy": {"retentionPolicy": {"retentionPeriod": "86400"}},
        "default event-based hold": {"defaultEventBasedHold": True},
    }
    for reason, doc in blocked.items():
        settings = BucketSettings.from_json({"name": "b", "storageClass": "STANDARD", **doc})
        assert settings.path_for("STANDARD") == RESUMABLE, reason
        assert reason in settings.describe()
    cold = BucketSettings.from_json({"name": "b", "storageClass": "COLDLINE"})
    assert cold.path_for(None) == RESUMABLE


def test_bucket_settings_are_read_from_gcs(on_resumable_gcs, gcs_client, bucket):
    _proxy, client = on_resumable_gcs
    name = _new_bucket(client, f"soft-{os.getpid()}-{random.randrange(1 << 30)}")
    from migrate.clients import gcs_client as make_client

    fresh = GcsAdmin(make_client("test-project"), lambda fn: fn(), 10).settings(name)
    assert fresh.soft_delete_seconds == 7 * 24 * 3600  # new buckets have soft delete on, as on GCS
    assert fresh.path_for("STANDARD") == RESUMABLE
    assert (
        GcsAdmin(gcs_client, lambda fn: fn(), 10).settings(bucket).path_for("STANDARD") == COMPOSITE
    )  # fake-gcs-server: all off


# --- resumable uploads on gcp-storage-emulator ------------------------------------------------------


@pytest.mark.slow
def test_sigkill_mid_upload_resumes_from_the_persisted_offset(tmp_path, write_config, on_resumable_gcs):
    proxy, client = on_resumable_gcs
    size = 200 * MIB
    transfer = {"chunk_size": "8MiB", "bandwidth_limit": "40MiB/s", "workers": 2}
    bucket, config, cfg, plan = one_file_plan(tmp_path, write_config, client, "kill", size, 5, transfer)
    env = {**os.environ, "STORAGE_EMULATOR_HOST": proxy.url}
    cmd = [sys.executable, "-m", "migrate", "run", "--config", str(config), str(plan), "--json"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    state_dir = Path(cfg.project.state_dir)
    deadline = time.monotonic() + 300
    state = None
    while time.monotonic() < deadline and first.poll() is None:
        state = _session_state(state_dir)
        if state and state.get("offset", 0) >= 64 * MIB:
            break
        time.sleep(0.05)
    assert first.poll() is None, f"the run ended before it could be killed: {first.communicate()[1][-2000:]}"
    first.send_signal(signal.SIGKILL)
    first.wait()
    first.stdout.close()
    first.stderr.close()
    state = _session_state(state_dir)
    assert state["kind"] == RESUMABLE and state["uri"] and 0 < state["offset"] < size
    assert state["offset"] % (256 * 1024) == 0
    sent_before = proxy.log.upload_bytes()
    assert proxy.log.resumable_starts(), "the session started before the kill"
    starts_before = len(proxy.log.resumable_starts())

    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    summary = json.loads(second.stdout)
    total = proxy.log.upload_bytes()
    resent = total - sent_before
    # resumed mid-file: the second run sends at most what the server did not hold, never the whole file again
    assert resent <= size - state["offset"], (resent, state["offset"])
    print(
        f"killed at {state['offset'] / MIB:.0f} MiB acknowledged; sent {sent_before / MIB:.1f} MiB before the kill,"
        f" {resent / MIB:.1f} MiB after; total {total / MIB:.1f} MiB = {total / size:.2f}x the file"
    )
    assert total < 1.5 * size, f"{total / MIB:.1f} MiB sent for a {size / MIB:.0f} MiB file"
    assert summary["objects"]["reused_bytes"] >= state["offset"]
    assert len(proxy.log.resumable_starts()) == starts_before  # the same session, not a new one
    queries = [
        r for r in proxy.log.snapshot() if r.method == "PUT" and r.headers.get("content-range") == f"bytes */{size}"
    ]
    assert queries, "the resumed run asked the server for its persisted offset"
    finals = [r for r in proxy.log.snapshot() if r.method == "PUT" and r.status in (200, 201)]
    assert len(finals) == 1  # one finalize: one generation
    blob = client.bucket(bucket).get_blob("c/master.flac")
    assert blob.size == size
    rep = verify_plan(cfg, plan)
    assert rep.ok and rep.objects.matched == 1


def test_crc32c_refused_by_gcs_resends_the_file_and_counts_it(tmp_path, write_config, on_resumable_gcs, monkeypatch):
    proxy, client = on_resumable_gcs
    bucket = _new_bucket(client, f"crc-{random.randrange(1 << 30)}")
    rng = random.Random(9)
    tree = write_tree(tmp_path / "tree", {"big.bin": rng.randbytes(3 * MIB), "small.bin": rng.randbytes(40_000)})
    config = write_config(
        catalog=[{"name": "cat", "root": str(tree), "bucket": bucket, "prefix": "c/"}],
        transfer={"large_file_threshold": "1MiB", "chunk_size": "1MiB", "workers": 1},
    )
    cfg, plan = _plan(config)
    damaged: list[str] = []

    def first_of_each(method: str, path: str) -> bool:
        kind = "chunk" if method == "PUT" else "insert" if "uploadType=multipart" in path else None
        if kind is None or kind in damaged:
            return False
        damaged.append(kind)
        return True

    from faultproxy import FaultProxy

    with FaultProxy(proxy.url, rate=1.0, faults=("corrupt",), match=first_of_each) as corrupter:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", corrupter.url)
        summary = run_plan(cfg, plan)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    assert sorted(damaged) == ["chunk", "insert"]
    o = summary.objects
    assert summary.status == "ok", o.failures
    assert o.corrupt_resent == 2  # GCS refused both (400 CRC32C mismatch); each file was sent again
    assert o.done == 2 and o.failed == 0
    assert summary.to_dict()["objects"]["corrupt_resent"] == 2
    assert len(proxy.log.resumable_starts()) == 2  # the refused session was replaced by a new one
    assert verify_plan(cfg, plan).ok


# --- COLDLINE and versioned buckets on fake-gcs-server -------------------------------------------------


@pytest.mark.slow
def test_coldline_large_files_take_resumable_uploads_never_compose(tmp_path, write_config, bucket, emulators, wire):
    rng = random.Random(4)
    files = {"masters/a.flac": rng.randbytes(100 * MIB), "masters/b.flac": rng.randbytes(101 * MIB), "x.txt": b"x"}
    tree = write_tree(tmp_path / "tree", files)
    config = write_config(
        catalog=[{"name": "cold", "root": str(tree), "bucket": bucket, "prefix": "c/", "storage_class": "COLDLINE"}],
    )
    cfg, plan = _plan(config)
    summary = run_plan(cfg, plan)
    assert summary.status == "ok", summary.objects.failures
    assert wire.composes() == []
    starts = wire.resumable_starts()
    assert len(starts) == 2
    for start in starts:
        assert start.json_body()["storageClass"] == "COLDLINE"  # fixed when the session starts
        assert start.param("ifGenerationMatch") == "0"
    assert not [r for r in wire.snapshot() if ".migrate-parts/" in r.path and r.method == "POST"]
    assert bucket in summary.objects.upload_paths
    rep = verify_plan(cfg, plan)
    assert rep.ok and rep.objects.matched == 3


def test_versioned_bucket_gets_no_parts(tmp_path, write_config, on_resumable_gcs):
    proxy, client = on_resumable_gcs
    b = client.bucket(f"ver-{random.randrange(1 << 30)}")
    client.create_bucket(b)
    b.versioning_enabled = True
    b.soft_delete_policy.retention_duration_seconds = 0  # only versioning stands in the way of parts
    b.patch()
    tree = write_tree(tmp_path / "tree", {"big.bin": random.Random(2).randbytes(3 * MIB)})
    config = write_config(
        catalog=[{"name": "cat", "root": str(tree), "bucket": b.name, "prefix": "c/"}],
        transfer={"large_file_threshold": "1MiB", "chunk_size": "1MiB"},
    )
    cfg, plan = _plan(config)
    summary = run_plan(cfg, plan)
    assert summary.status == "ok", summary.objects.failures
    assert summary.objects.upload_paths[b.name].startswith("resumable uploads for large files (versioning on:")
    log = proxy.log
    assert log.composes() == [] and len(log.resumable_starts()) == 1
    assert not [r for r in log.snapshot() if r.method == "DELETE"]
    assert verify_plan(cfg, plan).ok


def test_preflight_says_which_path_each_bucket_gets(
    tmp_path, write_config, bucket, emulators, on_resumable_gcs, monkeypatch
):
    _proxy, client = on_resumable_gcs
    soft = _new_bucket(client, f"pre-{random.randrange(1 << 30)}")
    tree = write_tree(tmp_path / "tree", {"a": b"a"})
    cfg = load_config(write_config(catalog=[{"name": "c", "root": str(tree), "bucket": soft}]))
    found = {f.name: f for f in preflight(cfg, [soft], []).findings}
    assert found[soft].status == "ok"
    assert (found[soft].upload_path, found[soft].upload_reason) == (RESUMABLE, "soft delete on")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulators.gcs)  # fake-gcs-server: versioning and soft delete off
    plain = preflight(cfg, [bucket], []).findings[0]
    assert plain.status == "ok" and plain.upload_path == COMPOSITE


def test_a_file_changed_mid_upload_cancels_its_session(tmp_path, write_config, bucket, emulators, wire, gcs_client):
    """The job's cleanup hook: a resumable upload that ends without our object abandons its session."""
    tree = write_tree(tmp_path / "tree", {"big.bin": random.Random(6).randbytes(3 * MIB)})
    config = write_config(
        catalog=[{"name": "cat", "root": str(tree), "bucket": bucket, "prefix": "c/", "storage_class": "NEARLINE"}],
        transfer={"large_file_threshold": "1MiB", "chunk_size": "1MiB"},
    )
    cfg, plan = _plan(config)
    path = tree / "big.bin"
    st = path.stat()
    with open(path, "r+b") as fh:  # same size, inode and mtime: only the bytes (and so the CRC32C) differ
        fh.seek(2 * MIB + 5)
        fh.write(b"\x00changed\x00")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    summary = run_plan(cfg, plan)
    assert summary.objects.source_changed == 1
    assert len(wire.resumable_starts()) == 1
    cancels = [r for r in wire.snapshot() if r.method == "DELETE" and r.path.startswith("/upload/")]
    assert len(cancels) == 1 and cancels[0].param("upload_id")
    assert Gcs(gcs_client).get(bucket, "c/big.bin") is None
