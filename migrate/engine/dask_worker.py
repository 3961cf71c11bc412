"""What runs on a Dask worker: one plugin per process, module-level task functions, no ledger.

The plugin holds what a worker process keeps between tasks: the GCS client (one connection
pool for every thread), the Pub/Sub publisher client, and an abort flag. Task functions take
picklable inputs (batches of items, never one task per file) and return per-item outcomes; the
driver alone writes them to the ledger. Workers talk back while a task runs only through
throttled `log_event` messages on the run's topic (progress, acknowledged event prefixes).

A task first checks the run's fence, a distributed Variable holding the run id the driver set
when it started: a task of an earlier run (its driver was killed, the scheduler lives on) finds
another run id there and publishes nothing more.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from distributed import Variable, WorkerPlugin, get_worker

from migrate.config import Config
from migrate.engine.leases import held
from migrate.ledger.states import NOT_COPIED, SETTLED, ItemState
from migrate.progress import Event
from migrate.targets.buckets import COMPOSITE, RESUMABLE
from migrate.transfer.composite_steps import part_layout
from migrate.transfer.copier import Copier
from migrate.transfer.outcome import Outcome, outcome_of
from migrate.transfer.tasks import LargeJob, Work

PROGRESS_INTERVAL = 0.5  # seconds between a task's progress messages
FENCE_TIMEOUT = 10.0


def plugin_name(plan_id: str) -> str:
    return f"migrate-{plan_id}"


def fence_name(plan_id: str) -> str:
    return f"migrate-fence-{plan_id}"


def topic_name(plan_id: str) -> str:
    return f"migrate-{plan_id}"


class MigratePlugin(WorkerPlugin):
    """Per worker process: clients and settings shared by every task of one plan's run."""

    def __init__(self, cfg: Config, plan_id: str) -> None:
        self.cfg = cfg
        self.plan_id = plan_id
        self.name = plugin_name(plan_id)
        self._lock = threading.Lock()
        self._gcs = None
        self._publisher = None

    def __getstate__(self) -> dict:
        return {"cfg": self.cfg, "plan_id": self.plan_id}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["cfg"], state["plan_id"])

    def setup(self, worker) -> None:
        self.worker = worker
        self.abort = threading.Event()
        stop_profiler(worker)
        try:  # clients are built once per process, before the first task needs them
            self.gcs()
            self.publisher_client()
        except Exception:
            pass  # missing credentials surface as the items' errors, in the driver's summary

    def teardown(self, worker) -> None:
        self.abort.set()
        if self._publisher is not None:
            try:
                self._publisher.transport.close()
            except Exception:
                pass

    def gcs(self):
        with self._lock:
            if self._gcs is None:
                from migrate.clients import gcs_endpoint
                from migrate.targets.gcs import Gcs

                threads = max(1, self.worker.state.nthreads)
                impersonate = self.cfg.project.impersonate_service_account
                client = gcs_endpoint(self.cfg.project.id, impersonate=impersonate, endpoint=self.cfg.storage.endpoint)
                self._gcs = Gcs(client, timeout=self.cfg.transfer.timeout, pool_size=threads + 4)
            return self._gcs

    def publisher_client(self):
        with self._lock:
            if self._publisher is None:
                from migrate.clients import publisher_client

                self._publisher = publisher_client(
                    impersonate=self.cfg.project.impersonate_service_account, endpoint=self.cfg.pubsub.endpoint
                )
            return self._publisher


PROFILER_CALLBACKS = ("profile", "profile-cycle")
NO_PROFILER = {"distributed.worker.profile.enabled": False}  # dask config for the workers migrate starts


def stop_profiler(worker) -> bool:
    """Stop the worker's statistical profiler (dashboard only): on CPython 3.11 it freezes the process.

    Every 10 ms it calls sys._current_frames() on the event loop thread, which holds the GIL and the
    interpreter's thread-list lock while it allocates frame objects; an allocation can start a
    garbage collection, and collecting a threading.local in a reference cycle takes that same lock
    again. The thread waits for itself forever while holding the GIL, and every other thread of the
    worker waits for the GIL: tasks stop mid-request, heartbeats stop, results cannot be fetched
    (https://github.com/python/cpython/issues/106883, https://github.com/python/cpython/issues/116969,
    https://github.com/dask/distributed/issues/8616). Returns whether a running profiler was stopped.
    """
    stopped = False
    for name in PROFILER_CALLBACKS:
        callback = worker.periodic_callbacks.pop(name, None)
        if callback is not None:
            stopped = stopped or callback.is_running()
            callback.stop()
    return stopped


def current_plugin(plan_id: str) -> MigratePlugin:
    return get_worker().plugins[plugin_name(plan_id)]


class Messages:
    """A task's channel to the driver: log_event on the run's topic, progress throttled."""

    def __init__(self, plan_id: str, run_id: int, key: str) -> None:
        self.worker = get_worker()
        self.topic = topic_name(plan_id)
        self.run_id = run_id
        self.key = key
        self.token = uuid.uuid4().hex[:12]
        self.sent = 0  # messages sent by this task attempt
        self.bytes = 0
        self.retries: list[list[str]] = []
        self.last = time.monotonic()

    def send(self, kind: str, **fields: Any) -> int:
        self.sent += 1
        msg = {"t": kind, "run": self.run_id, "key": self.key, "token": self.token, "n": self.sent, **fields}
        self.worker.log_event(self.topic, msg)
        return self.sent

    def start(self) -> None:
        self.send("start", worker=self.worker.address)

    def __call__(self, event: Event) -> None:
        """The Reporter given to the copier: bytes and retries, sent at most every PROGRESS_INTERVAL."""
        if event.kind == "bytes":
            self.bytes += event.n
        elif event.kind == "retry":
            self.retries.append([event.name, str(event.data.get("error", ""))])
        else:
            return
        if time.monotonic() - self.last >= PROGRESS_INTERVAL:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        if self.bytes or self.retries:
            self.send("progress", bytes=self.bytes, retries=self.retries[:20])
            self.bytes = 0
            self.retries = []


def read_fence(plan_id: str) -> dict:
    """The run's fence: {"run": the driver's run id, "stop": whether it asked tasks to stop}."""
    return Variable(fence_name(plan_id)).get(timeout=FENCE_TIMEOUT) or {}


def fenced(plan_id: str, run_id: int) -> bool:
    """True when the fence belongs to another run: this task is an orphan and must publish nothing."""
    return read_fence(plan_id).get("run") != run_id


def warm_up(plan_id: str) -> bool:
    """A no-op task that makes the worker's client (get_client) and reads the fence once."""
    read_fence(plan_id)
    return True


# --- objects -------------------------------------------------------------------------------------


def copy_batch(spec: dict, works: list[Work]) -> dict:
    """Copy a batch of object items of one source; returns an Outcome per item, in order.

    Every outcome comes from the copier's own entry points, so an item is 'done' only when GCS
    acknowledged its object (or a 412 found it there with the same CRC32C).
    """
    plan_id, run_id = spec["plan_id"], spec["run_id"]
    p = current_plugin(plan_id)
    msgs = Messages(plan_id, run_id, spec["key"])
    msgs.start()
    if fenced(plan_id, run_id):
        return {"worker": msgs.worker.address, "token": msgs.token, "fenced": True, "outcomes": []}
    outcomes: list[Outcome] = []
    restarts: dict[int, dict] = {}  # resumable items whose session must be replaced (the driver starts it)
    with held(spec.get("bw")) as throttle:
        copier = Copier(
            p.gcs(),
            p.cfg.transfer,
            plan_id,
            throttle=throttle or _no_throttle,
            report=msgs,
            abort=p.abort,
        )
        for w in works:
            if (w.upload_state or {}).get("kind") == RESUMABLE:
                outcome, restart = copy_resumable(copier, w, msgs)
                if restart is not None:
                    restarts[w.seq] = restart
                outcomes.append(outcome)
            elif w.upload_state is not None or w.size >= max(p.cfg.transfer.large_file_threshold, 1):
                outcomes.append(copy_large(copier, p.cfg, w))
            else:
                outcomes.append(copier.copy_one(w))
    msgs.flush()
    return {
        "worker": msgs.worker.address,
        "token": msgs.token,
        "fenced": False,
        "outcomes": outcomes,
        "restarts": restarts,
    }


def _no_throttle(n: int) -> None:
    return None


def copy_resumable(copier: Copier, w: Work, msgs: Messages) -> tuple[Outcome, dict | None]:
    """One resumable upload inside one task, in the session the driver started and recorded.

    The driver opened the session and wrote its URI to the ledger before this task was submitted
    (engine.dask_objects), so the first thing an attempt does is ask GCS what that session holds
    (https://cloud.google.com/storage/docs/performing-resumable-uploads#status-check): a rerun of
    this task after its worker died sends only what the server has not persisted. Each acknowledged
    offset goes to the driver as a message, which records it as the single-process engine does.
    A session that must be replaced (expired, or GCS refused the file's CRC32C) is not started here:
    the item comes back pending with its restart state, for the driver to record a new session first.
    Returns (the item's outcome, that restart state or None).
    """
    state = dict(w.upload_state or {})
    resumed = bool(state.pop("resumed", False))  # the session comes from an earlier run
    job = LargeJob(w, RESUMABLE, session=state, resumed=True)
    job.query_first = resumed or not first_attempt(msgs, w.seq)
    job.reused = int(state.get("offset") or 0) if resumed else 0  # acknowledged in an earlier run
    while True:
        step = copier.resumable_step(job)
        if isinstance(step, Outcome):
            if step.state in NOT_COPIED:
                copier.cancel_session(job)
            return step, None
        if not step.get("uri"):
            pending = Outcome(w.seq, ItemState.PENDING, retries=job.retries, corrupt=job.corrupt, uploaded=job.uploaded)
            return pending, step
        job.session = step
        msgs.flush()  # the bytes of this chunk reach the driver's display before its acknowledgement
        msgs.send("session", seq=w.seq, state=step)


def first_attempt(msgs: Messages, seq: int) -> bool:
    """True the first time this run's task for item `seq` gets here; a rerun (its worker died) sees False.

    Kept in the scheduler's metadata store, which answers at once: a fresh session needs no status
    query before its first chunk, a rerun's session may hold what the dead attempt sent."""
    from distributed import get_client

    client = get_client()
    path = ["migrate-attempts", msgs.key, str(seq)]
    if client.get_metadata(path, default=None) is not None:
        return False
    client.set_metadata(path, msgs.token)
    return True


def copy_large(copier: Copier, cfg: Config, w: Work) -> Outcome:
    """One composite upload inside one task: prepare, its parts one after another, compose.

    A rerun (this task on another worker) finds the parts an earlier attempt uploaded and re-sends
    only the rest. The job's one cleanup hook runs when it ends for good, as in the single-process
    engine.
    """
    part_size, n_parts = part_layout(w.size, cfg.transfer, w.upload_state)
    job = LargeJob(w, COMPOSITE, part_size, n_parts, resumed=w.upload_state is not None)
    prepared = copier.prepare_large(job)
    if isinstance(prepared, Outcome):
        outcome = prepared
    else:
        outcome = None
        for index in range(n_parts):
            part = copier.upload_part(job, index)
            job.retries += part.retries
            if part.error is not None:
                outcome = outcome_of(w.seq, part.error, w.path)
                outcome.retries += job.retries
                outcome.uploaded = sum(p.uploaded for p in job.parts.values())
                break
            job.parts[index] = part
        outcome = outcome or copier.compose_large(job)
    if outcome.state in SETTLED:
        copier.delete_parts(job)
    return outcome


# --- inventory -----------------------------------------------------------------------------------


def walk_dirs(source, dirs: list[tuple[bytes, bytes]], limit: int, visited: set | None = None) -> dict:
    """Walk directories of a catalog source until `limit` entries; returns them and the dirs left.

    visited (follow_symlinks only): directories already walked, carried from task to task.
    """
    from migrate.sources.globs import PathFilter
    from migrate.sources.tree import WalkStats, scan_dir

    stats = WalkStats()
    flt = PathFilter(source.include, source.exclude)
    seen = visited if visited is not None else set()
    stack = list(reversed(dirs))
    entries = []
    while stack and len(entries) < limit:
        abs_dir, rel_dir = stack.pop()
        entries.extend(scan_dir(source, abs_dir, rel_dir, stack, stats, flt, seen))
    return {
        "worker": get_worker().address,
        "entries": entries,
        "left": list(reversed(stack)),
        "excluded": stats.excluded,
        "dirs": stats.dirs,
        "visited": seen if visited is not None else None,
    }


def hash_paths(fn, paths: list[bytes]) -> list:
    """fn(path) for each path, on a worker that can read them (inventory --hash)."""
    return [fn(p) for p in paths]


def list_logs(listener) -> list:
    """A listener's log files and their (size, mtime_ns, inode), on a worker that mounts it."""
    from migrate.inventory_logs import list_logs

    return list_logs(listener)


def scan_logs(listener, paths: list[str]) -> list:
    """The inventory scan (counts, id digest, time range, bad lines) of each log, on a worker that mounts it."""
    from migrate.sources.eventlog import scan_file

    return [scan_file(path, listener) for path in paths]


# --- events --------------------------------------------------------------------------------------


def replay_file(spec: dict) -> dict:
    """Replay one listener log file; see engine/dask_replay.py."""
    from migrate.engine.dask_replay import replay_one

    return replay_one(spec)
