"""`migrate plan` on the command line: JSON with the same numbers as the plan file, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from migrate.config import load_config
from migrate.inventory import run_inventory
from migrate.ledger import connect
from migrate.plan import load_plan


def _migrate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "migrate", *args], capture_output=True, text=True, env=dict(os.environ), check=False
    )


def test_cli_plan_json_matches_the_plan_file_and_tables_render(estate, emulators):
    out = _migrate("plan", "--config", str(estate.config_path), "--name", "wave1")
    assert out.returncode == 2
    assert "run `migrate inventory` first" in out.stderr and "Traceback" not in out.stderr

    cfg = load_config(estate.config_path)
    run_inventory(cfg, connect(cfg.project.state_dir), hash=True)
    out = _migrate("plan", "--config", str(estate.config_path), "--name", "wave1", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    plan = load_plan(doc["files"]["plan"])
    assert doc["plan_id"] == plan.plan_id
    assert doc["summary"] == plan.doc["summary"]
    assert doc["summary"]["objects"]["files"] == estate.total_files
    assert doc["targets"]["buckets"] == sorted(estate.buckets.values())

    out = _migrate("plan", "--config", str(estate.config_path), "--name", "wave1")
    assert out.returncode == 0, out.stderr
    assert plan.plan_id in out.stdout and "objects to copy" in out.stdout and "skipped" in out.stdout
    assert f"{estate.total_files:,}" in out.stdout

    out = _migrate("plan", "--config", str(estate.config_path), "--name", "../escape")
    assert out.returncode == 2 and "plan name" in out.stderr


def test_cli_plan_without_credentials_names_the_fix(estate, tmp_path):
    """Against real Google Cloud (no emulator variables) with no usable credentials: one line, exit 2."""
    cfg = load_config(estate.config_path)
    run_inventory(cfg, connect(cfg.project.state_dir), hash=False)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
    env["GOOGLE_APPLICATION_CREDENTIALS"] = str(tmp_path / "missing-key.json")
    out = subprocess.run(
        [sys.executable, "-m", "migrate", "plan", "--config", str(estate.config_path), "--name", "wave1"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "credentials" in lines[0] and "GOOGLE_APPLICATION_CREDENTIALS" in lines[0]
