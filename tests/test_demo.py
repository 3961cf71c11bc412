"""`migrate demo` (what `make demo` runs): the whole job on a generated data center and its own emulators."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline[:200]}")
    return found


def test_demo_moves_and_verifies_everything_then_stops_its_emulators(tmp_path):
    workdir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}  # the demo starts its own
    out = subprocess.run(
        [sys.executable, "-m", "migrate", "demo", "--json", "--workdir", str(workdir), "--scale", "0.03"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    doc = json.loads(out.stdout)
    assert doc["verified"] is True
    stages = doc["stages"]
    inventory, run, verify = stages["inventory"], stages["run"], stages["verify"]
    assert run["status"] == "ok" and verify["ok"] is True
    files = sum(c["files"] for c in inventory["catalog"])
    events = sum(x["events"] for x in inventory["listeners"])
    assert files > 0 and events > 0
    assert run["objects"]["uploaded"] + run["objects"]["existed"] == stages["plan"]["summary"]["objects"]["files"]
    assert run["events"]["events"] == events  # every valid event published once, none quarantined twice
    assert run["events"]["quarantined"] == sum(x["malformed"] + x["oversized"] for x in inventory["listeners"])
    assert (workdir / "datacenter" / "plans" / "demo.verify.md").is_file()
    assert _processes_mentioning(str(workdir / "emulators")) == []  # no emulator (or java) left behind
