"""`migrate run`: one plan, start to finish, resumable at any moment.

load the plan (tamper check) -> refuse drift and foreign plans -> preflight the targets ->
register the items in the ledger -> a `runs` row -> copy the objects -> replay the events ->
close the `runs` row -> RunSummary.

Objects first, then events, not both at once: both stages are CPU-bound in this one Python
process (hashing and HTTP framing on one side, parsing and protobuf on the other), so running
them together does not shorten the run on a small machine, it only makes them fight for the
GIL, doubles the memory peak and interleaves two failure stories in one display. One after the
other, each stage gets the whole machine, and a stop (Ctrl-C) has one obvious meaning: finish
what is in flight, start nothing new, neither objects nor events.
"""

from __future__ import annotations

import fcntl
import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from migrate.config import Config
from migrate.errors import EventsUnverifiable, UsageError
from migrate.ledger import connect, items, now
from migrate.ledger.items import register_items
from migrate.ledger.states import ItemKind, ItemState, RunStatus
from migrate.plan import Plan, load_plan
from migrate.progress import Event, Reporter, null_reporter
from migrate.ratelimit import limiter
from migrate.retry import describe
from migrate.transfer.objects import ObjectsSummary, concurrency, copy_objects, sweep_parts
from migrate.transfer.plan_checks import check_drift, check_identity

KINDS = ("all", "objects", "events")


@dataclass(frozen=True)
class RunOptions:
    workers: int | None = None  # None: transfer.workers
    bwlimit: int | None = None  # bytes/s; None: transfer.bandwidth_limit; 0: unlimited
    allow_drift: bool = False
    kinds: str = "all"  # all | objects | events
    skip_preflight: bool = False
    event_verification: bool = True  # refuse to publish to a topic whose verification subscription is missing
    engine: str = "local"  # local | dask (migrate/engine/)
    engine_workers: int | None = None  # dask LocalCluster processes (None: [engine] workers, else one per core)
    scheduler: str | None = None  # dask: an existing scheduler (None: [engine] scheduler, else a LocalCluster)


@dataclass
class RunSummary:
    plan_id: str
    plan_name: str
    run_id: int
    status: RunStatus = RunStatus.RUNNING  # then how it ended (see _status)
    workers: int = 0
    bwlimit: int = 0
    elapsed: float = 0.0
    objects: ObjectsSummary | None = None
    events: dict | None = None
    parts_deleted: int = 0
    not_copied: int = 0  # items of the plan in state source-changed or conflict, from any run
    preflight_retries: int = 0  # transient errors retried while checking the targets before the run
    warnings: list[str] = field(default_factory=list)
    engine: dict | None = None  # the dask engine's section: workers, per-worker items and bytes, reruns
    identity: dict | None = None  # clients.Identity.to_dict(): the principal and quota project in use

    @property
    def failed(self) -> bool:
        return self.status == RunStatus.FAILED

    @property
    def retries(self) -> int:
        objects = self.objects.retries if self.objects else 0
        return self.preflight_retries + objects + int((self.events or {}).get("retries", 0))

    def to_dict(self) -> dict:
        return {
            "plan_id": self.plan_id,
            "plan": self.plan_name,
            "run_id": self.run_id,
            "status": self.status,
            "workers": self.workers,
            "bwlimit": self.bwlimit,
            "elapsed": round(self.elapsed, 3),
            "retries": self.retries,
            "preflight_retries": self.preflight_retries,
            "objects": self.objects.to_dict() if self.objects else None,
            "events": self.events,
            "parts_deleted": self.parts_deleted,
            "not_copied": self.not_copied,
            "warnings": self.warnings,
            "identity": self.identity,
        } | ({"engine": self.engine} if self.engine is not None else {})


def run_plan(
    cfg: Config,
    plan_path: Path | str,
    *,
    options: RunOptions = RunOptions(),
    report: Reporter = null_reporter,
    stop: threading.Event | None = None,
    gcs_client=None,
) -> RunSummary:
    """Execute a plan; see the module docstring. Raises PlanError / TargetError before anything moves."""
    if options.kinds not in KINDS:
        raise UsageError(f"unknown kind {options.kinds!r}", f"use one of {', '.join(KINDS)}")
    stop = stop if stop is not None else threading.Event()
    if options.engine != "local":
        from migrate.engine import check_engine

        check_engine(options.engine)
    plan = load_plan(plan_path)
    conn = connect(cfg.project.state_dir)
    try:
        with _plan_lock(Path(cfg.project.state_dir), plan), ExitStack() as closing:
            # a 'running' row whose lock is free belongs to a run that was killed
            conn.execute(
                "UPDATE runs SET status=? WHERE plan_id=? AND status=?",
                (RunStatus.KILLED, plan.plan_id, RunStatus.RUNNING),
            )
            return _run(conn, cfg, plan, options, report, stop, gcs_client, closing)
    finally:
        conn.close()


@contextmanager
def _plan_lock(state_dir: Path, plan: Plan) -> Iterator[None]:
    """One `migrate run` per plan at a time: two would race on the same items and watermarks."""
    path = state_dir / f"run-{plan.plan_id}.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"plan {plan.name} is being run by another `migrate run` (lock {path})",
                "wait for it to finish, or stop it with Ctrl-C",
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(
    conn, cfg: Config, plan: Plan, options: RunOptions, report: Reporter, stop, gcs_client, closing: ExitStack
) -> RunSummary:
    check_identity(conn, plan)
    if not options.allow_drift:
        check_drift(conn, plan)
    preflight_retries = 0
    identity = {}

    def keep(e: Event) -> None:  # passes on retries, and 'identity': who this run acts as, before anything moves
        if e.kind == "identity":
            identity.update(e.data)
        if e.kind in ("retry", "identity"):
            report(e)

    if not options.skip_preflight:
        from migrate.preflight import preflight_plan

        report(Event("phase", name="preflight"))
        checked = preflight_plan(cfg, plan, report=keep)
        checked.raise_for_errors()
        if options.event_verification and options.kinds in ("all", "events"):
            refuse_unverifiable(checked.findings)
        preflight_retries = checked.retries
    else:
        from migrate.clients import describe_identity

        keep(Event("identity", data=describe_identity(cfg.project.impersonate_service_account).to_dict()))
    register_items(conn, plan)
    engine = _open_engine(conn, cfg, plan, options, closing) if options.engine == "dask" else None

    workers = max(1, options.workers or cfg.transfer.workers)
    bwlimit = cfg.transfer.bandwidth_limit if options.bwlimit is None else options.bwlimit
    started = time.monotonic()
    run_id = conn.execute("INSERT INTO runs(plan_id, started_at) VALUES(?, ?)", (plan.plan_id, now())).lastrowid
    summary = RunSummary(
        plan.plan_id,
        plan.name,
        run_id,
        workers=workers,
        bwlimit=bwlimit,
        preflight_retries=preflight_retries,
        identity=identity or None,
    )
    report(Event("start", data=totals(conn, plan, options.kinds)))
    abort = threading.Event()
    if engine is not None:
        engine.start_run(run_id)
        summary.workers = engine.slots
    try:
        if options.kinds in ("all", "objects"):
            summary.objects = _objects(
                conn, cfg, plan, workers, bwlimit, report, stop, abort, gcs_client, summary, engine
            )
        halted = bool(summary.objects and summary.objects.halted)
        if options.kinds in ("all", "events") and not stop.is_set() and not halted:
            summary.events = _events(conn, cfg, plan, run_id, report, stop, engine)
    except BaseException:
        summary.status = RunStatus.INTERRUPTED
        summary.elapsed = time.monotonic() - started
        _close_run(conn, summary)
        raise
    summary.elapsed = time.monotonic() - started
    if engine is not None:
        summary.engine = engine.stats.to_dict()
    summary.not_copied = items.not_copied(conn, plan.plan_id)
    summary.status = _status(summary, stop)
    _close_run(conn, summary)
    report(Event("finish", data=summary.to_dict()))
    return summary


def refuse_unverifiable(findings) -> None:
    """EventsUnverifiable (exit 2) when a topic's verification subscription is missing or on another topic:
    messages published before it exists never reach it, so they could never be verified."""
    bad = [f for f in findings if f.kind == "subscription" and f.status in ("missing", "wrong_topic")]
    if bad:
        raise EventsUnverifiable(
            "; ".join(f.message for f in bad),
            f"{bad[0].fix}; or pass --no-event-verification to publish without verification",
        )


def _open_engine(conn, cfg: Config, plan: Plan, options: RunOptions, closing: ExitStack):
    """Connect the Dask engine (closed with the run) and refuse a plan whose sources no worker mounts."""
    from migrate.engine import pending_sources
    from migrate.engine.dask_run import DaskEngine

    engine = closing.enter_context(
        DaskEngine(cfg, plan.plan_id, workers=options.engine_workers, scheduler=options.scheduler)
    )
    engine.require_mounts(pending_sources(conn, plan.plan_id, options.kinds))
    return engine


def _objects(
    conn, cfg, plan, workers, bwlimit, report, stop, abort, gcs_client, summary, engine=None
) -> ObjectsSummary | None:
    if not items.has_open(conn, plan.plan_id, ItemKind.OBJECT):
        out = ObjectsSummary()
        out.planned = items.count(conn, plan.plan_id, ItemKind.OBJECT)
        out.already_done = items.count(conn, plan.plan_id, ItemKind.OBJECT, (ItemState.DONE,))
        out.previously_skipped = out.planned - out.already_done
        return out
    from migrate.clients import gcs_endpoint
    from migrate.targets.gcs import Gcs

    client = gcs_client or gcs_endpoint(
        cfg.project.id, impersonate=cfg.project.impersonate_service_account, endpoint=cfg.storage.endpoint
    )
    gcs = Gcs(client, timeout=cfg.transfer.timeout, pool_size=concurrency(workers) + 4)
    report(Event("phase", name="copying objects"))
    summary.objects = ObjectsSummary()  # filled as items finish, so an abort still records counts
    buckets = _bucket_settings(conn, cfg, plan, gcs, summary)
    if engine is not None:
        from migrate.engine.dask_objects import copy_objects_dask

        result = copy_objects_dask(
            conn,
            cfg,
            plan,
            engine,
            run_id=summary.run_id,
            bwlimit=bwlimit,
            report=report,
            stop=stop,
            summary=summary.objects,
            buckets=buckets,
            gcs=gcs,
        )
    else:
        result = _copy_local(conn, cfg, plan, gcs, workers, bwlimit, report, stop, abort, summary, buckets)
    if result.halted:
        summary.warnings.append(result.halted)
    if not stop.is_set() and not result.halted:
        try:
            summary.parts_deleted = sweep_parts(conn, gcs, plan.plan_id, cfg.transfer.large_file_threshold)
        except Exception as exc:  # leftover parts are swept again by the next run
            summary.warnings.append(f"could not sweep composite-upload parts: {describe(exc)}")
    return result


def _copy_local(conn, cfg, plan, gcs, workers, bwlimit, report, stop, abort, summary, buckets) -> ObjectsSummary:
    return copy_objects(
        conn,
        cfg,
        plan,
        gcs=gcs,
        workers=workers,
        throttle=limiter(bwlimit).consume,
        report=report,
        stop=stop,
        abort=abort,
        summary=summary.objects,
        buckets=buckets,
    )


def _bucket_settings(conn, cfg: Config, plan: Plan, gcs, summary: RunSummary) -> dict:
    """Each bucket with large files to copy, read once through the run's own client, the way preflight
    reads it: its settings pick the upload path (targets.buckets)."""
    from migrate.retry import call_with_retry
    from migrate.targets.gcs_json_admin import GcsJsonAdmin
    from migrate.transfer.objects import large_file_buckets

    admin = GcsJsonAdmin(gcs, lambda fn: call_with_retry(fn, cfg.transfer))
    out = {}
    for name in large_file_buckets(conn, plan.plan_id, cfg.transfer.large_file_threshold):
        try:
            out[name] = admin.settings(name)
        except Exception as exc:  # the safe path needs no settings: resumable uploads work in any bucket
            summary.warnings.append(
                f"could not read the settings of bucket {name} ({describe(exc)}); its large files use resumable uploads"
            )
    return out


def _events(conn, cfg: Config, plan: Plan, run_id: int, report: Reporter, stop, engine=None) -> dict | None:
    rows = items.open_event_files(conn, plan.plan_id)
    if not rows:
        return None
    from migrate.transfer.replay import replay_events

    report(Event("phase", name="replaying events"))
    if engine is not None:
        from migrate.engine.dask_events import replay_events_dask

        return replay_events_dask(conn, cfg, plan, rows, engine, run_id=run_id, report=report, stop=stop).to_dict()
    return replay_events(conn, cfg, plan, rows, report=report, stop=stop).to_dict()


def _status(summary: RunSummary, stop: threading.Event) -> RunStatus:
    """failed: a re-run retries something. interrupted: a re-run resumes. incomplete: planned items
    that no re-run will copy (changed since inventory, or in conflict): a new plan must decide."""
    o = summary.objects
    ev = summary.events or {}
    if bool(o and o.failed) or bool(ev.get("files_failed")):
        return RunStatus.FAILED
    if stop.is_set() or bool(o and o.pending) or bool(ev.get("files_pending")) or bool(ev.get("interrupted")):
        return RunStatus.INTERRUPTED
    if summary.not_copied:
        return RunStatus.INCOMPLETE
    return RunStatus.OK


def _close_run(conn, s: RunSummary) -> None:
    o = s.objects or ObjectsSummary()
    ev = s.events or {}
    conn.execute(
        "UPDATE runs SET finished_at=?, status=?, objects=?, bytes=?, events=?, quarantined=?, retries=?, failed=?,"
        " summary=? WHERE run_id=?",
        (
            now(),
            s.status,
            o.done,
            o.bytes,
            int(ev.get("events", 0)),
            int(ev.get("quarantined", 0)),
            s.retries,
            o.failed + int(ev.get("files_failed", 0)),
            json.dumps(s.to_dict(), sort_keys=True, default=str),
            s.run_id,
        ),
    )


def totals(conn, plan: Plan, kinds: str = "all") -> dict:
    """What this run has left to do: objects and bytes, event files and events."""
    out = {"objects": 0, "bytes": 0, "files": 0, "events": 0}
    if kinds in ("all", "objects"):
        out["objects"], out["bytes"] = items.open_objects(conn, plan.plan_id)
    if kinds in ("all", "events"):
        rows = items.open_event_progress(conn, plan.plan_id)
        expected = plan.events_per_item() if rows else {}
        out["files"] = len(rows)
        out["events"] = sum(max(0, expected.get(seq, 0) - published) for seq, published in rows)
    return out
