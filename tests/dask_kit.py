"""Shared by the Dask engine tests: a plan with a catalog tree and listener logs, and cluster helpers."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import files
import pipeline

from migrate.config import load_config

KIB = 1024


def event(i: int, log: int) -> bytes:
    doc = {
        "event_id": f"e{log:02d}-{i:06d}",
        "ts": f"2024-05-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "user": f"u{i % 7}",
    }
    return json.dumps(doc).encode()


def build(
    tmp_path: Path,
    write_config,
    bucket: str,
    topic: str | None,
    *,
    objects: int = 40,
    max_size: int = 6 * KIB,
    size: int | None = None,  # every file exactly this size (random up to max_size otherwise)
    logs: int = 0,
    events_per_log: int = 0,
    transfer: dict | None = None,
    pubsub: dict | None = None,
    sources: tuple[str, ...] = ("cat",),
    name: str = "dask",
) -> tuple[Path, Path]:
    """Write the tree(s) and logs, inventory with hashes, plan; returns (config path, plan path)."""
    rng = random.Random(7)
    catalog = []
    for s in sources:
        tree = tmp_path / f"tree-{s}"
        files.write_tree(
            tree,
            {
                f"d{i % 8}/f{i:05d}.bin": rng.randbytes(size if size is not None else rng.randint(0, max_size))
                for i in range(objects)
            },
        )
        catalog.append({"name": s, "root": str(tree), "bucket": bucket, "prefix": f"{s}/"})
    listeners = []
    if logs:
        for n in range(logs):
            files.write_log(
                tmp_path / "logs" / f"plays-{n:02d}.jsonl", [event(i, n) for i in range(events_per_log)], gz=False
            )
        listeners.append(
            {
                "name": "plays",
                "paths": [str(tmp_path / "logs" / "*.jsonl")],
                "topic": topic,
                "format": "jsonl",
                "event_id_field": "event_id",
                "event_time_field": "ts",
            }
        )
    sections = {"catalog": catalog, "transfer": transfer or {"workers": 4}}
    if listeners:
        sections["listeners"] = listeners
    if pubsub:
        sections["pubsub"] = pubsub
    config = write_config(**sections)
    return config, pipeline.plan_path(load_config(config), name)


def local_cluster(workers: int, threads: int, mounts: tuple[str, ...]):
    """A LocalCluster of worker processes in this process (a long-lived scheduler for the driver under test)."""
    import logging

    from distributed import LocalCluster

    return LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=True,
        resources={f"mnt_{m}": threads for m in mounts},
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )


def ledger_count(state_dir: Path, sql: str) -> int:
    """One number from the ledger, read-only (while a run writes it)."""
    import sqlite3

    from migrate.ledger import ledger_path

    path = ledger_path(state_dir)
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute(sql).fetchone()[0] or 0)
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def listing(gcs_client, bucket: str, prefix: str = "") -> dict[str, tuple[int, str, int]]:
    """name -> (size, crc32c, generation) of every live object under prefix."""
    return {b.name: (b.size, b.crc32c, b.generation) for b in gcs_client.list_blobs(bucket, prefix=prefix)}


class _Cycle:
    pass


def _garbage_with_a_thread_local() -> None:
    c = _Cycle()
    c.local = threading.local()
    c.local.value = 1
    c.me = c  # only the garbage collector frees it, and with it the thread-local


def _nap() -> None:
    time.sleep(0.0005)  # asleep in a fresh frame: the profiler's sys._current_frames() must allocate for it


def thread_local_churn(seconds: float) -> int:
    """A task that leaves thread-locals in reference cycles and naps between them, as an I/O-bound
    upload thread does (a tenacity Retrying per retried call holds a threading.local). On CPython 3.11
    a worker whose statistical profiler runs freezes under a few of these within a second or two."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        _garbage_with_a_thread_local()
        _nap()
        n += 1
    return n


def profiler_running(dask_worker) -> bool:
    """For client.run: whether the worker's statistical profiler is scheduled."""
    pc = dask_worker.periodic_callbacks.get("profile")
    return pc is not None and pc.is_running()


def in_thread(fn) -> tuple[threading.Thread, dict]:
    """Run fn in a daemon thread; the dict gets its "result" or "error"."""
    out: dict = {}

    def target() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:
            out["error"] = exc

    th = threading.Thread(target=target, daemon=True)
    th.start()
    return th, out


def wait_for(cond, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def kill_worker(client, prefix: str | None = None) -> str:
    """SIGKILL one worker process (one running a task whose key starts with prefix, if any); its address."""
    busy = [a for a, keys in client.processing().items() if prefix and any(str(k).startswith(prefix) for k in keys)]
    pids = client.run(os.getpid)
    addr = busy[0] if busy else sorted(pids)[0]
    os.kill(pids[addr], signal.SIGKILL)
    return addr
