"""The Typer app: one module per command. Each command calls one core function."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from migrate import __version__

_app = typer.Typer(
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


@_app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """inventory -> plan -> run -> verify. See README.md for the walk-through."""


# command name -> the module that defines it (help lists them in this order)
COMMANDS = {
    "inventory": "cmd_inventory",
    "plan": "cmd_plan",
    "preflight": "cmd_preflight",
    "provision": "cmd_provision",
    "run": "cmd_run",
    "verify": "cmd_verify",
    "status": "cmd_status",
    "demo": "cmd_demo",
    "worker": "cmd_worker",
}


_registered: set[str] = set()


def _register(names: list[str] | None = None) -> typer.Typer:
    """Register the named commands (default: all) once each. Each command module imports what its command needs."""
    import importlib

    for name in names or list(COMMANDS):
        if name not in _registered:
            importlib.import_module(f"migrate.cli.{COMMANDS[name]}").register(_app)
            _registered.add(name)
    return _app


def _invoked(argv: list[str]) -> str | None:
    """The command a command line names, when it names one before any option ('migrate run -c x.toml')."""
    return argv[1] if len(argv) > 1 and argv[1] in COMMANDS else None


def main() -> None:
    # Start-up matters (inventory, plan and run are three processes): a command line that names its
    # command imports only that command's module; anything else (--help, --version, a typo) gets them all.
    command = _invoked(sys.argv)
    _register([command] if command else None)(prog_name="migrate")


def __getattr__(name: str) -> typer.Typer:
    """`from migrate.cli import app` (tests, embedding): the app with every command registered."""
    if name == "app":
        return _register()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
