"""migrate verify, objects side: listing against the plan, report files, --strict, --deep, CLI exit codes."""

from __future__ import annotations

import json
import os

import pytest
from test_verify_helpers import build_world
from typer.testing import CliRunner

from migrate.cli import app
from migrate.errors import PlanError
from migrate.hashing import crc32c_of_bytes


def _objects_world(tmp_path, write_config, gcs_client, bucket, **kw):
    return build_world(tmp_path, write_config, gcs_client, bucket=bucket, **kw)


def test_clean_run_matches_and_writes_reports(tmp_path, write_config, gcs_client, bucket):
    w = _objects_world(tmp_path, write_config, gcs_client, bucket)
    rep = w.verify()
    o = rep.objects
    assert rep.ok
    assert (o.planned, o.matched, o.listed) == (6, 6, 6)
    assert o.missing == o.size_mismatch == o.crc32c_mismatch == o.extra == 0
    assert [(li.bucket, li.prefix, li.objects) for li in o.listings] == [(bucket, "audio/", 6)]
    assert w.listing() == []
    doc = json.loads((tmp_path / "plans" / "wave1.verify.json").read_text())
    assert doc["ok"] is True and doc["plan_id"] == w.plan.plan_id and doc["objects"]["matched"] == 6
    md = (tmp_path / "plans" / "wave1.verify.md").read_text()
    assert "PASS" in md and "| Matched (size and CRC32C) | 6 |" in md


def test_overwritten_deleted_and_extra_objects_are_named(tmp_path, write_config, gcs_client, bucket):
    w = _objects_world(tmp_path, write_config, gcs_client, bucket)
    rels = sorted(w.objects)
    changed, deleted = rels[0], rels[1]
    b = gcs_client.bucket(bucket)
    other = bytes(reversed(w.objects[changed]))  # same size, other bytes
    assert len(other) == len(w.objects[changed]) and crc32c_of_bytes(other) != crc32c_of_bytes(w.objects[changed])
    b.blob(w.name(changed)).upload_from_string(other)
    b.blob(w.name(deleted)).delete()
    b.blob("audio/stray/extra.bin").upload_from_string(b"not in the plan")
    b.blob("elsewhere/outside-prefix.bin").upload_from_string(b"not under the prefix: not listed")

    rep = w.verify(show=5)
    o = rep.objects
    assert not rep.ok
    assert (o.crc32c_mismatch, o.size_mismatch, o.missing, o.extra, o.matched) == (1, 0, 1, 1, 4)
    assert o.generation_changed == 1  # the run recorded the generation it wrote
    assert o.examples["crc32c_mismatch"][0].startswith(w.gs(changed) + " (expected crc32c")
    assert o.examples["missing"] == [w.gs(deleted)]
    assert o.examples["extra"] == [f"gs://{bucket}/audio/stray/extra.bin (15 bytes)"]
    listing = w.listing()
    assert listing == sorted(
        [f"* {w.gs(changed)}", f"+ {w.gs(deleted)}", f"- gs://{bucket}/audio/stray/extra.bin"],
        key=lambda line: (line[2:], line[0]),
    )
    assert rep.problem_counts == {"+": 1, "*": 1, "-": 1, "!": 0}


def test_extra_object_fails_only_with_strict(tmp_path, write_config, gcs_client, bucket):
    w = _objects_world(tmp_path, write_config, gcs_client, bucket, n_objects=2)
    gcs_client.bucket(bucket).blob("audio/zz-extra.bin").upload_from_string(b"x")
    lenient = w.verify()
    assert lenient.ok and lenient.objects.extra == 1
    assert w.listing() == [f"- gs://{bucket}/audio/zz-extra.bin"]
    strict = w.verify(strict=True)
    assert not strict.ok and strict.objects.failures() == 1


def test_run_failures_are_errors_and_matches_listed_on_request(tmp_path, write_config, gcs_client, bucket):
    w = _objects_world(tmp_path, write_config, gcs_client, bucket, n_objects=3)
    from migrate.ledger import connect

    rels = sorted(w.objects)
    conn = connect(w.cfg.project.state_dir)
    conn.execute(
        "UPDATE items SET state = 'source-changed', last_error = 'size changed' WHERE object = ?", (w.name(rels[2]),)
    )
    conn.close()
    rep = w.verify(include_matches=True)
    assert not rep.ok
    assert rep.objects.source_changed == 1 and rep.objects.matched == 2
    assert rep.objects.examples["source_changed"] == [f"{w.gs(rels[2])} (source-changed: size changed)"]
    assert w.listing() == [f"= {w.gs(rels[0])}", f"= {w.gs(rels[1])}", f"! {w.gs(rels[2])}"]


def test_deep_catches_bytes_that_no_longer_match_their_listed_crc32c(
    tmp_path, write_config, gcs_client, bucket, emulators
):
    w = _objects_world(tmp_path, write_config, gcs_client, bucket, n_objects=4)
    victim = sorted(w.objects)[1]
    # fake-gcs-server keeps object metadata (crc32c, size) in an xattr of the backing file, so changing the
    # bytes in place leaves the listing untouched: exactly what listing-based verification cannot see.
    backing = emulators.gcs_root / bucket / w.name(victim)
    with open(backing, "r+b") as fh:
        fh.write(b"\xff\x00CORRUPT")
    assert backing.stat().st_size == len(w.objects[victim])

    shallow = w.verify()
    assert shallow.ok and shallow.objects.matched == 4, "listing metadata cannot show this corruption"

    rep = w.verify(deep="100%")
    d = rep.objects.deep
    assert not rep.ok
    assert (d.candidates, d.sampled, d.ok, d.corrupt, d.metadata_mismatch, d.errors) == (4, 4, 3, 1, 1, 0)
    assert d.corrupt_names[0].startswith(w.gs(victim) + " (bytes hash to ")
    assert "listing metadata says" in d.corrupt_names[0]
    assert d.bytes == sum(len(v) for v in w.objects.values())
    assert w.listing() == [f"* {w.gs(victim)}"]


def test_deep_sample_is_seeded_and_sized(tmp_path, write_config, gcs_client, bucket):
    w = _objects_world(tmp_path, write_config, gcs_client, bucket, n_objects=6)
    a = w.verify(deep="2", seed=11).objects.deep
    b = w.verify(deep="34%", seed=11).objects.deep  # ceil(6 * 0.34) = 3
    assert (a.sampled, a.ok, b.sampled, b.ok) == (2, 2, 3, 3)
    assert a.candidates == b.candidates == 6


def test_cli_exit_codes_and_json(tmp_path, write_config, gcs_client, bucket, monkeypatch):
    w = _objects_world(tmp_path, write_config, gcs_client, bucket, n_objects=3)
    runner = CliRunner()
    cfg = str(w.cfg.path)
    ok = runner.invoke(app, ["verify", str(w.plan.path), "--config", cfg, "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True

    by_name = runner.invoke(app, ["verify", "wave1", "--config", cfg])
    assert by_name.exit_code == 0, by_name.output
    assert "everything matches" in by_name.stdout

    gcs_client.bucket(bucket).blob(w.name(sorted(w.objects)[0])).delete()
    bad = runner.invoke(app, ["verify", str(w.plan.path), "--config", cfg])
    assert bad.exit_code == 1
    assert "verification failed: 1 object problem(s)" in bad.stderr and "wave1.verify.txt" in bad.stderr
    assert f"missing: {w.gs(sorted(w.objects)[0])}" in bad.stdout

    bad_deep = runner.invoke(app, ["verify", str(w.plan.path), "--config", cfg, "--deep", "lots"])
    assert bad_deep.exit_code == 2 and "--deep" in bad_deep.stderr

    manifest = w.plan.manifest_path
    os.chmod(manifest, 0o644)
    manifest.write_text(manifest.read_text().replace('"size":100', '"size":101'))
    tampered = runner.invoke(app, ["verify", str(w.plan.path), "--config", cfg])
    assert tampered.exit_code == 2 and "modified after planning" in tampered.stderr
    assert "Traceback" not in tampered.output


def test_objects_the_plan_skipped_as_already_migrated_are_checked_not_extra(tmp_path, write_config, gcs_client, bucket):
    b = gcs_client.bucket(bucket)
    b.blob("audio/old/kept.ogg").upload_from_string(b"migrated by an earlier plan")
    b.blob("audio/old/conflict.ogg").upload_from_string(b"someone else's bytes")
    skipped = [
        {
            "kind": "object",
            "source": "music",
            "relpath": rel,
            "bucket": bucket,
            "object": f"audio/{rel}",
            "size": size,
            "reason": reason,
            "entry": "file",
            "detail": "",
        }
        for rel, size, reason in [
            ("old/kept.ogg", 27, "already-migrated"),
            ("old/gone.ogg", 5, "already-migrated"),
            ("old/conflict.ogg", 99, "conflict"),
            ("old/link.ogg", 0, "symlink"),
        ]
    ]
    w = _objects_world(tmp_path, write_config, gcs_client, bucket, n_objects=2, skipped=skipped)
    rep = w.verify()
    o = rep.objects
    assert (o.planned, o.previously_migrated, o.matched, o.extra) == (2, 2, 3, 0)
    assert (o.missing, o.conflict, o.crc32c_unknown) == (1, 1, 1)  # kept.ogg has no inventory CRC32C here
    assert w.listing() == [f"! gs://{bucket}/audio/old/conflict.ogg", f"+ gs://{bucket}/audio/old/gone.ogg"]
    assert any("compared by size only" in n for n in rep.notes)

    skipped_file = w.plan.path.parent / "wave1.skipped.jsonl"
    skipped_file.write_text(skipped_file.read_text().replace("conflict", "already-migrated"))
    with pytest.raises(PlanError, match="modified after planning"):
        w.verify()
