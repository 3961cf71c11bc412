"""`migrate inventory` (not landed yet)."""

from __future__ import annotations

import typer

from migrate.cli.common import ConfigOpt, JsonOpt, errors_to_exit
from migrate.errors import NotLandedError


def register(app: typer.Typer) -> None:
    @app.command("inventory", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    @errors_to_exit
    def inventory(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
        """Not available yet in this version."""
        raise NotLandedError("`migrate inventory` has not landed in this version", "use a newer migrate")
