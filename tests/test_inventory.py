"""Inventory numbers equal the generator's ground truth; re-inventory re-hashes only changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from migrate.config import load_config
from migrate.hashing import IdDigest, crc32c_of_file
from migrate.inventory import run_inventory
from migrate.ledger import connect
from migrate.local.datagen import generate


@pytest.fixture(scope="module")
def dc(tmp_path_factory):
    root = tmp_path_factory.mktemp("dc")
    return generate(root, scale=0.08, seed=11)


def _fresh(dc, tmp_path):
    cfg = load_config(dc.config_path)
    conn = connect(tmp_path / "state")
    return cfg, conn


def test_catalog_numbers_match_ground_truth(dc, tmp_path):
    cfg, conn = _fresh(dc, tmp_path)
    rep = run_inventory(cfg, conn, hash=True)
    by_name = {c.name: c for c in rep.catalog}
    for name, truth in dc.catalog.items():
        got = by_name[name]
        assert (got.files, got.bytes) == (truth.files, truth.bytes), name
        assert got.symlinks == truth.symlinks, name
        assert got.anomalies == len(truth.anomalies), name
        assert got.excluded == truth.excluded, name
        assert got.added == truth.files
        assert got.largest[0]["size"] == truth.largest
    audio = by_name["audio"]
    reasons = {a["relpath"]: a["reason"] for a in audio.anomaly_examples}
    for rel, keyword in dc.catalog["audio"].anomalies.items():
        assert keyword in reasons[rel], (rel, reasons)
    assert sum(d["files"] for d in audio.size_distribution) == audio.files


def test_crc32c_recorded_matches_file_content(dc, tmp_path):
    cfg, conn = _fresh(dc, tmp_path)
    run_inventory(cfg, conn, hash=True)
    rows = conn.execute("SELECT source, relpath, crc32c FROM files WHERE kind='file'").fetchall()
    assert rows and all(r["crc32c"] for r in rows)
    for r in rows[:20]:
        root = cfg.catalog_source(r["source"]).root
        assert crc32c_of_file(root / r["relpath"])[0] == r["crc32c"]


def test_listener_numbers_match_ground_truth(dc, tmp_path):
    cfg, conn = _fresh(dc, tmp_path)
    rep = run_inventory(cfg, conn)
    (plays,) = rep.listeners
    logs = dc.logs["plays"]
    assert plays.files == len(logs)
    assert plays.events == sum(lt.events for lt in logs)
    assert plays.malformed == sum(len(lt.malformed_lines) for lt in logs)
    assert plays.min_time.startswith("2026-01-01")
    for lt in logs:
        row = conn.execute("SELECT events, id_digest FROM event_files WHERE path=?", (str(lt.path),)).fetchone()
        want = IdDigest()
        for eid in lt.event_ids:
            want.add(eid)
        assert (row["events"], row["id_digest"]) == (want.count, want.hex)
        lines = [r[0] for r in conn.execute("SELECT line FROM bad_lines WHERE path=? ORDER BY line", (str(lt.path),))]
        assert lines == lt.malformed_lines


def test_reinventory_rehashes_exactly_the_changed_files(tmp_path):
    est = generate(tmp_path / "dc", scale=0.05, seed=3, awkward=False)
    cfg = load_config(est.config_path)
    conn = connect(tmp_path / "state")
    first = run_inventory(cfg, conn, hash=True)
    assert sum(c.rehashed for c in first.catalog) == est.total_files
    audio_root = cfg.catalog_source("audio").root
    tracks = sorted(p for p in audio_root.rglob("*.ogg") if p.stat().st_size > 0 and ".snapshot" not in p.parts)
    tracks[0].write_bytes(tracks[0].read_bytes() + b"x")  # size change
    os.utime(tracks[1], ns=(1, 1))  # mtime change
    data = tracks[2].read_bytes()  # inode change, same size and mtime
    st = tracks[2].stat()
    fresh = tracks[2].with_name("fresh.tmp")
    fresh.write_bytes(data)
    os.utime(fresh, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(fresh, tracks[2])  # a new inode while the old one still exists
    removed = tracks[3]
    removed.unlink()
    (audio_root / "new track.ogg").write_bytes(b"OggS new")
    second = run_inventory(cfg, conn, hash=True)
    audio = next(c for c in second.catalog if c.name == "audio")
    assert audio.rehashed == 4  # 3 changed + 1 added
    assert (audio.changed, audio.added, audio.removed) == (3, 1, 1)
    assert audio.removed_examples == [removed.relative_to(audio_root).as_posix()]
    assert sum(c.rehashed for c in second.catalog if c.name != "audio") == 0
    third = run_inventory(cfg, conn, hash=True)
    assert sum(c.rehashed for c in third.catalog) == 0


def test_unreadable_fifo_is_an_anomaly_not_a_crash(tmp_path):
    est = generate(tmp_path / "dc", scale=0.02, seed=5, awkward=False)
    cfg = load_config(est.config_path)
    fifo = cfg.catalog_source("audio").root / "stuck.ogg"
    os.mkfifo(fifo)
    rep = run_inventory(cfg, connect(tmp_path / "state"), hash=True)
    audio = next(c for c in rep.catalog if c.name == "audio")
    assert {"relpath": "stuck.ogg", "reason": "not a regular file (FIFO)"} in audio.anomaly_examples
    assert audio.files == est.catalog["audio"].files


def test_symlink_loop_with_follow_does_not_hang(tmp_path):
    root = tmp_path / "tree"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.ogg").write_bytes(b"1")
    os.symlink("..", root / "a" / "up")
    os.symlink("a", root / "again")
    cfg_path = tmp_path / "migrate.toml"
    cfg_path.write_text(
        f'[project]\nid = "demo-project"\n[[catalog]]\nname = "t"\nroot = "{root}"\nbucket = "bkt-t"\n'
        "follow_symlinks = true\n"
    )
    rep = run_inventory(load_config(cfg_path), connect(tmp_path / "state"))
    (t,) = rep.catalog
    assert t.files == 1
    assert t.anomalies == 2  # both links lead to directories already visited
    assert all("loop" in a["reason"] for a in t.anomaly_examples)


def test_files_under_a_directory_named_in_another_encoding_are_anomalies(tmp_path):
    root = tmp_path / "tree"
    odd = os.fsencode(root) + b"/caf\xe9"  # Latin-1, not UTF-8
    os.makedirs(odd + b"/sub")
    for name in (b"/a.ogg", b"/sub/b.ogg"):
        with open(odd + name, "wb") as fh:
            fh.write(b"1")
    (root / "fine.ogg").write_bytes(b"22")
    cfg_path = tmp_path / "migrate.toml"
    cfg_path.write_text(f'[project]\nid = "demo-project"\n[[catalog]]\nname = "t"\nroot = "{root}"\nbucket = "bkt-t"\n')
    (t,) = run_inventory(load_config(cfg_path), connect(tmp_path / "state")).catalog
    assert (t.files, t.bytes, t.anomalies) == (1, 2, 2)
    assert {a["relpath"] for a in t.anomaly_examples} == {"caf\\xe9/a.ogg", "caf\\xe9/sub/b.ogg"}
    assert all("not valid UTF-8" in a["reason"] for a in t.anomaly_examples)


def test_cli_inventory_json_and_exit_codes(dc, tmp_path):
    env = dict(os.environ, MIGRATE_CONFIG=str(dc.config_path))
    cfg_text = Path(dc.config_path).read_text().replace('state_dir = ".migrate"', f'state_dir = "{tmp_path / "s"}"')
    cfg = tmp_path / "migrate.toml"
    cfg.write_text(
        cfg_text.replace('root = "catalog/', f'root = "{dc.root}/catalog/').replace('"logs/', f'"{dc.root}/logs/')
    )
    out = subprocess.run(
        [sys.executable, "-m", "migrate", "inventory", "--config", str(cfg), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert sum(c["files"] for c in doc["catalog"]) == dc.total_files
    bad = tmp_path / "bad.toml"
    bad.write_text(cfg.read_text().replace("[transfer]", "[transfer]\nworkerz = 3"))
    out = subprocess.run(
        [sys.executable, "-m", "migrate", "inventory", "--config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert "transfer.workerz" in out.stderr and "did you mean 'workers'" in out.stderr
    assert "Traceback" not in out.stderr


def test_listener_time_span_is_ordered_by_time_not_text(tmp_path, write_config):
    """'…:00.5Z' sorts before '…:00Z' as text; the span across files must compare times."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.jsonl").write_text(
        '{"id": "1", "ts": "2024-05-01T00:00:00.5Z"}\n{"id": "2", "ts": "2024-05-01T00:00:09Z"}\n'
    )
    (logs / "b.jsonl").write_text(
        '{"id": "3", "ts": "2024-05-01T00:00:00Z"}\n{"id": "4", "ts": "2024-05-01T00:00:09.25Z"}\n'
    )
    listener = {"name": "plays", "paths": [f"{logs}/*.jsonl"], "topic": "plays", "event_time_field": "ts"}
    cfg = load_config(write_config(listeners=[listener]))
    rep = run_inventory(cfg, connect(tmp_path / "state"))
    (plays,) = rep.listeners
    assert (plays.min_time, plays.max_time) == ("2024-05-01T00:00:00Z", "2024-05-01T00:00:09.25Z")


def test_first_inventory_through_the_bulk_writer_stores_the_same_rows(dc, tmp_path, monkeypatch):
    """A large first inventory hands its inserts to a second process (migrate.ledger.bulk): same rows, same report."""
    import migrate.inventory as inventory

    cfg = load_config(dc.config_path)
    inline = connect(tmp_path / "inline")
    rep_inline = run_inventory(cfg, inline)
    monkeypatch.setattr(inventory, "BATCH", 7)
    monkeypatch.setattr(inventory, "BULK_AFTER", 0)
    bulk = connect(tmp_path / "bulk")
    rep_bulk = run_inventory(cfg, bulk)
    columns = "source, relpath, kind, size, mtime_ns, inode, crc32c, reason"
    rows = [c.execute(f"SELECT {columns} FROM files ORDER BY source, relpath").fetchall() for c in (inline, bulk)]
    assert len(rows[1]) > 7 and [tuple(r) for r in rows[0]] == [tuple(r) for r in rows[1]]
    strip = [dict(c.__dict__) for c in rep_inline.catalog], [dict(c.__dict__) for c in rep_bulk.catalog]
    assert strip[0] == strip[1]
    # the writer loads a ledger with no files yet without its secondary index, then builds it again
    indexes = [
        c.execute("SELECT name, sql FROM sqlite_master WHERE tbl_name='files'").fetchall() for c in (inline, bulk)
    ]
    assert "files_seen" in {r[0] for r in indexes[1]} and sorted(map(tuple, indexes[0])) == sorted(
        map(tuple, indexes[1])
    )


def test_bulk_writer_failure_is_a_ledger_error(tmp_path):
    """The child's SQLite error comes back as one LedgerError naming it."""
    from migrate.ledger import LedgerError
    from migrate.ledger.bulk import BulkWriter

    conn = connect(tmp_path / "state")
    path = next(r[2] for r in conn.execute("PRAGMA database_list") if r[1] == "main")
    writer = BulkWriter(path, "INSERT INTO no_such_table VALUES(?)")
    with pytest.raises(LedgerError, match="no_such_table"):
        writer.write([(1,)])
        writer.close()
