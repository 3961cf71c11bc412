"""`migrate preflight [PLAN]`: every target bucket and topic exists and is writable; exit 1 if not."""

from __future__ import annotations

from typing import Annotated

import typer

from migrate.cli.common import ConfigOpt, JsonOpt, QuietOpt, errors_to_exit, print_json

PlanArg = Annotated[
    str | None,
    typer.Argument(
        help="The plan (plans/<name>.plan.json or its name); without it, every bucket and topic in the config.",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    @app.command("preflight")
    @errors_to_exit
    def preflight(plan: PlanArg = None, config: ConfigOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False):
        """Check that every target bucket and topic exists and is writable before anything moves."""
        from migrate.cli import render
        from migrate.cli.common import resolve_plan_path
        from migrate.config import load_config
        from migrate.plan import load_plan
        from migrate.preflight import preflight as run_preflight
        from migrate.preflight import preflight_plan

        cfg = load_config(config, check_roots=False)
        with render.status_spinner("preflight", enabled=not (as_json or quiet)) as spinner:
            if plan:
                result = preflight_plan(cfg, load_plan(resolve_plan_path(cfg.project.plans_dir, plan)), report=spinner)
            else:
                result = run_preflight(
                    cfg, [s.bucket for s in cfg.catalog], [s.topic for s in cfg.listeners], report=spinner
                )
        if as_json:
            print_json(result.to_dict())
        elif not quiet:
            show(result)
        for finding in result.errors:
            render.error(finding.one_line())
        if not as_json:
            for finding in result.warnings:
                render.warn(finding.one_line())
        if not result.ok:
            raise typer.Exit(1)


def show(result) -> None:
    from migrate.cli import render

    render.identity(result.identity.to_dict() if result.identity else None)
    render.table(
        f"Preflight{f' of plan {result.plan}' if result.plan else ''} (project {result.project}"
        f"{', emulators' if result.emulator else ''})",
        ["kind", "name", "status", "checked by", "large files"],
        [
            (
                f.kind,
                f.name,
                f.status if f.level != "warning" else f"{f.status} (warning)",
                f.method or "",
                f.upload_path or "",
            )
            for f in result.findings
        ],
    )
    if result.ok:
        n = sum(1 for f in result.findings if f.kind in ("bucket", "topic"))
        render.info(f"all {n} target(s) exist and are writable")
