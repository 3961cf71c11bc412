"""run_plan's object copy against fake-gcs-server: full copy, idempotence, source changes, failures, resume."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pipeline
import pytest
from faultproxy import FaultProxy
from files import write_tree

from migrate import clients
from migrate.config import load_config
from migrate.errors import PlanError
from migrate.hashing import crc32c_of_file
from migrate.inventory import run_inventory
from migrate.ledger import connect
from migrate.progress import Event
from migrate.targets.gcs import MTIME_KEY, PARTS_PREFIX, PLAN_KEY, Gcs
from migrate.transfer import copier

KIB = 1024
# small thresholds so every path runs on small files: in-memory (<= 48 KiB), streamed, composite (>= 256 KiB)
TRANSFER = {
    "workers": 4,
    "large_file_threshold": "256KiB",
    "chunk_size": "256KiB",
    "retry_initial_delay": 0.01,
    "retry_max_delay": 0.05,
    "retry_max_attempts": 3,
    "timeout": 10.0,
}


@pytest.fixture(autouse=True)
def _small_in_memory_limit(monkeypatch):
    monkeypatch.setattr(copier, "IN_MEMORY_MAX", 48 * KIB)


def _files(seed: int = 1) -> dict[str, bytes]:
    import random

    rng = random.Random(seed)
    files = {f"meta/{i:03d}.json": rng.randbytes(rng.randint(0, 3 * KIB)) for i in range(30)}
    files["audio/Björk Ensemble/one #1?.ogg"] = rng.randbytes(100 * KIB)  # streamed
    files["audio/deep/a/b/c/long.flac"] = rng.randbytes(200 * KIB)  # streamed
    files["audio/big.flac"] = rng.randbytes(1100 * KIB)  # composite: 5 parts
    files["empty.txt"] = b""
    return files


class Setup:
    def __init__(self, tmp_path: Path, write_config, bucket: str, files: dict[str, bytes], **transfer):
        self.tree = write_tree(tmp_path / "tree", files)
        self.bucket = bucket
        self.config = write_config(
            catalog=[{"name": "cat", "root": str(self.tree), "bucket": bucket, "prefix": "c/"}],
            transfer={**TRANSFER, **transfer},
        )
        self.cfg = load_config(self.config)

    def plan(self, name: str = "w1") -> Path:
        return pipeline.plan_path(self.cfg, name)

    def run(self, plan: Path, **kw):
        return pipeline.run(self.cfg, plan, **kw)

    def items(self) -> dict[str, dict]:
        conn = connect(self.cfg.project.state_dir)
        try:
            rows = conn.execute("SELECT * FROM items WHERE kind='object'").fetchall()
            return {r["relpath"]: dict(r) for r in rows}
        finally:
            conn.close()


def _listing(gcs_client, bucket: str, prefix: str = "") -> dict[str, tuple[int, str, int]]:
    return {o.name: (o.size, o.crc32c, o.generation) for o in Gcs(gcs_client).list(bucket, prefix)}


@pytest.fixture
def setup(tmp_path, write_config, bucket, emulators):
    return Setup(tmp_path, write_config, bucket, _files())


def test_full_copy_matches_size_and_crc32c(setup, gcs_client):
    plan = setup.plan()
    events: list[Event] = []
    summary = setup.run(plan, report=events.append)

    files = _files()
    o = summary.objects
    assert summary.status == "ok"
    assert (o.done, o.uploaded, o.failed, o.source_changed, o.conflict) == (len(files), len(files), 0, 0, 0)
    assert o.bytes == sum(len(d) for d in files.values())
    listing = _listing(gcs_client, setup.bucket)
    assert set(listing) == {f"c/{rel}" for rel in files}  # and no composite part left behind
    items = setup.items()
    for rel, data in files.items():
        size, crc, generation = listing[f"c/{rel}"]
        assert (size, crc) == (len(data), crc32c_of_file(setup.tree / rel)[0])
        assert items[rel]["state"] == "done" and items[rel]["generation"] == generation
        assert items[rel]["upload_state"] is None
    blob = gcs_client.bucket(setup.bucket).get_blob("c/audio/big.flac")
    assert blob.content_type == "audio/flac"
    assert blob.metadata[PLAN_KEY] == summary.plan_id
    assert blob.metadata[MTIME_KEY] == str((setup.tree / "audio/big.flac").stat().st_mtime_ns // 10**9)
    done_events = [e for e in events if e.kind == "object_done"]
    assert len(done_events) == len(files)
    assert sum(e.n for e in events if e.kind == "bytes") == o.bytes
    assert events[-1].kind == "finish" and events[-1].data["status"] == "ok"


def test_rerun_uploads_nothing(setup, gcs_client):
    plan = setup.plan()
    setup.run(plan)
    before = _listing(gcs_client, setup.bucket)
    again = setup.run(plan).objects
    assert (again.uploaded, again.bytes, again.already_done) == (0, 0, len(before))
    assert _listing(gcs_client, setup.bucket) == before


def test_rerun_after_lost_ledger_writes_finds_objects_in_place(setup, gcs_client):
    """A crash after GCS acked but before the ledger recorded it: the 412 + CRC32C check settles it."""
    plan = setup.plan()
    first = setup.run(plan)
    before = _listing(gcs_client, setup.bucket)
    conn = connect(setup.cfg.project.state_dir)
    conn.execute("UPDATE items SET state='pending', generation=NULL WHERE plan_id=?", (first.plan_id,))
    conn.execute(
        'UPDATE items SET upload_state=\'{"kind": "composite", "part_size": 262144, "parts": 5}\''
        " WHERE plan_id=? AND relpath='audio/big.flac'",
        (first.plan_id,),
    )
    conn.close()
    o = setup.run(plan).objects
    assert (o.done, o.existed, o.uploaded, o.bytes) == (len(before), len(before), 0, 0)
    assert _listing(gcs_client, setup.bucket) == before
    assert all(it["generation"] == before[f"c/{rel}"][2] for rel, it in setup.items().items())


def test_source_changed_between_inventory_and_run_is_not_uploaded(setup, gcs_client):
    plan = setup.plan()
    tree = setup.tree

    def rewrite_keeping_mtime(rel: str) -> None:
        p = tree / rel
        st = p.stat()
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0xFF
        p.write_bytes(bytes(data))
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # only the CRC32C can tell

    rewrite_keeping_mtime("meta/001.json")  # in memory
    rewrite_keeping_mtime("audio/deep/a/b/c/long.flac")  # streamed: aborted before its last block
    rewrite_keeping_mtime("audio/big.flac")  # composite: refused before compose
    (tree / "meta/002.json").unlink()
    with open(tree / "meta/003.json", "ab") as fh:
        fh.write(b"more")

    summary = setup.run(plan)
    o = summary.objects
    changed = {"meta/001.json", "audio/deep/a/b/c/long.flac", "audio/big.flac", "meta/002.json", "meta/003.json"}
    assert o.source_changed == len(changed) and o.failed == 0
    assert summary.status == "incomplete"  # not retried by this plan: left for the next delta wave
    assert summary.not_copied == len(changed)
    items = setup.items()
    assert {rel for rel, it in items.items() if it["state"] == "source-changed"} == changed
    assert "CRC32C" in items["audio/big.flac"]["last_error"]
    assert "deleted" in items["meta/002.json"]["last_error"]
    listing = _listing(gcs_client, setup.bucket)
    assert not {f"c/{rel}" for rel in changed} & set(listing)
    assert _listing(gcs_client, setup.bucket, PARTS_PREFIX) == {}  # parts of the refused composite are gone
    assert {r["relpath"] for r in o.failures} == changed


def test_failed_items_are_retried_by_the_next_run(setup, gcs_client, emulators):
    """Every upload answered 503: items fail after their retries, the run stops early (GCS looks down)."""
    plan = setup.plan()
    uploads = lambda method, path: method == "POST" and "/upload/" in path  # noqa: E731
    with FaultProxy(emulators.gcs, rate=1.0, faults=("503",), match=uploads, seed=1) as proxy:
        client = clients_for(proxy.url)
        first = setup.run(plan, gcs_client=client, skip_preflight=True)
    n = len(_files())
    o = first.objects
    assert first.status == "failed"
    assert o.done == 0 and 10 <= o.failed < n  # 10 in a row (4 workers), plus those already in flight
    assert o.pending == n - o.failed
    assert "GCS looks unavailable" in o.halted and "run the same command again" in o.halted
    assert o.retries >= o.failed * 2  # retry_max_attempts = 3: two retries per call
    items = setup.items()
    failed = [it for it in items.values() if it["state"] == "failed"]
    assert len(failed) == o.failed
    assert all("503" in it["last_error"] and it["retries"] >= 2 and it["attempts"] == 1 for it in failed)

    second = setup.run(plan)
    assert second.status == "ok"
    assert (second.objects.done, second.objects.uploaded) == (n, n)
    assert all(it["state"] == "done" for it in setup.items().values())
    assert len(_listing(gcs_client, setup.bucket)) == n


def test_transient_faults_are_retried_within_the_run(tmp_path, write_config, bucket, gcs_client, emulators):
    setup = Setup(tmp_path, write_config, bucket, _files(), retry_max_attempts=10)
    plan = setup.plan()
    with FaultProxy(emulators.gcs, rate=0.3, faults=("429", "503", "reset"), seed=7) as proxy:
        summary = setup.run(plan, gcs_client=clients_for(proxy.url), skip_preflight=True)
        injected = proxy.injected
    assert injected > 0
    assert summary.status == "ok", summary.objects.failures
    assert summary.retries >= 1
    listing = _listing(gcs_client, setup.bucket)
    for rel, data in _files().items():
        assert listing[f"c/{rel}"][0] == len(data)
    assert _listing(gcs_client, setup.bucket, PARTS_PREFIX) == {}


def test_retries_while_preflighting_count_in_the_run(setup, emulators, monkeypatch):
    """The preflight's bucket lookup meets one 503: retried, and counted in the run's retries and ledger."""
    plan = setup.plan()
    seen: list[str] = []

    def first_bucket_get(method: str, path: str) -> bool:
        hit = method == "GET" and path.split("?")[0].endswith(f"/b/{setup.bucket}") and not seen
        if hit:
            seen.append(path)
        return hit

    with FaultProxy(emulators.gcs, rate=1.0, faults=("503",), match=first_bucket_get) as proxy:
        monkeypatch.setenv(clients.STORAGE_EMULATOR_ENV, proxy.url)
        summary = setup.run(plan)
        injected = proxy.injected
    assert injected == 1 and summary.status == "ok"
    assert summary.preflight_retries == 1
    assert summary.retries == 1 + summary.objects.retries
    conn = connect(setup.cfg.project.state_dir)
    try:
        row = conn.execute("SELECT retries FROM runs WHERE run_id=?", (summary.run_id,)).fetchone()
        assert row[0] == summary.retries
    finally:
        conn.close()


def test_stopped_large_upload_resumes_without_starting_over(tmp_path, write_config, bucket, gcs_client, emulators):
    data = os.urandom(8 * 256 * KIB + 1000)  # 9 parts
    s = Setup(tmp_path, write_config, bucket, {"huge.bin": data}, workers=2)
    plan = s.plan()
    stop = threading.Event()

    def stop_at_first_part(event: Event) -> None:
        if event.kind == "bytes" and event.n > 0:
            stop.set()

    first = s.run(plan, report=stop_at_first_part, stop=stop)
    assert first.status == "interrupted"
    assert first.objects.pending == 1 and first.objects.done == 0
    parts = _listing(gcs_client, bucket, PARTS_PREFIX)
    assert 0 < len(parts) < 9  # in-flight parts finished; queued ones were not started
    assert s.items()["huge.bin"]["upload_state"] is not None  # the resume state is in the ledger
    assert "c/huge.bin" not in _listing(gcs_client, bucket)

    second = s.run(plan)
    assert second.status == "ok"
    assert second.objects.reused_bytes == sum(size for size, _, _ in parts.values())
    assert second.objects.bytes == len(data) - second.objects.reused_bytes
    size, crc, _ = _listing(gcs_client, bucket)["c/huge.bin"]
    assert (size, crc) == (len(data), crc32c_of_file(s.tree / "huge.bin")[0])
    assert _listing(gcs_client, bucket, PARTS_PREFIX) == {}


def test_object_created_by_someone_else_after_planning_is_a_conflict(setup, gcs_client):
    plan = setup.plan()
    Gcs(gcs_client).insert(setup.bucket, "c/meta/004.json", b"not ours", content_type="text/plain")
    before = _listing(gcs_client, setup.bucket)["c/meta/004.json"]
    summary = setup.run(plan)
    assert summary.objects.conflict == 1
    item = setup.items()["meta/004.json"]
    assert item["state"] == "conflict" and "already exists" in item["last_error"]
    assert _listing(gcs_client, setup.bucket)["c/meta/004.json"] == before


def test_overwrite_policy_replaces_the_planned_generation(tmp_path, write_config, bucket, gcs_client, emulators):
    s = Setup(tmp_path, write_config, bucket, {"a.txt": b"new content"}, conflict_policy="overwrite")
    old = Gcs(gcs_client).insert(bucket, "c/a.txt", b"old", content_type="text/plain")
    plan = s.plan()
    summary = s.run(plan)
    assert summary.objects.uploaded == 1
    size, crc, generation = _listing(gcs_client, bucket)["c/a.txt"]
    assert (size, crc) == (len(b"new content"), crc32c_of_file(s.tree / "a.txt")[0])
    assert generation != old.generation


def test_bandwidth_cap_holds_across_workers(setup, monkeypatch):
    """Every byte read for upload passes the shared bucket; on a fake clock the rate is the cap."""
    from migrate import ratelimit
    from migrate.transfer import run

    clock = {"t": 0.0}
    lock = threading.Lock()

    def now() -> float:
        with lock:
            return clock["t"]

    def sleep(delay: float) -> None:  # the sleeper wakes at its now + delay; time is the latest wake-up
        with lock:
            clock["t"] = max(clock["t"], clock["t"] + delay)

    buckets = []

    def fake_limiter(rate):
        b = ratelimit.TokenBucket(rate, burst=32 * KIB, clock=now, sleep=sleep)
        buckets.append(b)
        return b

    monkeypatch.setattr(run, "limiter", fake_limiter)
    plan = setup.plan()
    cap = 512 * KIB
    summary = setup.run(plan, bwlimit=cap)
    total = sum(len(d) for d in _files().values())
    assert summary.bwlimit == cap and buckets[0].rate == cap
    assert buckets[0].consumed == total == summary.objects.bytes
    assert total / clock["t"] == pytest.approx(cap, rel=0.10)


def test_plan_with_drifted_inventory_is_refused_unless_allowed(setup):
    plan = setup.plan()
    (setup.tree / "meta/005.json").write_bytes(b"changed after planning")
    conn = connect(setup.cfg.project.state_dir)
    run_inventory(setup.cfg, conn, hash=True)
    conn.close()
    with pytest.raises(PlanError) as err:
        setup.run(plan)
    assert "meta/005.json" in err.value.message and "migrate plan --name w1" in err.value.fix
    summary = setup.run(plan, allow_drift=True)
    assert summary.objects.source_changed == 1  # the run still refuses to upload the changed file


def clients_for(url: str):
    """A storage client whose endpoint is `url` (a fault proxy)."""
    old = os.environ.get(clients.STORAGE_EMULATOR_ENV)
    os.environ[clients.STORAGE_EMULATOR_ENV] = url
    try:
        return clients.gcs_client("test-project")
    finally:
        if old is not None:
            os.environ[clients.STORAGE_EMULATOR_ENV] = old


def test_a_second_concurrent_run_of_the_same_plan_is_refused(setup):
    import fcntl

    from migrate.errors import UsageError
    from migrate.plan import load_plan

    plan = setup.plan()
    lock = Path(setup.cfg.project.state_dir) / f"run-{load_plan(plan).plan_id}.lock"
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(UsageError) as err:
            setup.run(plan)
        assert "another `migrate run`" in err.value.message
    assert setup.run(plan).status == "ok"


def test_a_whole_estate_objects_then_events(estate, gcs_client, emulators):
    """The generated data center end to end through run_plan: every object, then every valid event."""
    from migrate.local.provision import provision

    cfg = load_config(estate.config_path)
    result = pipeline.plan(cfg, "estate")
    provision(Path(result.paths["tfvars"]))
    events: list[Event] = []
    summary = pipeline.run(cfg, result.paths["plan"], workers=4, report=events.append)
    assert summary.status == "ok", summary.to_dict()
    assert summary.objects.done == estate.total_files and summary.objects.failed == 0
    assert summary.objects.bytes == estate.total_bytes
    assert summary.events["events"] == estate.events() and summary.events["quarantined"] == estate.malformed()
    kinds = [e.kind for e in events]
    assert kinds.index("events") > max(i for i, k in enumerate(kinds) if k == "object_done")  # objects first
    start = next(e for e in events if e.kind == "start")
    assert start.data["objects"] == estate.total_files and start.data["events"] == estate.events()


def test_large_object_created_by_someone_else_after_planning_is_a_conflict(setup, gcs_client):
    plan = setup.plan()
    other = Gcs(gcs_client).insert(setup.bucket, "c/audio/big.flac", b"someone else's", content_type="audio/flac")
    summary = setup.run(plan)
    assert summary.objects.conflict == 1
    assert setup.items()["audio/big.flac"]["state"] == "conflict"
    assert _listing(gcs_client, setup.bucket)["c/audio/big.flac"][2] == other.generation
    assert _listing(gcs_client, setup.bucket, PARTS_PREFIX) == {}


def test_a_new_plan_names_what_an_earlier_run_completed(setup, gcs_client):
    """Objects an earlier run wrote, still at the generation it wrote, are skipped as 'completed-earlier';
    one rewritten since with equal bytes is only 'already-migrated'; verify checks both as in place."""
    from migrate.verification.verify import verify_plan

    setup.run(setup.plan("w1"))
    rewritten = "meta/001.json"
    gcs_client.bucket(setup.bucket).blob("c/" + rewritten).upload_from_string((setup.tree / rewritten).read_bytes())
    result = pipeline.plan(setup.cfg, "w2")
    lines = Path(result.paths["skipped"]).read_text(encoding="utf-8").splitlines()
    reasons = {row["relpath"]: row["reason"] for row in map(json.loads, lines)}
    assert reasons.pop(rewritten) == "already-migrated"
    assert set(reasons.values()) == {"completed-earlier"} and len(reasons) == len(_files()) - 1
    assert result.summary["skipped"]["by_reason"]["completed-earlier"]["files"] == len(_files()) - 1
    assert result.summary["already_migrated"]["files"] == len(_files())
    rep = verify_plan(setup.cfg, Path(result.paths["plan"]))
    assert rep.ok and rep.objects.previously_migrated == len(_files()) and rep.objects.planned == 0
