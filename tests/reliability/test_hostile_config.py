"""Hostile config files: every command answers with one clear line, exit 2, no traceback, no dump.

Drives the real CLI. The config never gets as far as touching a target, so no emulator is needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from relkit import assert_clean_error, run_cli

COMMANDS = ["inventory", "plan", "preflight", "run", "verify"]
SENTINEL = "s3cr3t-sentinel-value-7d1f"


def good_config(tmp_path: Path) -> str:
    tree = tmp_path / "tree"
    tree.mkdir(exist_ok=True)
    (tree / "a.ogg").write_bytes(b"OggS")
    return f"""
[project]
id = "test-project"
state_dir = "{tmp_path / "state"}"
plans_dir = "{tmp_path / "plans"}"

[[catalog]]
name = "audio"
root = "{tree}"
bucket = "acme-catalog-audio"
prefix = "audio/"

[targets]
labels = {{ owner = "{SENTINEL}" }}

[transfer]
workers = 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "migrate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def cmd_args(command: str, cfg: Path) -> list[str]:
    extra = {"plan": ["--name", "p1"], "run": ["p1"], "verify": ["p1"]}.get(command, [])
    return [command, "--config", str(cfg), *extra]


@pytest.mark.parametrize("command", COMMANDS)
def test_malformed_toml_is_one_line_exit_2(tmp_path, command):
    text = good_config(tmp_path).replace("workers = 2", "workers = = 2")
    cfg = write(tmp_path, text)
    res = run_cli(*cmd_args(command, cfg))
    line = assert_clean_error(res, 2, "malformed TOML", str(cfg))
    assert "line" in line  # points at the line to fix
    assert SENTINEL not in res.output  # the file's content is not echoed


@pytest.mark.parametrize("command", COMMANDS)
def test_mistyped_key_names_the_key_and_the_fix(tmp_path, command):
    cfg = write(tmp_path, good_config(tmp_path).replace("workers = 2", "wokers = 2"))
    res = run_cli(*cmd_args(command, cfg))
    assert_clean_error(res, 2, "transfer.wokers", "did you mean 'workers'")
    assert SENTINEL not in res.output


def test_unknown_table_and_key_are_all_reported_in_one_pass(tmp_path):
    text = good_config(tmp_path) + "\n[tranfser]\nworkers = 3\n\n[pubsub]\npublish_timout = 5\n"
    cfg = write(tmp_path, text)
    res = run_cli("inventory", "--config", cfg)
    lines = assert_clean_error(res, 2, "tranfser", "pubsub.publish_timout", "did you mean 'publish_timeout'")
    assert len(res.error_lines()) == 2, lines
    assert SENTINEL not in res.output


def test_wrong_type_shows_a_short_value_not_the_file(tmp_path):
    long_value = SENTINEL * 20
    cfg = write(tmp_path, good_config(tmp_path).replace("workers = 2", f'workers = "{long_value}"'))
    res = run_cli("inventory", "--config", cfg)
    line = assert_clean_error(res, 2, "transfer.workers", "integer")
    assert long_value not in line  # the value is cut, never dumped whole
    assert len(line) < 400


def test_config_not_utf8_and_missing_config(tmp_path):
    cfg = tmp_path / "migrate.toml"
    cfg.write_bytes(b'[project]\nid = "caf\xe9"\n')
    assert_clean_error(run_cli("inventory", "--config", cfg), 2, "not UTF-8")
    res = run_cli("inventory", "--config", tmp_path / "nope.toml")
    assert_clean_error(res, 2, "nope.toml", "not found")


def test_config_path_is_a_directory(tmp_path):
    res = run_cli("inventory", "--config", tmp_path)
    assert_clean_error(res, 2, str(tmp_path))


def test_errors_never_echo_the_environment(tmp_path):
    env = {
        "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / f"{SENTINEL}-sa.json"),
        "MIGRATE_DB_PASSWORD": SENTINEL + "-pw",
        "MIGRATE_CONFIG": str(tmp_path / "missing-from-env.toml"),
    }
    res = run_cli("inventory", env=env)
    assert_clean_error(res, 2, "missing-from-env.toml")  # the config path it used is named: that is the fix
    assert SENTINEL not in res.output
    cfg = write(tmp_path, good_config(tmp_path).replace("workers = 2", "workers = -1"))
    res = run_cli("inventory", "--config", cfg, env=env)
    assert_clean_error(res, 2, "transfer.workers")
    assert SENTINEL not in res.output
