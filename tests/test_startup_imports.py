"""Start-up cost of the commands an operator runs on every batch: inventory, plan and run talk to GCS through
the lean JSON client (targets/gcs.py), so none of them loads the heavy Google libraries.

Each of those libraries costs a tenth to a third of a second of CPU per command on import (gRPC and protobuf
behind google.api_core's exceptions, google.cloud.storage, requests; tenacity, which loads asyncio, a tenth),
which the end-to-end bench pays three times. The commands run in a subprocess against the emulator, as an
operator runs them, and the test checks both that they did their work and which modules they loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import files

from migrate.targets.gcs import PARTS_PREFIX

# tenacity loads asyncio: it is imported when a call first fails, and these runs see no failure
HEAVY = (
    "google.cloud.storage",
    "google.api_core.exceptions",
    "grpc",
    "google.protobuf",
    "requests",
    "pydantic",
    "tenacity",
)

_DRIVER = """
import json, sys
from migrate.cli import main
sys.argv = ["migrate", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = %r
print(json.dumps({"code": code, "loaded": sorted(m for m in heavy if m in sys.modules)}), file=sys.stderr)
"""


def _cli(*args: str) -> tuple[dict, dict]:
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER % (HEAVY,), *args], capture_output=True, text=True, timeout=180
    )
    verdict = json.loads(done.stderr.strip().splitlines()[-1])
    return json.loads(done.stdout), verdict


def test_inventory_plan_and_run_load_no_heavy_google_library(tmp_path, write_config, bucket, gcs_client):
    tree = tmp_path / "tree"
    files.write_tree(tree, {f"d{i % 3}/f{i}.bin": bytes([i]) * (i + 1) for i in range(12)})
    config = write_config(catalog=[{"name": "cat", "root": str(tree), "bucket": bucket, "prefix": "cat/"}])

    inventory, verdict = _cli("inventory", "-c", str(config), "--json")
    assert verdict == {"code": 0, "loaded": []}
    assert sum(int(c["files"]) for c in inventory["catalog"]) == 12

    _, verdict = _cli("plan", "-c", str(config), "--name", "p", "--json")
    assert verdict == {"code": 0, "loaded": []}

    run, verdict = _cli("run", "-c", str(config), str(tmp_path / "plans" / "p.plan.json"), "--json")
    assert verdict == {"code": 0, "loaded": []}
    assert run["status"] == "ok"
    names = {b.name for b in gcs_client.list_blobs(bucket) if not b.name.startswith(PARTS_PREFIX)}
    assert names == {f"cat/d{i % 3}/f{i}.bin" for i in range(12)}


def test_the_check_sees_a_heavy_library():
    """The same driver reports a library that was loaded: the empty lists above are observed, not assumed."""
    code = _DRIVER.replace("from migrate.cli import main", "import requests\nfrom migrate.cli import main") % (HEAVY,)
    done = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, timeout=60)
    assert json.loads(done.stderr.strip().splitlines()[-1]) == {"code": 0, "loaded": ["requests"]}
