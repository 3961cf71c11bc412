"""`migrate plan --name NAME`: write a reviewable plan and show its numbers."""

from __future__ import annotations

from typing import Annotated

import typer

from migrate.cli.common import ConfigOpt, JsonOpt, QuietOpt, errors_to_exit, print_json

NameOpt = Annotated[str, typer.Option("--name", "-n", help="Plan name: files go to <plans_dir>/<name>.*")]


def register(app: typer.Typer) -> None:
    @app.command("plan")
    @errors_to_exit
    def plan(name: NameOpt, config: ConfigOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False) -> None:
        """Diff the latest inventory against the buckets, batch the work and write plans/<name>.*."""
        from migrate.cli import render
        from migrate.config import load_config
        from migrate.ledger import connect
        from migrate.planning.planner import make_plan

        cfg = load_config(config)
        conn = connect(cfg.project.state_dir, create=False)
        try:
            with render.status_spinner(f"planning {name}", enabled=not (as_json or quiet)) as spinner:
                result = make_plan(cfg, conn, name, report=spinner)
        finally:
            conn.close()
        if as_json:
            print_json(result.to_dict())
        elif not quiet:
            show(result)


def show(result) -> None:
    from rich.markup import escape

    from migrate.cli import render
    from migrate.planning.estimate import format_money, format_seconds
    from migrate.units import format_bytes

    s = result.summary
    o, e, k, a = s["objects"], s["events"], s["skipped"], s["already_migrated"]
    render.info(f"[bold]plan {escape(result.name)}[/]  id {result.plan_id}  (inventory snapshot {result.snapshot_id})")
    render.table(
        "",
        ["", "files", "bytes", "batches"],
        [
            ("objects to copy", f"{o['files']:,}", format_bytes(o["bytes"]), f"{o['batches']:,}"),
            (
                "logs to replay",
                f"{e['files']:,}",
                f"{format_bytes(e['bytes'])} / {e['events']:,} events",
                f"{e['batches']:,}",
            ),
            ("already in the destination", f"{a['files']:,}", format_bytes(a["bytes"]), ""),
            ("skipped for other reasons", f"{k['not_done']['files']:,}", format_bytes(k["not_done"]["bytes"]), ""),
        ],
        right=("files", "bytes", "batches"),
    )
    if k["by_reason"]:
        render.table(
            "skipped by reason",
            ["reason", "files", "meaning"],
            [(code, f"{v['files']:,}", v["description"]) for code, v in k["by_reason"].items()],
            right=("files",),
        )
    est = s["estimates"]
    render.info(
        f"estimated copy time {format_seconds(est['copy_seconds'])} at {format_bytes(est['bandwidth_bytes_per_s'])}/s"
        f"{' (assumed)' if est['bandwidth_assumed'] else ''}; publish {format_seconds(est['publish_seconds'])};"
        f" storage {format_money(est['monthly_storage_cost'])}/month;"
        f" operations and Pub/Sub {format_money(est['run_and_verify_cost'])} once"
    )
    for w in result.warnings:
        render.warn(w)
    for key in ("plan", "manifest", "skipped", "report", "tfvars"):
        render.info(f"  {key:9} {escape(str(result.paths[key]))}")
