"""`migrate inventory`: scan the catalog trees and listener logs into the ledger."""

from __future__ import annotations

from typing import Annotated

import typer

from migrate.cli import render
from migrate.cli.common import ConfigOpt, JsonOpt, QuietOpt, errors_to_exit, print_json
from migrate.cli.engine_opts import EngineOpt, EngineWorkersOpt, SchedulerOpt
from migrate.config import load_config
from migrate.inventory import InventoryReport, run_inventory
from migrate.ledger import connect
from migrate.units import format_bytes


def register(app: typer.Typer) -> None:
    @app.command("inventory")
    @errors_to_exit
    def inventory(
        config: ConfigOpt = None,
        hash: Annotated[
            bool, typer.Option("--hash", help="Also record each file's CRC32C (re-hashes only changes).")
        ] = False,
        source: Annotated[list[str] | None, typer.Option("--source", help="Only these sources (repeatable).")] = None,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
        engine: EngineOpt = "local",
        engine_workers: EngineWorkersOpt = None,
        scheduler: SchedulerOpt = None,
    ) -> None:
        """Scan the on-prem catalog trees and listener logs into the local ledger."""
        cfg = load_config(config)
        if engine != "local":
            from migrate.engine import check_engine

            check_engine(engine)
        conn = connect(cfg.project.state_dir)
        with render.status_spinner("inventory", enabled=not (as_json or quiet)) as reporter:
            if engine == "dask":
                from migrate.engine.dask_inventory import run_inventory_dask

                result = run_inventory_dask(
                    cfg,
                    conn,
                    hash=hash,
                    report=reporter,
                    sources=source,
                    workers=engine_workers,
                    scheduler=scheduler,
                )
            else:
                result = run_inventory(cfg, conn, hash=hash, report=reporter, sources=source)
        if as_json:
            print_json(result.to_dict())
        elif not quiet:
            show(result)


def show(r: InventoryReport, *, brief: bool = False) -> None:
    render.table(
        f"Catalog (snapshot {r.snapshot_id}{', hashed' if r.hashed else ''}, {r.seconds:.1f}s)",
        ["source", "files", "bytes", "added", "changed", "removed", "rehashed", "symlinks", "anomalies", "excluded"],
        [
            (
                c.name,
                c.files,
                format_bytes(c.bytes),
                c.added,
                c.changed,
                c.removed,
                c.rehashed,
                c.symlinks,
                c.anomalies,
                c.excluded,
            )
            for c in r.catalog
        ],
        right=["files", "bytes", "added", "changed", "removed", "rehashed", "symlinks", "anomalies", "excluded"],
    )
    for c in [] if brief else r.catalog:
        if c.files:
            render.table(
                f"{c.name}: size distribution",
                ["range", "files", "bytes"],
                [(d["range"], d["files"], format_bytes(d["bytes"])) for d in c.size_distribution if d["files"]],
                right=["files", "bytes"],
            )
            render.table(
                f"{c.name}: largest files",
                ["file", "size"],
                [(x["relpath"], format_bytes(x["size"])) for x in c.largest],
                right=["size"],
            )
        if c.anomaly_examples:
            render.table(
                f"{c.name}: anomalies (first {len(c.anomaly_examples)} of {c.anomalies})",
                ["file", "reason"],
                [(a["relpath"], a["reason"]) for a in c.anomaly_examples],
            )
    if r.listeners:
        render.table(
            "Listener logs",
            [
                "source",
                "topic",
                "files",
                "bytes",
                "events",
                "malformed",
                "oversized",
                "earliest",
                "latest",
                "anomalies",
            ],
            [
                (
                    x.name,
                    x.topic,
                    x.files,
                    format_bytes(x.bytes),
                    x.events,
                    x.malformed,
                    x.oversized,
                    x.min_time,
                    x.max_time,
                    len(x.anomalies),
                )
                for x in r.listeners
            ],
            right=["files", "bytes", "events", "malformed", "oversized", "anomalies"],
        )
        for x in [] if brief else r.listeners:
            rows = [(a["path"], "-", a["reason"]) for a in x.anomalies] + [
                (m["path"], m["line"], m["reason"]) for m in x.malformed_examples
            ]
            if rows:
                render.table(f"{x.name}: anomalies and malformed lines (first shown)", ["file", "line", "reason"], rows)
