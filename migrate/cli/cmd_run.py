"""`migrate run PLAN`: copy the plan's objects and replay its events; resumable at any moment."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from migrate.cli import render
from migrate.cli.common import ConfigOpt, JsonOpt, QuietOpt, errors_to_exit, print_json
from migrate.cli.engine_opts import EngineOpt, EngineWorkersOpt, SchedulerOpt
from migrate.cli.progress_view import RunProgress, mode_for
from migrate.errors import UsageError
from migrate.ledger.states import RunStatus
from migrate.units import format_bytes, format_duration, parse_rate

PlanArg = Annotated[str, typer.Argument(help="The plan: plans/<name>.plan.json, or just its name.", show_default=False)]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", "-w", min=1, max=256, help="Parallel uploads (default: transfer.workers).")
]
BwlimitOpt = Annotated[
    str | None,
    typer.Option("--bwlimit", help="Cap on upload throughput across all workers, e.g. 50MiB/s (0: unlimited)."),
]
DriftOpt = Annotated[
    bool, typer.Option("--allow-drift", help="Run even though the inventory changed since the plan was made.")
]
OnlyOpt = Annotated[str, typer.Option("--only", help="What to run: all, objects or events.")]
NoVerifyOpt = Annotated[
    bool,
    typer.Option(
        "--no-event-verification",
        help="Publish even to a topic whose verification subscription is missing (its events cannot be verified).",
    ),
]
EXIT_INTERRUPTED = 130


def register(app: typer.Typer) -> None:
    @app.command("run")
    @errors_to_exit
    def run(
        plan: PlanArg,
        workers: WorkersOpt = None,
        bwlimit: BwlimitOpt = None,
        allow_drift: DriftOpt = False,
        only: OnlyOpt = "all",
        no_event_verification: NoVerifyOpt = False,
        engine: EngineOpt = "local",
        engine_workers: EngineWorkersOpt = None,
        scheduler: SchedulerOpt = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Copy the plan's objects into GCS and replay its listener logs into Pub/Sub.

        The first Ctrl-C finishes what is in flight and stops; a second one aborts. Either way,
        running the same command again resumes where it stopped.
        """
        from migrate.cli.common import resolve_plan_path
        from migrate.config import load_config
        from migrate.transfer.run import RunOptions, run_plan

        cfg = load_config(config)
        rate = None
        if bwlimit is not None:
            try:
                rate = parse_rate(bwlimit)
            except ValueError as exc:
                raise UsageError(f"--bwlimit: {exc}", "pass a rate such as 50MiB/s, or 0 for unlimited") from None
        options = RunOptions(
            workers=workers,
            bwlimit=rate,
            allow_drift=allow_drift,
            kinds=only,
            event_verification=not no_event_verification,
            engine=engine,
            engine_workers=engine_workers,
            scheduler=scheduler,
        )
        stop = threading.Event()
        try:
            with _interrupts(stop, quiet=quiet), RunProgress(mode_for(as_json=as_json, quiet=quiet)) as view:
                summary = run_plan(
                    cfg, resolve_plan_path(cfg.project.plans_dir, plan), options=options, report=view, stop=stop
                )
        except KeyboardInterrupt:
            # the second Ctrl-C: finished items are in the ledger; requests still in flight are abandoned
            render.error("aborted; the ledger is consistent: run the same command again to resume")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        doc = summary.to_dict()
        if as_json:
            print_json(doc)
        elif not quiet:
            show(doc)
        if summary.status in (RunStatus.FAILED, RunStatus.INCOMPLETE):
            if not as_json:
                show_failures(doc)
            raise typer.Exit(1)
        if summary.status == RunStatus.INTERRUPTED:
            if not as_json:
                render.warn("stopped before the end; run the same command again to resume")
            raise typer.Exit(EXIT_INTERRUPTED)


@contextmanager
def _interrupts(stop: threading.Event, *, quiet: bool) -> Iterator[None]:
    """First SIGINT/SIGTERM: stop taking new work. Second: KeyboardInterrupt (abort)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = 0

    def handler(signum: int, frame: object) -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            stop.set()
            if not quiet:
                render.warn("stopping: finishing what is in flight (Ctrl-C again to abort)")
            return
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def show(doc: dict) -> None:
    o = doc.get("objects")
    rows = []
    if o:
        rows += [
            ("objects uploaded", f"{o['uploaded']:,}"),
            ("objects already in place (same CRC32C)", f"{o['existed']:,}"),
            ("objects done before this run", f"{o['already_done']:,}"),
            ("bytes uploaded", f"{format_bytes(o['bytes'])} at {format_bytes(o['rate'])}/s"),
            ("files/s", f"{o['files_per_second']:,}"),
        ]
        if o["reused_bytes"]:
            rows.append(("bytes not re-sent (already in GCS)", format_bytes(o["reused_bytes"])))
        rows += [
            ("failed", f"{o['failed']:,}"),
            ("source changed since inventory", f"{o['source_changed']:,}"),
            ("conflicts", f"{o['conflict']:,}"),
            ("left for the next run", f"{o['pending']:,}"),
        ]
    ev = doc.get("events")
    if ev:
        rows += [
            ("events published", f"{ev.get('events', 0):,} ({format_bytes(ev.get('bytes', 0))})"),
            ("events quarantined", f"{ev.get('quarantined', 0):,}"),
            (
                "event files done / failed / changed",
                f"{ev.get('files_done', 0)} / {ev.get('files_failed', 0)} / {ev.get('files_changed', 0)}",
            ),
            ("max possible duplicate events", f"{ev.get('max_possible_duplicates', 0):,}"),
        ]
    rows += [("retries", f"{doc['retries']:,}"), ("elapsed", format_duration(doc["elapsed"]))]
    eng = doc.get("engine")
    if eng:
        rows += [
            ("dask workers (threads)", f"{eng['workers']} ({eng['threads']})"),
            ("dask tasks / rerun / workers lost", f"{eng['tasks']:,} / {eng['tasks_rerun']:,} / {eng['workers_lost']}"),
        ]
    render.table(f"Run {doc['run_id']} of plan {doc['plan']}: {doc['status']}", ["", "value"], rows, right=["value"])
    halted = (doc.get("objects") or {}).get("halted")
    for line in doc.get("warnings") or ():
        if line != halted:
            render.warn(line)


def show_failures(doc: dict) -> None:
    o = doc.get("objects") or {}
    failures = o.get("failures") or []
    if failures:
        total = o.get("failures_total", len(failures))
        more = f" (first {len(failures)} of {total}; `migrate status` counts them all)" if total > len(failures) else ""
        render.table(
            f"Objects not copied{more}",
            ["state", "file", "destination", "reason"],
            [(f["state"], f"{f['source']}:{f['relpath']}", f["destination"], f["reason"]) for f in failures],
        )
    errors = (doc.get("events") or {}).get("errors") or []
    if errors:
        render.table("Event files not replayed", ["reason"], [(e,) for e in errors])
    halted = (doc.get("objects") or {}).get("halted")
    if halted:
        render.error(halted)
    elif doc["status"] == RunStatus.FAILED:
        render.error("some items failed; run the same command again to retry them")
    if doc.get("not_copied"):
        render.error(
            f"{doc['not_copied']} planned item(s) changed since inventory or are in conflict, and this plan will not"
            f" copy them; fix: re-run `migrate inventory` and `migrate plan` for a delta wave"
        )
