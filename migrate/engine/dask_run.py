"""The driver's side of a Dask run: the cluster, the run's fence, messages, and the engine summary.

`migrate run --engine dask` starts a LocalCluster of worker processes on this host, or connects
to an existing scheduler (`--scheduler` / `[engine] scheduler`). Every worker process gets the
run's MigratePlugin. Tasks of a source ask for the resource `mnt_<source>`: only workers that
declare it (they can read that mount) run them. Before anything moves, a source of the plan
that no worker declares is an error naming the source.

The driver is the only ledger writer. What workers send while tasks run (log_event on the run's
topic) and what tasks return both land in one queue, read by the driver's thread alone.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from dataclasses import dataclass, field
from typing import Any

from migrate.config import Config
from migrate.errors import UsageError

MOUNT_PREFIX = "mnt_"
MOUNT_GRACE = 2.0  # seconds to wait for workers to register before a missing mount is an error
WORKERS_POLL = 1.0
RESULT_TIMEOUT = 20.0
RESULT_TRIES = 3


def mount_resource(source: str) -> str:
    return f"{MOUNT_PREFIX}{source}"


@dataclass
class EngineStats:
    """The `engine` section of a run's summary."""

    kind: str = "dask"
    scheduler: str = ""
    workers: int = 0  # workers seen during the run
    threads: int = 0  # task slots when the run started
    tasks: int = 0
    tasks_rerun: int = 0  # task attempts beyond the first (a worker died under them)
    workers_lost: int = 0
    per_worker: dict[str, dict[str, int]] = field(default_factory=dict)
    _starts: dict[str, set[str]] = field(default_factory=dict)

    def started(self, key: str, token: str) -> bool:
        """Record a task attempt; True when it is a rerun of that task."""
        tokens = self._starts.setdefault(key, set())
        if token in tokens:
            return False
        tokens.add(token)
        if len(tokens) > 1:
            self.tasks_rerun += 1
            return True
        return False

    def finished(self, key: str) -> None:
        self._starts.pop(key, None)

    def credit(self, worker: str, items: int = 0, nbytes: int = 0, events: int = 0) -> None:
        row = self.per_worker.setdefault(worker, {"items": 0, "bytes": 0, "events": 0})
        row["items"] += items
        row["bytes"] += nbytes
        row["events"] += events

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "scheduler": self.scheduler,
            "workers": self.workers,
            "threads": self.threads,
            "tasks": self.tasks,
            "tasks_rerun": self.tasks_rerun,
            "workers_lost": self.workers_lost,
            "per_worker": {k: dict(v) for k, v in sorted(self.per_worker.items())},
        }


class DaskEngine:
    """A connected client (and maybe a LocalCluster), the run's plugin, fence and message queue."""

    def __init__(self, cfg: Config, plan_id: str, *, workers: int | None = None, scheduler: str | None = None):
        self.cfg = cfg
        self.plan_id = plan_id
        self.n_workers = workers or cfg.engine.workers or os.cpu_count() or 1
        self.address = scheduler or cfg.engine.scheduler or ""
        self.cluster = None
        self.client = None
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.stats = EngineStats(scheduler=self.address or "local")
        self.run_id: int | None = None
        self._alive: set[str] = set()
        self._gone: set[str] = set()
        self._seen: set[str] = set()
        self.threads = 0
        self._last_poll = 0.0
        self.resources: dict[str, dict[str, float]] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> DaskEngine:
        try:
            self.connect()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        import dask
        from distributed import Client, LocalCluster

        from migrate.engine.dask_worker import NO_PROFILER, MigratePlugin, topic_name

        if self.address:
            try:
                self.client = Client(self.address, timeout=10, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise UsageError(
                    f"cannot reach the Dask scheduler at {self.address} ({exc})",
                    "start it (`dask scheduler`) or fix --scheduler / [engine] scheduler",
                ) from None
        else:
            threads = max(1, -(-self.cfg.transfer.workers // self.n_workers))
            sources = [s.name for s in self.cfg.catalog] + [s.name for s in self.cfg.listeners]
            with dask.config.set(NO_PROFILER):  # see dask_worker.stop_profiler
                self.cluster = LocalCluster(
                    n_workers=self.n_workers,
                    threads_per_worker=threads,
                    processes=True,
                    resources={mount_resource(s): threads for s in sources},
                    dashboard_address=":0",
                    silence_logs=logging.ERROR,
                )
            self.client = Client(self.cluster, set_as_default=False)
        self.client.register_plugin(MigratePlugin(self.cfg, self.plan_id), name=f"migrate-{self.plan_id}")
        self.client.subscribe_topic(topic_name(self.plan_id), lambda event: self.inbox.put(("msg", event[1])))
        self.poll_workers(force=True)

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.unsubscribe_topic(f"migrate-{self.plan_id}")
                if self.cluster is None:
                    self.client.unregister_worker_plugin(f"migrate-{self.plan_id}")
            except Exception:
                pass
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    # --- the run's fence ---------------------------------------------------------------------

    def start_run(self, run_id: int) -> None:
        """Claim the plan for this run: tasks of any earlier run publish nothing from now on."""
        from migrate.engine.dask_worker import warm_up

        self.run_id = run_id
        self.set_fence(stop=False)
        # each worker's own client (leases, Variables) is made before the clock of the first stage starts
        futures = [
            self.client.submit(warm_up, self.plan_id, workers=[a], allow_other_workers=False, pure=False)
            for a in sorted(self._alive)
        ]
        self.client.gather(futures, errors="skip")

    def set_fence(self, *, stop: bool) -> None:
        from distributed import Variable

        from migrate.engine.dask_worker import fence_name

        Variable(fence_name(self.plan_id), client=self.client).set({"run": self.run_id, "stop": stop})

    def variable(self, name: str):
        from distributed import Variable

        return Variable(name, client=self.client)

    # --- workers and mounts ------------------------------------------------------------------

    def poll_workers(self, *, force: bool = False) -> None:
        """Refresh the worker list (at most once a second): counts workers seen and lost."""
        now = time.monotonic()
        if not force and now - self._last_poll < WORKERS_POLL:
            return
        self._last_poll = now
        info = self.client.scheduler_info()
        workers = info.get("workers", {})
        current = set(workers)
        # lost: gone and never back (a restarted worker has a new address); a loaded scheduler's answer
        # can miss workers that are still there, and those come back under the same address
        self._gone = (self._gone | (self._alive - current)) - current
        self.stats.workers_lost = len(self._gone)
        self._alive = current
        self._seen |= current
        self.stats.workers = len(self._seen)
        self.resources = {a: dict(w.get("resources") or {}) for a, w in workers.items()}
        self.threads = sum(int(w.get("nthreads") or 0) for w in workers.values())

    def require_mounts(self, sources: list[str]) -> None:
        """Every source must be readable by some worker; waits MOUNT_GRACE for workers to register."""
        deadline = time.monotonic() + MOUNT_GRACE
        while True:
            self.poll_workers(force=True)
            declared = {r for res in self.resources.values() for r, amount in res.items() if amount > 0}
            missing = [s for s in sources if mount_resource(s) not in declared]
            if not missing or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if missing:
            where = f"the Dask scheduler {self.address}" if self.address else "the local cluster"
            raise UsageError(
                f"source {missing[0]!r} cannot be read by any worker of {where}"
                f" (no worker declares the mount {mount_resource(missing[0])})"
                + (f"; also {', '.join(repr(s) for s in missing[1:])}" if missing[1:] else ""),
                f"start a worker on a host that mounts it: migrate worker --scheduler ADDRESS --mount {missing[0]}",
            )
        self.stats.threads = max(1, self.threads)

    @property
    def slots(self) -> int:
        return max(1, self.stats.threads)

    def submit(self, fn, *args: Any, key: str, source: str):
        """Submit one task restricted to workers that mount `source`; its result comes back on the inbox."""
        future = self.client.submit(fn, *args, key=key, resources={mount_resource(source): 1}, pure=False)
        future.add_done_callback(lambda f: self.inbox.put(("done", f)))
        self.stats.tasks += 1
        return future

    def outcome(self, future) -> tuple[Any, str | None]:
        """(the task's result, None), or (None, why there is none). Never waits forever.

        A result is fetched from the worker that holds it; a fetch that does not answer within
        RESULT_TIMEOUT is tried again, then the task counts as failed (its items are retried by
        the next run, where create-once finds what it did).
        """
        from migrate.retry import describe

        if future.status == "cancelled":
            return None, "cancelled"
        for _ in range(RESULT_TRIES):
            try:
                return future.result(timeout=RESULT_TIMEOUT), None
            except TimeoutError:
                continue
            except Exception as exc:
                return None, describe(exc)
        return None, f"the result of task {future.key} could not be fetched from its worker"

    def next(self, timeout: float) -> tuple[str, Any] | None:
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None
