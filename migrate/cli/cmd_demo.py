"""`migrate demo`: generate a sample data center and run the whole job on local emulators."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from migrate.cli import render
from migrate.cli.common import JsonOpt, errors_to_exit, print_json
from migrate.units import format_bytes

# stage -> the command module whose `show(result)` renders it
_RENDERERS = {"plan": "cmd_plan", "verify": "cmd_verify"}


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @errors_to_exit
    def demo(
        workdir: Annotated[Path, typer.Option("--workdir", help="Where the sample data center and state go.")] = Path(
            "demo"
        ),
        scale: Annotated[
            float, typer.Option("--scale", min=0.01, help="Size of the data center (1.0 ≈ 280 MiB).")
        ] = 0.25,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the generator.")] = 7,
        workers: Annotated[int, typer.Option("--workers", min=1, help="Parallel uploads.")] = 8,
        as_json: JsonOpt = False,
    ) -> None:
        """Generate a sample data center, start local emulators, then inventory, plan, run and verify."""
        from migrate.local.demo import run_demo

        def on_stage(name: str, result: Any, seconds: float) -> None:
            if as_json:
                return
            render.info(f"\n[bold cyan]== {name}[/] ({seconds:.1f}s)")
            if name == "generate":
                render.plain(
                    f"sample data center at {result.root}: {result.total_files:,} catalog files "
                    f"({format_bytes(result.total_bytes)}), {result.events():,} listener events, "
                    f"{result.malformed():,} malformed lines; config {result.config_path}"
                )
            elif name == "emulators":
                render.plain(f"fake-gcs-server at {result.gcs}, Pub/Sub emulator at {result.pubsub}")
            elif name == "provision":
                render.plain(str(getattr(result, "summary", lambda: result)()))
            elif name == "inventory":
                from migrate.cli.cmd_inventory import show

                show(result, brief=True)
            elif name == "run":
                from migrate.cli.cmd_run import show

                show(result.to_dict())
            elif name in _RENDERERS:
                module = importlib.import_module(f"migrate.cli.{_RENDERERS[name]}")
                module.show(result)

        def run_progress():
            from migrate.cli.progress_view import RunProgress, mode_for

            return RunProgress(mode_for(as_json=as_json, quiet=False))

        result = run_demo(
            workdir, scale=scale, seed=seed, workers=workers, on_stage=on_stage, run_progress=run_progress
        )
        if as_json:
            print_json(result.to_dict())
        else:
            verdict = (
                "[green]verified: every object and event arrived[/]" if result.verified else "[red]NOT verified[/]"
            )
            where = escape(str(result.plan_path.parent)) if result.plan_path else "-"
            render.info(f"\n{verdict}. Plan and reports: {where}")
        if not result.verified:
            raise typer.Exit(1)
