"""The Dask engine on real LocalCluster worker processes against the emulators.

Worker killed mid-run, driver killed between GCS ack and ledger commit, one bandwidth cap across
workers, mount locality (and a mount no worker has), inventory on workers, and the default path
never importing distributed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask_kit
import pytest

from migrate.config import load_config
from migrate.errors import UsageError
from migrate.ledger import connect
from migrate.transfer.run import RunOptions, run_plan
from migrate.verification.verify import DrainSettings, verify_plan

distributed = pytest.importorskip("distributed")  # a dev extra: a missing one fails the import check below

FAST_DRAIN = DrainSettings(pull_timeout=1.0, quiet_seconds=2.0, max_seconds=300)
HERE = Path(__file__).parent


def test_distributed_is_installed_with_the_dev_extras() -> None:
    assert distributed.__version__  # the suite must exercise the engine, never skip it silently


@pytest.mark.slow
def test_worker_killed_mid_run_reruns_elsewhere_and_everything_verifies(
    tmp_path, write_config, bucket, topic, gcs_client, emulators
):
    config, plan = dask_kit.build(
        tmp_path,
        write_config,
        bucket,
        topic,
        objects=420,
        logs=6,
        events_per_log=1000,
        # capped so the run lasts long enough to kill a worker in the middle of each stage
        transfer={"workers": 4, "bandwidth_limit": "500KiB/s"},
        pubsub={"max_in_flight_messages": 200, "events_per_second": 1500},
    )
    cfg = load_config(config)
    state = cfg.project.state_dir
    ceiling = 200 + 1000  # max_in_flight_messages + the replay's commit interval
    with dask_kit.local_cluster(2, 2, ("cat", "plays")) as cluster, distributed.Client(cluster) as client:
        options = RunOptions(engine="dask", scheduler=cluster.scheduler_address)
        th, out = dask_kit.in_thread(lambda: run_plan(cfg, plan, options=options))
        done = "SELECT COUNT(*) FROM items WHERE state='done'"
        assert dask_kit.wait_for(lambda: dask_kit.ledger_count(state, done) >= 130)
        dask_kit.kill_worker(client, "migrate-obj")
        at_kill = dask_kit.listing(gcs_client, bucket)
        published = "SELECT SUM(published) FROM offsets"
        assert dask_kit.wait_for(lambda: dask_kit.ledger_count(state, published) >= 1800)
        dask_kit.kill_worker(client, "migrate-ev")
        th.join(timeout=600)
    assert "error" not in out, out.get("error")
    summary = out["result"]
    assert summary.status == "ok", summary.to_dict()
    assert summary.objects.done == 420 and summary.objects.failed == 0
    eng = summary.engine
    assert eng["tasks_rerun"] >= 2 and eng["workers_lost"] >= 2, eng
    assert sum(w["items"] for w in eng["per_worker"].values()) >= 420 + 6

    final = dask_kit.listing(gcs_client, bucket)
    assert len(final) == 420
    for name, (_, _, generation) in at_kill.items():
        assert final[name][2] == generation, name  # created once: a rerun never wrote it again
    conn = connect(state)
    rows = conn.execute("SELECT object, generation FROM items WHERE kind='object'").fetchall()
    interrupted = conn.execute("SELECT COALESCE(SUM(interrupted), 0) FROM offsets").fetchone()[0]
    conn.close()
    assert all(final[r["object"]][2] == r["generation"] for r in rows)

    rep = verify_plan(cfg, plan, drain=FAST_DRAIN)
    assert rep.ok, rep.to_dict()
    (plays,) = [e for e in rep.events if e.source == "plays"]
    assert plays.received_events >= plays.expected_events == 6000 and plays.missing == 0
    # the stated bound: each attempt killed under a task re-sends at most `ceiling` events
    bound = summary.events["max_possible_duplicates"]
    assert 1 <= interrupted <= 2  # the killed worker's two threads were the only unclean attempts
    assert plays.duplicates <= bound <= interrupted * ceiling + summary.events["retries"] * 1000


@pytest.mark.slow
def test_driver_killed_between_ack_and_commit_then_the_same_command_recovers(
    tmp_path, write_config, bucket, gcs_client, emulators
):
    config, plan = dask_kit.build(tmp_path, write_config, bucket, None, objects=400, transfer={"workers": 4})
    cfg = load_config(config)
    note = tmp_path / "killed.json"
    with dask_kit.local_cluster(2, 2, ("cat",)) as cluster:
        cmd = ["run", "--config", str(config), str(plan), "--engine", "dask"]
        cmd += ["--scheduler", cluster.scheduler_address, "--json"]
        env = dict(os.environ, KILL_AT_DONE="20", KILL_NOTE=str(note))
        first = subprocess.run([sys.executable, str(HERE / "dask_kill_driver.py"), *cmd], env=env, capture_output=True)
        assert first.returncode == -signal.SIGKILL, first.stderr.decode()
        lost = json.loads(note.read_text())  # acknowledged by GCS, never committed to the ledger
        assert len(lost) >= 20
        at_kill = dask_kit.listing(gcs_client, bucket)
        again = subprocess.run([sys.executable, "-m", "migrate", *cmd], capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr.decode()
    doc = json.loads(again.stdout)
    assert doc["status"] == "ok" and doc["engine"]["kind"] == "dask"
    o = doc["objects"]
    assert o["failed"] == 0 and o["existed"] >= len(lost)  # found in place, same CRC32C: not uploaded again
    final = dask_kit.listing(gcs_client, bucket)
    assert len(final) == 400
    for name, (_, _, generation) in at_kill.items():
        assert final[name][2] == generation, name
    conn = connect(cfg.project.state_dir)
    states = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT seq, state, object FROM items")}
    runs = [r[0] for r in conn.execute("SELECT status FROM runs ORDER BY run_id")]
    conn.close()
    assert runs == ["killed", "ok"]
    assert all(states[seq][0] == "done" for seq in lost)
    assert verify_plan(cfg, plan, drain=FAST_DRAIN).ok


@pytest.mark.slow
def test_bwlimit_holds_across_two_workers(tmp_path, write_config, bucket, gcs_client, emulators):
    files = 80  # 40 MiB at 8 MiB/s: about 5 s
    config, plan = dask_kit.build(
        tmp_path, write_config, bucket, None, objects=files, size=512 * 1024, transfer={"workers": 4}
    )
    cfg = load_config(config)
    cap = 8 * 1024 * 1024
    summary = run_plan(cfg, plan, options=RunOptions(engine="dask", engine_workers=2, bwlimit=cap))
    assert summary.status == "ok"
    o = summary.objects
    assert o.bytes == files * 512 * 1024
    assert len(summary.engine["per_worker"]) == 2  # both workers moved bytes, under one cap
    # the cap comes from the leases' token buckets (K leases at cap/K, each starting empty),
    # so it holds whatever the machine's speed; the lower side only needs 8 MiB/s of headroom
    print(f"bwlimit: {o.rate / cap:.3f} of the cap over {o.elapsed:.2f} s")
    assert 0.8 * cap <= o.rate <= 1.05 * cap, o.rate / cap


@pytest.mark.slow
def test_items_run_only_on_workers_mounting_their_source(tmp_path, write_config, bucket, gcs_client, emulators):
    config, plan = dask_kit.build(tmp_path, write_config, bucket, None, objects=60, sources=("a", "b"))
    cfg = load_config(config)
    with dask_kit.local_cluster(0, 1, ()) as cluster, distributed.Client(cluster) as client:
        addr = cluster.scheduler_address
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "migrate", "worker", "--scheduler", addr, "--mount", m, "--nthreads", "2"],
                start_new_session=True,
            )
            for m in ("a", "b")
        ]
        try:
            client.wait_for_workers(2, timeout=120)
            mounts = {a: set(w["resources"]) for a, w in client.scheduler_info()["workers"].items()}
            summary = run_plan(cfg, plan, options=RunOptions(engine="dask", scheduler=addr))
        finally:
            for p in procs:
                os.killpg(p.pid, signal.SIGTERM)
            for p in procs:
                p.wait(timeout=60)
    assert summary.status == "ok", summary.to_dict()
    per_worker = summary.engine["per_worker"]
    assert {frozenset(mounts[a]) for a in per_worker} == {frozenset({"mnt_a"}), frozenset({"mnt_b"})}
    for row in per_worker.values():
        assert row["items"] == 60  # each worker copied exactly its own source's items, no more
    assert set(dask_kit.listing(gcs_client, bucket)) == {f"{s}/d{i % 8}/f{i:05d}.bin" for s in "ab" for i in range(60)}


@pytest.mark.slow
def test_a_source_no_worker_mounts_fails_fast_naming_it(tmp_path, write_config, bucket, emulators):
    config, plan = dask_kit.build(tmp_path, write_config, bucket, None, objects=5, sources=("a", "c"))
    cfg = load_config(config)
    with dask_kit.local_cluster(1, 1, ("a",)) as cluster:
        started = time.monotonic()
        with pytest.raises(UsageError) as err:
            run_plan(cfg, plan, options=RunOptions(engine="dask", scheduler=cluster.scheduler_address))
        took = time.monotonic() - started
    assert "'c'" in err.value.message and "mnt_c" in err.value.message and "'a'" not in err.value.message
    assert "--mount c" in (err.value.fix or "")
    assert took < 5.0  # the requirement; the check waits a fixed 2 s grace for workers, nothing else
    conn = connect(cfg.project.state_dir)
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0  # nothing started, nothing moved
    conn.close()


@pytest.mark.timeout(120)
def test_busy_workers_do_not_freeze_once_the_engine_has_them(tmp_path, write_config, bucket, emulators):
    """Regression: whole worker processes froze mid-upload (S2 stalled; the kill test hung).

    On CPython 3.11 Dask's statistical profiler (sys._current_frames() every 10 ms) deadlocks a worker
    whose threads leave thread-locals to the garbage collector; see dask_worker.stop_profiler. A stock
    LocalCluster runs that profiler; the engine's plugin must stop it on every worker it uses.
    """
    from migrate.engine.dask_run import DaskEngine

    config, _ = dask_kit.build(tmp_path, write_config, bucket, None, objects=5)
    cfg = load_config(config)
    with dask_kit.local_cluster(2, 8, ("cat",)) as cluster, distributed.Client(cluster) as client:
        assert all(client.run(dask_kit.profiler_running).values())  # what froze: on by default
        with DaskEngine(cfg, "churn", scheduler=cluster.scheduler_address) as engine:
            assert not any(client.run(dask_kit.profiler_running).values())
            futures = [engine.client.submit(dask_kit.thread_local_churn, 0.5, pure=False) for _ in range(64)]
            # 64 tasks of 0.5 s on 16 threads: about 2 s; a frozen worker never answers (TimeoutError)
            distributed.wait(futures, timeout=60)
            assert all(n > 0 for n in engine.client.gather(futures))


def test_inventory_on_workers_matches_the_local_walk(tmp_path, write_config, bucket, emulators):
    config, _ = dask_kit.build(tmp_path, write_config, bucket, None, objects=300, sources=("cat",))
    cfg = load_config(config)
    conn = connect(cfg.project.state_dir)
    local = {tuple(r) for r in conn.execute("SELECT relpath, kind, size, inode, crc32c FROM files")}
    conn.execute("DELETE FROM files")
    conn.commit()
    from migrate.engine import dask_inventory

    dask_inventory.WALK_LIMIT = 20  # many walk tasks even for a small tree
    rep = dask_inventory.run_inventory_dask(cfg, conn, hash=True, report=lambda e: None, workers=2)
    on_dask = {tuple(r) for r in conn.execute("SELECT relpath, kind, size, inode, crc32c FROM files")}
    conn.close()
    assert on_dask == local and len(local) == 300
    assert rep.catalog[0].rehashed == 300


def test_listener_logs_are_scanned_on_the_workers_that_mount_them(tmp_path, write_config, bucket, topic, emulators):
    config, _ = dask_kit.build(
        tmp_path, write_config, bucket, topic, objects=20, sources=("cat",), logs=5, events_per_log=300
    )
    cfg = load_config(config)
    with (tmp_path / "logs" / "plays-01.jsonl").open("ab") as log:
        log.write(b"{not json\n")  # a bad line, seen on the worker
    conn = connect(cfg.project.state_dir)
    from migrate.inventory import run_inventory

    columns = "source, path, size, inode, events, malformed, id_digest, crc32c, status"
    run_inventory(cfg, conn)
    local = {tuple(r) for r in conn.execute(f"SELECT {columns} FROM event_files")}
    bad = {tuple(r) for r in conn.execute("SELECT source, path, line, offset, reason FROM bad_lines")}
    conn.execute("DELETE FROM event_files")
    conn.execute("DELETE FROM bad_lines")
    conn.commit()
    from migrate.engine import dask_inventory

    with dask_kit.local_cluster(2, 1, ("cat", "plays")) as cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream:
            dask_inventory.run_inventory_dask(
                cfg, conn, hash=False, report=lambda e: None, scheduler=cluster.scheduler_address
            )
        workers = set(client.scheduler_info()["workers"])
    on_dask = {tuple(r) for r in conn.execute(f"SELECT {columns} FROM event_files")}
    bad_on_dask = {tuple(r) for r in conn.execute("SELECT source, path, line, offset, reason FROM bad_lines")}
    conn.close()
    assert on_dask == local and len(local) == 5
    assert bad_on_dask == bad and len(bad) == 1
    ran = [(t["key"].split("-")[0], t["worker"]) for t in stream.data]
    assert sum(1 for name, _ in ran if name == "list_logs") == 1
    assert sum(1 for name, _ in ran if name == "scan_logs") == 2  # 5 files, LOG_CHUNK to a task
    assert {w for name, w in ran if name in ("list_logs", "scan_logs")} <= workers


def test_the_default_engine_never_imports_distributed(tmp_path, write_config, bucket, emulators):
    config, plan = dask_kit.build(tmp_path, write_config, bucket, None, objects=5)
    code = (
        "import sys; from migrate.cli import main; sys.argv=['migrate','run','--config',sys.argv[1],sys.argv[2],"
        "'--json','--quiet'];\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('distributed' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(config), str(plan)], capture_output=True, timeout=120)
    assert json.loads(done.stdout)["status"] == "ok"
    assert done.stderr.decode().strip().splitlines()[-1] == "False"
