"""Hostile sources seen by `migrate inventory` (real CLI): anomalies recorded, nothing hangs or crashes.

What happens to the same inputs during `migrate run` is in test_hostile_run.py.
"""

from __future__ import annotations

import os
import sqlite3

from relkit import assert_clean_error, assert_no_traceback, build_hostile_estate, estate_config, run_cli


def _estate(tmp_path):
    return build_hostile_estate(tmp_path / "dc", bucket="acme-audio", topic="plays-t", csv_topic="skips-t")


def test_root_that_does_not_exist_is_a_config_error(tmp_path):
    missing = tmp_path / "nfs" / "not-mounted"
    cfg = estate_config(
        tmp_path,
        bucket="acme-audio",
        topic="plays-t",
        csv_topic="skips-t",
        tree=missing,
        jsonl_glob=str(tmp_path / "*.jsonl"),
        csv_glob=str(tmp_path / "*.csv"),
    )
    res = run_cli("inventory", "--config", cfg)
    assert_clean_error(res, 2, "catalog[audio].root", str(missing), "does not exist")
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").iterdir())


def test_every_hostile_entry_becomes_an_anomaly_and_good_files_are_counted(tmp_path):
    est = _estate(tmp_path)
    res = run_cli("inventory", "--config", est.config, "--hash", "--json", timeout=120)
    assert res.returncode == 0, str(res)
    assert_no_traceback(res)
    (audio,) = res.json()["catalog"]
    assert audio["files"] == len(est.good_files)
    assert audio["bytes"] == sum(len(b) for b in est.good_files.values())
    reasons = {a["relpath"]: a["reason"] for a in audio["anomaly_examples"]}
    assert audio["anomalies"] == len(est.anomalies), reasons
    for rel, word in est.anomalies.items():
        assert word in reasons.get(rel, ""), (rel, reasons)
    assert audio["symlinks"] == 2  # the loop and the file link: recorded, not followed
    # 0-byte files are files, with the CRC32C of nothing
    conn = sqlite3.connect(tmp_path / "dc" / "state" / "ledger.sqlite")
    rows = dict(conn.execute("SELECT relpath, crc32c FROM files WHERE kind='file' AND size=0").fetchall())
    assert set(rows) == {"empty.ogg", "nested/empty too.flac"}
    assert set(rows.values()) == {"AAAAAA=="}


def test_symlink_loop_followed_is_an_anomaly_not_a_hang(tmp_path):
    est = _estate(tmp_path)
    text = est.config.read_text().replace('prefix = "audio/"', 'prefix = "audio/"\nfollow_symlinks = true')
    est.config.write_text(text)
    res = run_cli("inventory", "--config", est.config, "--json", timeout=120)
    assert res.returncode == 0, str(res)
    (audio,) = res.json()["catalog"]
    reasons = {a["relpath"]: a["reason"] for a in audio["anomaly_examples"]}
    assert "loop" in reasons.get("loop", ""), reasons
    # a followed link to a file is a file; the tree's files are not counted twice through the loop
    assert audio["files"] == len(est.good_files) + 1


def test_event_log_hostile_lines_are_counted_per_kind(tmp_path):
    est = _estate(tmp_path)
    res = run_cli("inventory", "--config", est.config, "--json", timeout=120)
    assert res.returncode == 0, str(res)
    listeners = {x["name"]: x for x in res.json()["listeners"]}
    plays, skips = listeners["plays"], listeners["skips"]
    assert plays["events"] == len(est.jsonl_valid_ids)
    assert plays["oversized"] == est.jsonl_oversized
    assert plays["malformed"] == est.jsonl_bad
    anomalies = {a["path"]: a["reason"] for a in plays["anomalies"]}
    assert "truncated gzip" in anomalies.get(str(est.truncated_log), ""), anomalies
    assert skips["events"] == len(est.csv_valid_ids)
    assert skips["malformed"] == est.csv_bad


def test_listener_path_that_is_a_fifo_or_unreadable_is_an_anomaly(tmp_path):
    est = _estate(tmp_path)
    os.mkfifo(tmp_path / "dc" / "logs" / "plays" / "c-fifo.jsonl.gz")
    res = run_cli("inventory", "--config", est.config, "--json", timeout=120)
    assert res.returncode == 0, str(res)
    plays = next(x for x in res.json()["listeners"] if x["name"] == "plays")
    anomalies = {os.path.basename(a["path"]): a["reason"] for a in plays["anomalies"]}
    assert "not a regular file" in anomalies.get("c-fifo.jsonl.gz", ""), anomalies
    assert plays["events"] == len(est.jsonl_valid_ids)


def test_names_that_look_like_terminal_markup_are_shown_verbatim(tmp_path):
    tree = tmp_path / "tree"
    (tree / "x[").mkdir(parents=True)
    (tree / "x[" / "y]z.ogg").write_bytes(b"OggS" * 100)  # relpath 'x[/y]z.ogg' looks like a closing tag
    (tree / "[bold] live.ogg").write_bytes(b"OggS" * 200)
    cfg = estate_config(
        tmp_path,
        bucket="acme-audio",
        topic="plays-t",
        csv_topic="skips-t",
        tree=tree,
        jsonl_glob=str(tmp_path / "*.jsonl"),
        csv_glob=str(tmp_path / "*.csv"),
    )
    res = run_cli("inventory", "--config", cfg)  # the human-readable tables, not --json
    assert res.returncode == 0, str(res)
    assert_no_traceback(res)
    assert "x[/y]z.ogg" in res.stdout and "[bold] live.ogg" in res.stdout, str(res)
