"""The Typer app: one module per command. Each command calls one core function."""

from __future__ import annotations

from typing import Annotated

import typer

from migrate import __version__

app = typer.Typer(
    name="migrate",
    help="Move an on-prem catalog and listener logs into Google Cloud, and prove nothing was lost.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"migrate {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """inventory -> plan -> run -> verify. See README.md for the walk-through."""


def _register() -> None:
    from migrate.cli import (
        cmd_demo,
        cmd_inventory,
        cmd_plan,
        cmd_preflight,
        cmd_provision,
        cmd_run,
        cmd_status,
        cmd_verify,
        cmd_worker,
    )

    for module in (cmd_inventory, cmd_plan, cmd_preflight, cmd_provision, cmd_run, cmd_verify, cmd_status, cmd_demo):
        module.register(app)
    cmd_worker.register(app)


_register()


def main() -> None:
    app(prog_name="migrate")
