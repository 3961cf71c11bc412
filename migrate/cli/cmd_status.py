"""`migrate status`: per plan, what is done, pending, failed, and how the last run went."""

from __future__ import annotations

import time

import typer

from migrate.cli import render
from migrate.cli.common import ConfigOpt, JsonOpt, QuietOpt, errors_to_exit, print_json
from migrate.units import format_bytes


def register(app: typer.Typer) -> None:
    @app.command("status")
    @errors_to_exit
    def status(config: ConfigOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False) -> None:
        """Show every plan in the ledger: objects by state, bytes, retries, events, the last run's rate."""
        from migrate.config import load_config
        from migrate.status import status as build

        report = build(load_config(config, check_roots=False))
        if as_json:
            print_json(report.to_dict())
        elif not quiet:
            show(report.to_dict())


def show(doc: dict) -> None:
    if not doc["plans"]:
        render.info("No plan has been run yet (see `migrate plan` and `migrate run`).")
        return
    for p in doc["plans"]:
        o, b, e = p["objects"], p["object_bytes"], p["event_files"]
        rows = [
            (
                "objects done",
                f"{o.get('done', 0):,} ({format_bytes(b.get('done', 0))} of {format_bytes(sum(b.values()))})",
            ),
            ("objects pending", f"{o.get('pending', 0):,}"),
            ("objects failed (next run retries)", f"{o.get('failed', 0):,}"),
            ("objects source-changed (re-plan)", f"{o.get('source-changed', 0):,}"),
            ("objects in conflict", f"{o.get('conflict', 0):,}"),
            ("retries", f"{p['retries']:,}"),
        ]
        if sum(e.values()):
            rows += [
                ("log files done / all", f"{e.get('done', 0):,} / {sum(e.values()):,}"),
                ("events published", f"{p['events_published']:,}"),
                ("events quarantined", f"{p['quarantined']:,}"),
                ("max possible duplicate events", f"{p['max_possible_duplicates']:,}"),
            ]
        last = p.get("last_run")
        if last:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["started_at"]))
            rows.append(("runs", f"{p['runs']} (last: #{last['run_id']} {last['status']}, started {when})"))
            if last.get("rate") is not None:
                rows.append(("last run's copy rate", f"{format_bytes(last['rate'])}/s"))
            if p.get("last_copy_rate") and not last.get("rate"):
                rows.append(("rate of the last run that copied", f"{format_bytes(p['last_copy_rate'])}/s"))
            if last.get("events_per_second"):
                rows.append(("last run's events/s", f"{last['events_per_second']:,.0f}"))
        state = "complete" if p["complete"] else "not complete"
        render.table(f"Plan {p['name']} ({p['plan_id']}): {state}", ["", "value"], rows, right=["value"])
