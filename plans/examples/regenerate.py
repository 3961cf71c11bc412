"""Regenerate the sample plan in plans/examples/ from the seeded demo estate.

    .venv/bin/python plans/examples/regenerate.py

The estate is generated under a relative path (`estate/`) in a scratch directory, so the paths in
the report read like an operator's. The bucket listing comes from a fresh fake-gcs-server: this is
the first, bulk wave, before `terraform apply` created the buckets.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from migrate.config import load_config
from migrate.inventory import run_inventory
from migrate.ledger import connect
from migrate.local.datagen import generate
from migrate.local.emulators import start_gcs
from migrate.planning.planner import make_plan

HERE = Path(__file__).resolve().parent
NAME = "wave1"
KEEP = (".plan.json", ".manifest.jsonl", ".skipped.jsonl", ".md", ".tfvars.json")


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="migrate-example-"))
    cwd = Path.cwd()
    emu = start_gcs(scratch / "gcs")
    os.environ["STORAGE_EMULATOR_HOST"] = emu.url
    try:
        os.chdir(scratch)
        generate(Path("estate"), scale=0.25, seed=7, project="acme-music-prod")
        cfg = load_config(Path("estate/migrate.toml"))
        conn = connect(cfg.project.state_dir)
        run_inventory(cfg, conn, hash=True)
        result = make_plan(cfg, conn, NAME)
        for suffix in KEEP:
            shutil.copyfile(Path(cfg.project.plans_dir) / f"{NAME}{suffix}", HERE / f"{NAME}{suffix}")
        print(f"plan {result.plan_id}: {result.summary['objects']['files']} objects -> {HERE}")
    finally:
        os.chdir(cwd)
        emu.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
