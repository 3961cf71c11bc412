"""Config validation: every operator mistake is one line naming the key and the fix, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from migrate.config import load_config
from migrate.errors import ConfigError

GOOD = """
[project]
id = "acme-music-prod"
state_dir = "state"

[[catalog]]
name = "audio"
root = "{root}"
include = ["**/*.ogg"]
bucket = "acme-catalog-audio"
prefix = "audio"

[[listeners]]
name = "plays"
paths = ["logs/*.jsonl.gz"]
topic = "listener-plays"
event_id_field = "event_id"

[transfer]
workers = 4
batch_max_bytes = "512MiB"
bandwidth_limit = "200MiB/s"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "tree").mkdir(exist_ok=True)
    path = tmp_path / "migrate.toml"
    path.write_text(text.replace("{root}", str(tmp_path / "tree")))
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value.lines()


def test_good_config_loads_with_units_and_relative_paths(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.transfer.batch_max_bytes == 512 * 1024**2
    assert cfg.transfer.bandwidth_limit == 200 * 1024**2
    assert cfg.catalog[0].prefix == "audio/"
    assert cfg.project.state_dir == tmp_path / "state"
    assert cfg.listeners[0].paths == (str(tmp_path / "logs/*.jsonl.gz"),)
    assert cfg.digest() == load_config(write(tmp_path, GOOD)).digest()


@pytest.mark.parametrize(
    ("edit", "key", "fix_word"),
    [
        (lambda t: t.replace("workers = 4", "workerz = 4"), "transfer.workerz", "did you mean 'workers'"),
        (lambda t: t.replace("workers = 4", 'workers = "four"'), "transfer.workers", "integer"),
        (lambda t: t.replace('"512MiB"', '"lots"'), "transfer.batch_max_bytes", "GiB"),
        (lambda t: t.replace('"200MiB/s"', '"fast"'), "transfer.bandwidth_limit", "200MiB/s"),
        (lambda t: t.replace('topic = "listener-plays"\n', ""), "listeners[plays].topic", "add topic"),
        (lambda t: t.replace('name = "plays"', 'name = "audio"'), "listeners[audio].name", "unique"),
        (lambda t: t.replace('bucket = "acme-catalog-audio"', 'bucket = "Bad_Bucket!"'), "bucket", "lowercase"),
        (lambda t: t.replace('prefix = "audio"', 'prefix = "../up"'), "prefix", "without '..'"),
        (lambda t: t.replace("[transfer]", '[transfer]\nconflict_policy = "maybe"'), "conflict_policy", "skip"),
        (lambda t: t.replace('id = "acme-music-prod"', 'id = "X"'), "project.id", "lowercase"),
    ],
)
def test_each_mistake_names_key_and_fix(tmp_path, edit, key, fix_word):
    lines = problems(tmp_path, edit(GOOD))
    assert len(lines) == 1, lines
    assert key in lines[0] and "fix:" in lines[0] and fix_word in lines[0], lines[0]


def test_missing_root_is_named(tmp_path):
    text = GOOD.replace('root = "{root}"', 'root = "/srv/nowhere/audio"')
    (line,) = problems(tmp_path, text)
    assert "catalog[audio].root" in line and "/srv/nowhere/audio" in line and "does not exist" in line


def test_all_problems_reported_together(tmp_path):
    text = GOOD.replace("workers = 4", "workerz = 4").replace('topic = "listener-plays"\n', "")
    assert len(problems(tmp_path, text)) == 2


def test_malformed_toml_and_missing_file(tmp_path):
    (line,) = problems(tmp_path, GOOD + "\n[transfer\n")
    assert "malformed TOML" in line
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml")
    assert "not found" in info.value.one_line() and "--config" in info.value.one_line()


def test_env_var_selects_config(tmp_path, monkeypatch):
    monkeypatch.setenv("MIGRATE_CONFIG", str(write(tmp_path, GOOD)))
    assert load_config().project.id == "acme-music-prod"


@pytest.mark.parametrize("text", ["[transfer\n", GOOD.replace("workers = 4", "workers = -1")])
def test_cli_prints_one_line_no_traceback_exit_2(tmp_path, text):
    path = write(tmp_path, text)
    out = subprocess.run(
        [sys.executable, "-m", "migrate", "inventory", "--config", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "error:" in out.stderr
    assert len([ln for ln in out.stderr.splitlines() if ln.strip()]) <= 2


def test_error_does_not_dump_config_or_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "hunter2-secret")
    text = GOOD.replace("workers = 4", 'workers = "x"') + '\n# api_key = "hunter2-secret"\n'
    path = write(tmp_path, text)
    out = subprocess.run(
        [sys.executable, "-m", "migrate", "inventory", "--config", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "hunter2" not in out.stderr + out.stdout


def test_version_flag():
    out = subprocess.run([sys.executable, "-m", "migrate", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("migrate ")


# --- endpoints (issue 12 §3) ---------------------------------------------------------------------


def test_endpoints_are_validated(write_config) -> None:
    from migrate.config import load_config as load
    from migrate.errors import ConfigError

    path = write_config(
        listeners=[{"name": "plays", "paths": ["/x/*.jsonl"], "topic": "plays-events"}],
        pubsub={"endpoint": "https://us-east1-pubsub.googleapis.com"},
        storage={"endpoint": "storage.us-east1.rep.googleapis.com"},
    )
    with pytest.raises(ConfigError) as err:
        load(path)
    lines = err.value.lines()
    assert any(line.startswith(f"{path}: pubsub.endpoint: ") and "HOST[:PORT]" in line for line in lines), lines
    assert any(line.startswith(f"{path}: storage.endpoint: ") and "https URL" in line for line in lines), lines


def test_endpoints_reach_the_clients_as_client_options(write_config, real_cloud_adc) -> None:
    """Regional endpoints (needed for ordered delivery: https://cloud.google.com/pubsub/docs/ordering) are the
    api_endpoint client option of the clients the product builds."""
    from migrate import clients
    from migrate.config import load_config as load
    from migrate.targets.pubsub import EventPublisher, topic_path

    cfg = load(
        write_config(
            listeners=[{"name": "plays", "paths": ["/x/*.jsonl"], "topic": "plays-events"}],
            pubsub={"endpoint": "us-east1-pubsub.googleapis.com:443"},
            storage={"endpoint": "https://storage.us-east1.rep.googleapis.com"},
        )
    )
    pub = EventPublisher(
        topic_path(cfg.project.id, "plays-events"), cfg.pubsub, cfg.transfer, on_done=lambda *a: None, lanes=1
    )
    try:
        assert pub._client.api_endpoint == "us-east1-pubsub.googleapis.com:443"
    finally:
        pub.close()
    assert clients.subscriber_client(endpoint=cfg.pubsub.endpoint).api_endpoint == cfg.pubsub.endpoint
    gcs = clients.gcs_client(cfg.project.id, endpoint=cfg.storage.endpoint)
    assert gcs.api_endpoint == "https://storage.us-east1.rep.googleapis.com"
    assert clients.publisher_client().api_endpoint.startswith("pubsub.googleapis.com")  # unset: the global one
