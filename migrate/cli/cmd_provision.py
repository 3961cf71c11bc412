"""`migrate provision PLAN`: emulator mode only, create the plan's buckets, topics and subscriptions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from migrate.cli.common import ConfigOpt, JsonOpt, QuietOpt, errors_to_exit, print_json

TargetArg = Annotated[
    str,
    typer.Argument(help="A plan name, plans/<name>.plan.json, or a .tfvars.json file.", show_default=False),
]


def tfvars_path(target: str, config: str | None) -> Path:
    """The tfvars file for a plan name / plan file / tfvars file."""
    p = Path(target)
    if p.name.endswith(".tfvars.json"):
        return p
    if p.name.endswith(".plan.json"):
        return p.with_name(p.name[: -len(".plan.json")] + ".tfvars.json")
    from migrate.config import load_config

    cfg = load_config(config, check_roots=False)
    return Path(cfg.project.plans_dir) / f"{target}.tfvars.json"


def register(app: typer.Typer) -> None:
    @app.command("provision")
    @errors_to_exit
    def provision(target: TargetArg, config: ConfigOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False):
        """Emulator mode: create a plan's buckets, topics and subscriptions (real projects: terraform/)."""
        from migrate.cli import render
        from migrate.local.provision import provision as run_provision

        report = run_provision(tfvars_path(target, config))
        if as_json:
            print_json(report.to_dict())
        elif not quiet:
            render.plain(report.summary())
            for note in report.notes:
                render.warn(note)
