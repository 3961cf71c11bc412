"""What a user installs: `pip install .` into a fresh virtualenv, no dev extras, then the whole job
through that install's own `migrate` executable, on the emulators.

The project's dev environment cannot show a missing runtime dependency (pytest alone pulls in
`packaging`, which google-auth's urllib3 transport needs), so this builds a new one. pip reuses its
cache, and the sources are copied first so the build never writes into the working tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from files import write_log, write_tree

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def user_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `migrate` executable of a fresh virtualenv that has only `pip install .` in it."""
    root = tmp_path_factory.mktemp("user-install")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "migrate", src / "migrate", ignore=shutil.ignore_patterns("__pycache__"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(src)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # nothing of the dev environment leaks in: pytest (which brings packaging) is absent
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import pytest"], capture_output=True)
    assert probe.returncode != 0
    return venv / "bin" / "migrate"


def _migrate(exe: Path, config: Path, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "VIRTUAL_ENV"))}
    done = subprocess.run(
        [str(exe), *args, "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=config.parent,
        timeout=600,
    )
    assert done.returncode == 0, f"migrate {args[0]} exited {done.returncode}: {done.stderr[-2000:]}"
    return json.loads(done.stdout)


def test_pip_install_without_extras_runs_the_whole_job(user_install, tmp_path, write_config, bucket, topic, gcs_client):
    # plan lists the destination bucket, which must exist: that listing is what needs the urllib3 transport
    gcs_client.bucket(bucket).blob("c/already-there.txt").upload_from_string(b"old")
    tree = write_tree(tmp_path / "tree", {f"d/f{i}.txt": f"file {i}\n".encode() * (i + 1) for i in range(5)})
    logs = tmp_path / "logs"
    write_log(logs / "plays.jsonl", [json.dumps({"id": f"e{i}"}).encode() for i in range(20)], gz=False)
    config = write_config(
        catalog=[{"name": "cat", "root": str(tree), "bucket": bucket, "prefix": "c/"}],
        listeners=[{"name": "plays", "paths": [str(logs / "*.jsonl")], "topic": topic, "event_id_field": "id"}],
    )
    _migrate(user_install, config, "inventory", "--hash")
    _migrate(user_install, config, "plan", "--name", "wave1")
    plan_path = str(tmp_path / "plans" / "wave1.plan.json")
    run = _migrate(user_install, config, "run", plan_path)
    assert run["status"] == "ok"
    assert run["objects"]["uploaded"] == 5
    verify = _migrate(user_install, config, "verify", plan_path)
    assert verify["ok"] is True
    names = {b.name for b in gcs_client.list_blobs(bucket, prefix="c/")}
    assert {f"c/d/f{i}.txt" for i in range(5)} <= names
