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
    rows = []
    for p in doc["plans"]:
        o, b, e = p["objects"], p["object_bytes"], p["event_files"]
        last = p.get("last_run") or {}
        rate = last.get("rate")
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(last["started_at"])) if last else "-"
        rows.append(
            (
                p["name"],
                f"{o.get('done', 0):,}",
                f"{o.get('pending', 0):,}",
                f"{o.get('failed', 0):,}",
                f"{o.get('source-changed', 0):,}",
                f"{o.get('conflict', 0):,}",
                f"{format_bytes(b.get('done', 0))} / {format_bytes(sum(b.values()))}",
                f"{p['retries']:,}",
                f"{sum(e.values()) - e.get('pending', 0) - e.get('failed', 0)}/{sum(e.values())}",
                f"{p['events_published']:,}",
                f"{p['quarantined']:,}",
                f"{last.get('status', '-')} {when}",
                f"{format_bytes(rate)}/s" if rate else "-",
            )
        )
    render.table(
        "Plans",
        [
            "plan",
            "done",
            "pending",
            "failed",
            "source-changed",
            "conflict",
            "bytes done",
            "retries",
            "log files",
            "events",
            "quarantined",
            "last run",
            "rate",
        ],
        rows,
        right=["done", "pending", "failed", "source-changed", "conflict", "retries", "events", "quarantined", "rate"],
    )
