"""Hostile plans: a tampered plan file or manifest, a plan from another inventory; refused with the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from relkit import assert_clean_error, build_hostile_estate, run_cli

PLAN = "p1"


@pytest.fixture
def planned(tmp_path: Path, emulators, bucket, topic):
    """A hostile estate, inventoried and planned (nothing run yet)."""
    est = build_hostile_estate(tmp_path / "dc", bucket=bucket, topic=topic, csv_topic=topic)
    res = run_cli("inventory", "--config", est.config, "--hash", "--json")
    assert res.returncode == 0, str(res)
    res = run_cli("plan", "--config", est.config, "--name", PLAN, "--json")
    assert res.returncode == 0, str(res)
    return est


def _plan_files(est) -> tuple[Path, Path]:
    plans = est.root / "plans"
    return plans / f"{PLAN}.plan.json", plans / f"{PLAN}.manifest.jsonl"


def _consumers(est) -> list[list[str]]:
    """Every command that takes a plan, as an operator would call it."""
    return [
        ["verify", "--config", str(est.config), PLAN],
        ["run", "--config", str(est.config), PLAN],
    ]


def _edit_plan_doc(est) -> None:
    plan, _ = _plan_files(est)
    doc = json.loads(plan.read_text())
    doc["targets"]["buckets"] = ["attacker-bucket"]
    plan.write_text(json.dumps(doc, indent=2, sort_keys=True))


def _edit_manifest(est) -> None:
    _, manifest = _plan_files(est)
    lines = manifest.read_text().splitlines()
    item = json.loads(lines[0])
    item["object"] = "audio/../../elsewhere.ogg"
    lines[0] = json.dumps(item, sort_keys=True, separators=(",", ":"))
    manifest.write_text("\n".join(lines) + "\n")


def _drop_manifest(est) -> None:
    _plan_files(est)[1].unlink()


def _garble(est) -> None:
    plan, _ = _plan_files(est)
    plan.write_text(plan.read_text()[:100])


@pytest.mark.parametrize(
    ("tamper", "words"),
    [
        (_edit_plan_doc, ["modified after planning", "migrate plan"]),
        (_edit_manifest, ["modified after planning", "migrate plan"]),
        (_drop_manifest, ["missing"]),
        (_garble, ["unreadable", "migrate plan"]),
    ],
    ids=["plan-doc", "manifest", "no-manifest", "garbled"],
)
def test_tampered_plan_is_refused_by_every_consumer(planned, tamper, words):
    tamper(planned)
    for argv in _consumers(planned):
        res = run_cli(*argv)
        assert_clean_error(res, 2, *words)
    assert not (planned.root / "plans" / f"{PLAN}.verify.json").exists()


def test_plan_from_another_inventory_is_refused_with_the_fix(planned, tmp_path):
    """The plans directory of one estate used with another estate's ledger."""
    other = build_hostile_estate(tmp_path / "other", bucket="other-bucket", topic="other-topic", csv_topic="other-t")
    assert run_cli("inventory", "--config", other.config, "--json").returncode == 0
    shutil.copytree(planned.root / "plans", other.root / "plans")
    res = run_cli("run", "--config", other.config, PLAN)
    line = assert_clean_error(res, 2, PLAN)
    assert "migrate plan" in line or "inventory" in line, line


def test_plan_whose_inventory_drifted_is_refused_with_the_fix(planned):
    (planned.tree / "plain.ogg").write_bytes(b"OggS changed after planning, longer")
    assert run_cli("inventory", "--config", planned.config, "--hash", "--json").returncode == 0
    res = run_cli("run", "--config", planned.config, PLAN)
    line = assert_clean_error(res, 2, "plain.ogg")
    assert "migrate plan" in line, line
