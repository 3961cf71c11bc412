"""SIGKILL `python -m migrate run` at seeded moments, resume, and prove nothing is missing or written twice."""

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

from migrate.config import load_config
from migrate.hashing import crc32c_of_file
from migrate.ledger import connect, ledger_path
from migrate.targets.gcs import PARTS_PREFIX, Gcs

KIB = 1024


def _build(tmp_path: Path, write_config, bucket: str) -> tuple[Path, Path, Path]:
    rng = random.Random(11)
    tree = tmp_path / "tree"
    for i in range(1200):
        p = tree / f"d{i % 12:02d}" / f"f{i:04d}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(rng.randint(0, 6 * KIB)))
    for name in ("big-a.flac", "big-b.flac"):
        (tree / name).write_bytes(rng.randbytes(1536 * KIB))  # 6 composite parts each
    config = write_config(
        catalog=[{"name": "cat", "root": str(tree), "bucket": bucket, "prefix": "c/"}],
        # capped so the run lasts a few seconds: a fast machine would otherwise finish between two polls
        transfer={"workers": 4, "large_file_threshold": "512KiB", "chunk_size": "256KiB", "bandwidth_limit": "2MiB/s"},
    )
    return tree, config, pipeline.plan_path(load_config(config), "crash")


def _start(config: Path, plan: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "migrate", "run", "--config", str(config), str(plan), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )


def _done_count(state_dir: Path) -> int:
    path = ledger_path(state_dir)
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT COUNT(*) FROM items WHERE state='done'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def _listing(gcs: Gcs, bucket: str, prefix: str = "c/") -> dict[str, tuple[int, str, int]]:
    return {o.name: (o.size, o.crc32c, o.generation) for o in gcs.list(bucket, prefix)}


def test_sigkill_at_seeded_moments_then_resume(tmp_path, write_config, bucket, gcs_client, emulators):
    tree, config, plan = _build(tmp_path, write_config, bucket)
    cfg = load_config(config)
    gcs = Gcs(gcs_client)
    total = 1202
    rng = random.Random(3)
    snapshots: list[dict[str, tuple[int, str, int]]] = []
    kills = 0
    # first kill: as soon as a composite upload has parts in the bucket; then at seeded progress points
    for target in [None, *sorted(rng.sample(range(50, total - 100), 4))]:
        if target is not None:  # progress this process must make itself before the kill
            target = max(target, _done_count(cfg.project.state_dir) + 30)
            if target > total - 100:
                continue
        proc = _start(config, plan)
        deadline = time.monotonic() + 60

        def reached(target: int | None = target) -> bool:
            if target is None:
                return bool(_listing(gcs, bucket, PARTS_PREFIX))
            return _done_count(cfg.project.state_dir) >= target

        while proc.poll() is None and not reached() and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=30)
        snapshots.append(_listing(gcs, bucket))
        conn = connect(cfg.project.state_dir)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
    assert kills >= 3

    proc = _start(config, plan)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out)
    assert summary["status"] == "ok"
    assert summary["objects"]["done"] + summary["objects"]["already_done"] == total

    final = _listing(gcs, bucket)
    expected = {f"c/{p.relative_to(tree).as_posix()}": p for p in tree.rglob("*") if p.is_file()}
    assert set(final) == set(expected)  # nothing missing, nothing extra
    for name, path in expected.items():
        assert final[name][:2] == (path.stat().st_size, crc32c_of_file(path)[0])
    # one generation per object: whatever existed after a kill was never written again
    for snap in snapshots:
        for name, (_, _, generation) in snap.items():
            assert final[name][2] == generation, name
    conn = connect(cfg.project.state_dir)
    rows = conn.execute("SELECT relpath, state, generation FROM items WHERE kind='object'").fetchall()
    runs = [r[0] for r in conn.execute("SELECT status FROM runs ORDER BY run_id")]
    conn.close()
    assert runs.count("killed") >= 3 and "running" not in runs and runs[-1] == "ok"  # kills landed mid-run
    assert all(r["state"] == "done" and r["generation"] == final[f"c/{r['relpath']}"][2] for r in rows)
    assert _listing(gcs, bucket, PARTS_PREFIX) == {}
