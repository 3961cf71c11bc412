"""`migrate demo`: the whole job on a generated data center and local emulators.

generate -> start emulators -> inventory -> plan -> create targets from the tfvars ->
run -> verify. Each stage's result goes to `on_stage` as soon as it is ready, so the
CLI can render it; the emulators are stopped at the end whatever happens.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrate.progress import Reporter, null_reporter

PLAN_NAME = "demo"

StageCallback = Callable[[str, Any, float], None]


@dataclass
class DemoResult:
    workdir: Path
    config_path: Path
    plan_path: Path | None = None
    stages: dict[str, float] = field(default_factory=dict)
    verified: bool = False
    documents: dict[str, Any] = field(default_factory=dict)  # each stage's own --json document

    def to_dict(self) -> dict:
        return {
            "workdir": str(self.workdir),
            "config": str(self.config_path),
            "plan": str(self.plan_path) if self.plan_path else None,
            "stage_seconds": self.stages,
            "verified": self.verified,
            "stages": self.documents,
        }


def run_demo(
    workdir: Path,
    *,
    scale: float = 0.25,
    seed: int = 7,
    fresh: bool = True,
    workers: int = 8,
    on_stage: StageCallback | None = None,
    report: Reporter = null_reporter,
    run_progress: Callable[[], AbstractContextManager[Reporter]] | None = None,
) -> DemoResult:
    from migrate.config import load_config
    from migrate.inventory import run_inventory
    from migrate.ledger import connect
    from migrate.local.datagen import generate
    from migrate.local.emulators import local_emulators
    from migrate.local.provision import provision
    from migrate.planning.planner import make_plan
    from migrate.transfer.run import RunOptions, run_plan
    from migrate.verification.verify import verify_plan

    stage = on_stage or (lambda name, result, seconds: None)
    workdir = Path(workdir).resolve()
    estate_dir = workdir / "datacenter"
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    t = time.monotonic()
    estate = generate(estate_dir, scale=scale, seed=seed)
    result = DemoResult(workdir, estate.config_path)
    _done(result, stage, "generate", estate, t)

    with local_emulators(workdir / "emulators", project="demo-project") as emu:
        _done(result, stage, "emulators", emu, time.monotonic())
        cfg = load_config(estate.config_path)
        conn = connect(cfg.project.state_dir)

        t = time.monotonic()
        _done(result, stage, "inventory", run_inventory(cfg, conn, hash=True, report=report), t)

        t = time.monotonic()
        plan = make_plan(cfg, conn, PLAN_NAME, report=report)
        result.plan_path = Path(plan.paths["plan"])
        _done(result, stage, "plan", plan, t)

        t = time.monotonic()
        _done(result, stage, "provision", provision(Path(plan.paths["tfvars"])), t)

        t = time.monotonic()
        options = RunOptions(workers=workers)
        with run_progress() if run_progress else nullcontext(report) as run_report:
            summary = run_plan(cfg, result.plan_path, options=options, report=run_report)
        _done(result, stage, "run", summary, t)

        t = time.monotonic()
        verdict = verify_plan(cfg, result.plan_path, deep="5%", report=report)
        result.verified = bool(verdict.ok)
        _done(result, stage, "verify", verdict, t)
    return result


def _done(result: DemoResult, stage: StageCallback, name: str, value: Any, started: float) -> None:
    seconds = round(time.monotonic() - started, 2)
    result.stages[name] = seconds
    if hasattr(value, "to_dict"):
        result.documents[name] = value.to_dict()
    stage(name, value, seconds)
