"""The one pipeline builder of the tests: inventory -> plan (-> run), through the core functions."""

from __future__ import annotations

from pathlib import Path

from migrate.config import Config
from migrate.inventory import run_inventory
from migrate.ledger import connect
from migrate.planning.planner import PlanResult, make_plan
from migrate.transfer.run import RunOptions, RunSummary, run_plan


def plan(cfg: Config, name: str, *, hash: bool = True, gcs_client=None) -> PlanResult:
    """Inventory the config's sources, then plan `name`; the files are in result.paths."""
    conn = connect(cfg.project.state_dir)
    try:
        run_inventory(cfg, conn, hash=hash)
        return make_plan(cfg, conn, name, gcs_client=gcs_client)
    finally:
        conn.close()


def plan_path(cfg: Config, name: str, **kw) -> Path:
    return Path(plan(cfg, name, **kw).paths["plan"])


def run(cfg: Config, plan: Path | str, **kw) -> RunSummary:
    """run_plan with RunOptions fields (workers=, bwlimit=, ...) and run_plan's own keywords mixed."""
    opts = {k: kw.pop(k) for k in list(kw) if k in RunOptions.__dataclass_fields__}
    return run_plan(cfg, Path(plan), options=RunOptions(**opts), **kw)
