"""Options shared by every command, defined once, and the error boundary."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from migrate.errors import ConfigError, MigrateError

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", envvar="MIGRATE_CONFIG", help="Config file (default: ./migrate.toml)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON document instead of tables.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]


def errors_to_exit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn MigrateError into a one-line message on stderr and its exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from migrate.cli import render

        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            for line in exc.lines():
                render.error(line)
            if exc.fix and len(exc.lines()) == 1:
                render.error(f"fix: {exc.fix}")
            raise typer.Exit(exc.exit_code) from None
        except MigrateError as exc:
            render.error(exc.one_line())
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            render.error("interrupted; the ledger is consistent and the command can be run again to resume")
            raise typer.Exit(130) from None
        except Exception as exc:
            from migrate.clients import credentials_problem

            problem = credentials_problem(exc)
            if problem is None:
                raise
            render.error(problem.one_line())
            raise typer.Exit(problem.exit_code) from None

    return wrapper


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")


def resolve_plan_path(plans_dir: Path, plan: str) -> Path:
    """A path as given if it exists or looks like a file; else <plans_dir>/<plan>.plan.json."""
    p = Path(plan)
    if p.exists() or plan.endswith(".json") or "/" in plan:
        return p
    return Path(plans_dir) / f"{plan}.plan.json"
