"""`migrate worker`: a Dask worker on an NFS host, declaring the sources it can read."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from migrate.cli.common import errors_to_exit
from migrate.errors import UsageError

MountOpt = Annotated[
    list[str],
    typer.Option(
        "--mount",
        help="A catalog source or listener (its name in migrate.toml) this host can read at its configured path."
        " Repeatable; tasks of a source run only on workers that declare it.",
    ),
]


def worker_command(scheduler: str, mounts: list[str], *, nworkers: int, nthreads: int, name: str | None) -> list[str]:
    """The `dask worker` command line that declares each mount as the resource mnt_<source>."""
    from migrate.engine.dask_run import mount_resource

    resources = " ".join(f"{mount_resource(m)}={nthreads}" for m in mounts)
    cmd = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler]
    cmd += ["--nworkers", str(nworkers), "--nthreads", str(nthreads), "--resources", resources]
    return cmd + (["--name", name] if name else [])


def register(app: typer.Typer) -> None:
    @app.command("worker")
    @errors_to_exit
    def worker(
        scheduler: Annotated[str, typer.Option("--scheduler", envvar="MIGRATE_SCHEDULER", help="tcp://host:8786")],
        mount: MountOpt,
        nworkers: Annotated[int, typer.Option("--nworkers", min=1, help="Worker processes on this host.")] = 1,
        nthreads: Annotated[int, typer.Option("--nthreads", min=1, help="Task threads per worker process.")] = 8,
        name: Annotated[str | None, typer.Option("--name", help="Worker name shown by the scheduler.")] = None,
    ) -> None:
        """Start a Dask worker for `migrate run --engine dask --scheduler ...` on a host that mounts sources.

        Equivalent to `dask worker SCHEDULER --resources "mnt_audio=8 mnt_plays=8"`. The host needs
        the Google credentials of the run (see README "Running on many hosts").
        """
        from migrate.engine import require_distributed

        require_distributed()
        bad = [m for m in mount if not m or any(c.isspace() or c in "=," for c in m)]
        if bad:
            raise UsageError(
                f"--mount {bad[0]!r} is not a source name", "pass the name of a [[catalog]] or [[listeners]]"
            )
        cmd = worker_command(scheduler, mount, nworkers=nworkers, nthreads=nthreads, name=name)
        # no statistical profiler: on CPython 3.11 it can freeze a busy worker (engine.dask_worker.stop_profiler)
        env = dict(os.environ, DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED="False")
        sys.stdout.flush()
        os.execve(cmd[0], cmd, env)  # the worker replaces this process: signals (systemd stop) reach it directly
