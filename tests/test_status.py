"""`migrate status` and the `migrate run` CLI: counts per state, exit codes, failure table, JSON documents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pipeline
import pytest
from faultproxy import FaultProxy

from migrate.config import load_config
from migrate.preflight import PROBE_PREFIX
from migrate.status import status
from migrate.transfer.run import RunOptions, run_plan

KIB = 1024


@pytest.fixture
def planned(tmp_path: Path, write_config, bucket, emulators):
    tree = tmp_path / "tree"
    for i in range(12):
        p = tree / f"m/{i:02d}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(bytes([i]) * (i * 100))
    config = write_config(
        catalog=[{"name": "cat", "root": str(tree), "bucket": bucket, "prefix": "c/"}],
        transfer={"workers": 3, "retry_max_attempts": 2, "retry_initial_delay": 0.01, "retry_max_delay": 0.02},
    )
    cfg = load_config(config)
    return tree, config, cfg, pipeline.plan_path(cfg, "wave1")


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "migrate", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=120,
    )


def test_status_counts_every_state_and_the_last_rate(planned):
    tree, _, cfg, plan = planned
    (tree / "m/03.json").unlink()
    summary = run_plan(cfg, plan, options=RunOptions())
    rep = status(cfg).to_dict()
    assert len(rep["plans"]) == 1
    p = rep["plans"][0]
    assert (p["name"], p["plan_id"]) == ("wave1", summary.plan_id)
    assert p["objects"]["done"] == 11 and p["objects"]["source-changed"] == 1 and p["objects"]["pending"] == 0
    assert p["object_bytes"]["done"] == sum(i * 100 for i in range(12)) - 300
    assert p["complete"] is False  # a planned file was not copied
    assert p["runs"] == 1 and p["last_run"]["status"] == "incomplete"
    assert p["last_run"]["rate"] and p["last_run"]["rate"] > 0
    assert p["last_run"]["objects"] == 11


def test_run_cli_exits_1_with_a_failure_table_and_a_rerun_completes(planned, emulators):
    _, config, cfg, plan = planned

    probed = []

    def our_uploads(method: str, path: str) -> bool:
        """Every upload after preflight's probe (created, then deleted by name) has gone through."""
        if method == "DELETE" and PROBE_PREFIX in unquote(path):
            probed.append(path)
        return bool(probed) and method == "POST" and "/upload/" in path

    with FaultProxy(emulators.gcs, rate=1.0, faults=("503",), match=our_uploads) as proxy:
        env = {"STORAGE_EMULATOR_HOST": proxy.url}
        res = _cli("run", "--config", str(config), "wave1", env=env)
        assert res.returncode == 1, res.stderr
        assert "Objects not copied" in res.stdout and "503" in res.stdout
        assert "GCS looks unavailable" in res.stderr and "run the same command again" in res.stderr
        assert "Traceback" not in res.stderr and len(probed) == 1
        probed.clear()
        res = _cli("run", "--config", str(config), "wave1", "--json", env=env)
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    failed = doc["objects"]["failed"]
    assert doc["status"] == "failed" and failed >= 10  # then it stops: GCS looks down
    assert doc["retries"] >= failed  # one retry per upload (retry_max_attempts = 2)
    assert {f["state"] for f in doc["objects"]["failures"]} == {"failed"}

    st = json.loads(_cli("status", "--config", str(config), "--json").stdout)
    assert st["plans"][0]["objects"]["failed"] >= 10 and st["plans"][0]["retries"] >= 20

    res = _cli("run", "--config", str(config), "wave1")
    assert res.returncode == 0, res.stderr
    assert "objects 12/12" in res.stderr  # the no-terminal display: one-line status on stderr
    st = json.loads(_cli("status", "--config", str(config), "--json").stdout)
    assert st["plans"][0]["objects"]["done"] == 12 and st["plans"][0]["last_run"]["status"] == "ok"
    human = _cli("status", "--config", str(config))
    assert human.returncode == 0 and "wave1" in human.stdout


def test_run_cli_refuses_a_bad_bwlimit_and_an_unknown_plan(planned):
    _, config, _, _ = planned
    res = _cli("run", "--config", str(config), "wave1", "--bwlimit", "fast")
    assert res.returncode == 2 and "--bwlimit" in res.stderr
    res = _cli("run", "--config", str(config), "nope")
    assert res.returncode == 2 and "migrate plan" in res.stderr
    assert "Traceback" not in res.stderr
