"""Options of the commands that can run on a Dask cluster (run, inventory), defined once."""

from __future__ import annotations

from typing import Annotated

import typer

EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        envvar="MIGRATE_ENGINE",
        help="Where the work runs: local (threads in this process) or dask (a Dask cluster, needs migrate[dask]).",
    ),
]
EngineWorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--engine-workers",
        min=1,
        max=1024,
        help="--engine dask without --scheduler: worker processes of the local cluster (default: one per core).",
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        envvar="MIGRATE_SCHEDULER",
        help="--engine dask: an existing Dask scheduler, e.g. tcp://host:8786 (default: [engine] scheduler).",
    ),
]
