"""python -m bench.dask_engine: the Dask engine against the single-process run, side by side.

    python -m bench.dask_engine                    # S2-like 20,000 small files, S4-like 1M events
    python -m bench.dask_engine --scale 0.1        # a tenth of both (development)

For each workload it runs `migrate run --json` twice on the same generated data (cached under
bench/.work), into a fresh bucket/topic each time: the default engine, then `--engine dask
--engine-workers 2` (a LocalCluster of 2 worker processes on this host). Then it measures the
scheduler itself: the cost of one task, and the tasks/s it sustains with batched submission
(client.map in batches of 64, results through as_completed(...).batches()), and turns that into a
paper estimate for 10^8 files. Results: bench/results/dask-engine-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench import datasets
from bench.gcs import PROJECT  # the project id bench.migrate_side writes into migrate.toml
from bench.migrate_side import write_config

REPO = Path(__file__).resolve().parent.parent

BATCH = 64  # items per task, as the engine's object batches (engine/dask_objects.BATCH_ITEMS)


def _noop(x):
    return x


def _run(cmd: list[str], env: dict, timeout: float) -> tuple[dict | None, float, str]:
    started = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout)
    wall = time.monotonic() - started
    try:
        return json.loads(done.stdout), wall, done.stderr.decode()[-400:]
    except ValueError:
        return None, wall, done.stderr.decode()[-400:]


def migrate_run(work: Path, *, catalog=None, listener=None, engine: str, env: dict, timeout: float) -> dict:
    """inventory + plan (untimed), then the timed `migrate run`; returns its figures."""
    wd = work / f"{engine}-{uuid.uuid4().hex[:6]}"
    wd.mkdir(parents=True)
    config = write_config(wd / "migrate.toml", wd, catalog=catalog, listener=listener, transfer={"workers": 16})
    mig = [sys.executable, "-m", "migrate"]
    subprocess.run([*mig, "inventory", "--config", str(config), "--json"], env=env, check=True, capture_output=True)
    subprocess.run(
        [*mig, "plan", "--config", str(config), "--name", "b", "--json"], env=env, check=True, capture_output=True
    )
    cmd = [*mig, "run", "--config", str(config), str(wd / "plans" / "b.plan.json"), "--json"]
    if engine == "dask":
        cmd += ["--engine", "dask", "--engine-workers", "2"]
    doc, wall, err = _run(cmd, env, timeout)
    if doc is None:
        return {"engine": engine, "error": err}
    o, ev = doc.get("objects") or {}, doc.get("events") or {}
    out = {"engine": engine, "status": doc["status"], "wall_s": round(wall, 2), "run_elapsed_s": doc["elapsed"]}
    if o.get("done"):
        out.update(files=o["done"], stage_s=o["elapsed"], files_per_s=round(o["done"] / max(o["elapsed"], 1e-9), 1))
    if ev:
        stage = doc["elapsed"] - (o.get("elapsed") or 0)
        out.update(events=ev["events"], events_per_s=round(ev["events"] / max(stage, 1e-9), 1))
    if doc.get("engine"):
        out["engine_summary"] = {k: v for k, v in doc["engine"].items() if k != "per_worker"}
    return out


def scheduler_figures(tasks: int) -> dict:
    """Per-task overhead (one future at a time) and sustained tasks/s with batched submission."""
    import logging

    from distributed import Client, LocalCluster, as_completed

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=4, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
        ) as cluster,
        Client(cluster) as client,
    ):
        client.submit(_noop, 0).result()
        n1 = min(500, tasks)
        started = time.monotonic()
        for i in range(n1):
            client.submit(_noop, i, pure=False).result()
        one_at_a_time = n1 / (time.monotonic() - started)
        started = time.monotonic()
        done = 0
        in_flight = as_completed()
        submitted = 0
        while submitted < tasks or in_flight.count():
            while submitted < tasks and in_flight.count() < 16 * BATCH:
                for f in client.map(_noop, range(submitted, submitted + BATCH), pure=False):
                    in_flight.add(f)
                submitted += BATCH
            for batch in in_flight.batches():
                done += len(batch)
                break
        batched = done / (time.monotonic() - started)
    return {
        "one_future_at_a_time_tasks_per_s": round(one_at_a_time, 1),
        "per_task_overhead_ms": round(1000 / one_at_a_time, 2),
        "batched_tasks_per_s": round(batched, 1),
        "batched_per_task_ms": round(1000 / batched, 3),
    }


def paper_estimate(batched_tasks_per_s: float, files_per_s_per_worker: float) -> dict:
    """10^8 files in batches of BATCH: what the scheduler allows, and how many workers that feeds."""
    files = 10**8
    tasks = files / BATCH
    scheduler_ceiling_files_per_s = batched_tasks_per_s * BATCH
    return {
        "files": files,
        "batch": BATCH,
        "tasks": int(tasks),
        "scheduler_hours_at_measured_rate": round(tasks / batched_tasks_per_s / 3600, 2),
        "scheduler_ceiling_files_per_s": round(scheduler_ceiling_files_per_s),
        "workers_to_reach_it": (
            round(scheduler_ceiling_files_per_s / files_per_s_per_worker) if files_per_s_per_worker > 0 else None
        ),
        "note": "per-worker rate from the dask run on this host; real NFS hosts and GCS differ",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.dask_engine", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--work", type=Path, default=REPO / "bench" / ".work")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--tasks", type=int, default=20_000, help="tasks for the scheduler throughput figure")
    a = ap.parse_args(argv)
    from migrate.local.emulators import local_emulators

    files = max(100, int(20_000 * a.scale))
    events = max(1000, int(1_000_000 * a.scale))
    small = datasets.small_files(a.work / "data", count=files, size_min=1024, size_max=4096, seed=7)
    logs = datasets.event_logs(a.work / "data", events=events, files=10, seed=7)
    emu_dir = Path("/dev/shm") if Path("/dev/shm").is_dir() else a.work
    results: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cores": os.cpu_count(), "runs": []}
    with local_emulators(emu_dir / f"dask-bench-{uuid.uuid4().hex[:6]}", project=PROJECT) as emus:
        from migrate import clients, names

        env = dict(os.environ)
        gcs = clients.gcs_client(PROJECT)
        publisher = clients.publisher_client()
        subscriber = clients.subscriber_client()
        for engine in ("local", "dask"):
            bucket = f"b-{uuid.uuid4().hex[:10]}"
            gcs.create_bucket(bucket)
            catalog = {"name": "small", "root": str(small.root), "bucket": bucket, "prefix": "s2/"}
            run = migrate_run(a.work / "dask-engine", catalog=catalog, engine=engine, env=env, timeout=a.timeout)
            results["runs"].append({"workload": f"S2 {files:,} small files", **run})
            print(json.dumps(results["runs"][-1]), flush=True)
        for engine in ("local", "dask"):
            topic = f"t-{uuid.uuid4().hex[:10]}"
            publisher.create_topic(name=publisher.topic_path(emus.project, topic))
            subscriber.create_subscription(
                name=subscriber.subscription_path(emus.project, names.verification_subscription(topic)),
                topic=publisher.topic_path(emus.project, topic),
            )
            listener = {
                "name": "plays",
                "paths": [str(logs.root / "plays" / "*.jsonl.gz")],
                "topic": topic,
                "format": "jsonl",
                "event_id_field": "event_id",
                "event_time_field": "ts",
            }
            run = migrate_run(a.work / "dask-engine", listener=listener, engine=engine, env=env, timeout=a.timeout)
            results["runs"].append({"workload": f"S4 {events:,} events", **run})
            print(json.dumps(results["runs"][-1]), flush=True)
    results["scheduler"] = scheduler_figures(a.tasks)
    dask_s2 = next((r for r in results["runs"] if r["engine"] == "dask" and "files_per_s" in r), {})
    per_worker = (dask_s2.get("files_per_s") or 0) / 2
    results["paper_10e8_files"] = paper_estimate(results["scheduler"]["batched_tasks_per_s"], per_worker)
    a.out.mkdir(parents=True, exist_ok=True)
    stem = a.out / f"dask-engine-{datetime.now(UTC).strftime('%Y-%m-%d')}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    stem.with_suffix(".md").write_text(_markdown(results))
    print(_markdown(results))
    return 0


def _markdown(r: dict) -> str:
    lines = [f"# Dask engine vs single process ({r['date']}, {r['cores']} cores)", ""]
    lines += ["| workload | engine | status | wall s | stage rate |", "|---|---|---|---|---|"]
    for run in r["runs"]:
        rate = f"{run['files_per_s']:,} files/s" if "files_per_s" in run else f"{run.get('events_per_s', 0):,} events/s"
        lines.append(
            f"| {run['workload']} | {run['engine']} | {run.get('status', 'error')} | {run.get('wall_s')} | {rate} |"
        )
    s = r["scheduler"]
    lines += [
        "",
        f"Scheduler: one future at a time {s['one_future_at_a_time_tasks_per_s']:,} tasks/s"
        f" ({s['per_task_overhead_ms']} ms per task); batched submission {s['batched_tasks_per_s']:,} tasks/s.",
        "",
    ]
    p = r["paper_10e8_files"]
    lines += [
        f"10^8 files in batches of {p['batch']}: {p['tasks']:,} tasks, {p['scheduler_hours_at_measured_rate']} h of"
        f" scheduler time at the measured rate; the scheduler could feed {p['scheduler_ceiling_files_per_s']:,}"
        f" files/s, about {p['workers_to_reach_it']:,} workers at this host's per-worker rate.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
