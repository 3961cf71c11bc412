"""`migrate plan` against a real fake-gcs-server: determinism, coverage, batching, deltas, conflicts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from files import write_tree

from migrate.config import load_config
from migrate.errors import PlanError
from migrate.inventory import run_inventory
from migrate.ledger import connect
from migrate.ledger.items import register_items
from migrate.plan import load_plan
from migrate.planning.planner import make_plan

PLAN_FILES = ("plan", "manifest", "skipped", "report", "tfvars")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _setup(write_config, tmp_path, bucket, files, *, hash=True, prefix="data/", **sections):
    root = write_tree(tmp_path / "src", files)
    cfg = load_config(
        write_config(catalog=[{"name": "src", "root": str(root), "bucket": bucket, "prefix": prefix}], **sections)
    )
    conn = connect(cfg.project.state_dir)
    run_inventory(cfg, conn, hash=hash)
    return cfg, conn


def _objects(result) -> list[dict]:
    return [it for it in _jsonl(result.paths["manifest"]) if it["kind"] == "object"]


def _sample_files(n: int = 10) -> dict[str, bytes]:
    return {f"dir{i % 3}/file-{i:02d}.bin": bytes([i]) * (100 + i) for i in range(n)}


# --- determinism and coverage on the generated estate ------------------------------------------


@pytest.fixture
def estate_plan(estate, gcs_client):
    cfg = load_config(estate.config_path)
    conn = connect(cfg.project.state_dir)
    run_inventory(cfg, conn, hash=True)
    return cfg, conn


def test_planning_the_same_tree_twice_gives_byte_identical_files(estate_plan, gcs_client):
    cfg, conn = estate_plan
    first = make_plan(cfg, conn, "wave1", gcs_client=gcs_client)
    before = {k: first.paths[k].read_bytes() for k in PLAN_FILES}
    second = make_plan(cfg, conn, "wave1", gcs_client=gcs_client)
    after = {k: second.paths[k].read_bytes() for k in PLAN_FILES}
    assert first.plan_id == second.plan_id
    for k in PLAN_FILES:
        assert before[k] == after[k], k
    plan = load_plan(first.paths["plan"])  # intact and loadable by `run`
    assert plan.item_count == first.summary["objects"]["files"] + first.summary["events"]["files"]
    assert plan.doc["snapshot_id"] == first.snapshot_id
    assert plan.doc["config_digest"] == cfg.digest()


def test_every_inventoried_entry_is_in_one_batch_or_skipped_with_a_reason(estate, estate_plan, gcs_client):
    cfg, conn = estate_plan
    result = make_plan(cfg, conn, "cover", gcs_client=gcs_client)
    items = _jsonl(result.paths["manifest"])
    skipped = _jsonl(result.paths["skipped"])
    planned = [(i["source"], i["relpath"]) for i in items]
    dropped = [(s["source"], s["relpath"]) for s in skipped]
    assert all(s["reason"] and s["detail"] for s in skipped)
    inventoried = [(r[0], r[1]) for r in conn.execute("SELECT source, relpath FROM files")]
    inventoried += [(r[0], r[1]) for r in conn.execute("SELECT source, path FROM event_files")]
    assert len(planned) + len(dropped) == len(inventoried)
    assert sorted(planned + dropped) == sorted(inventoried)
    # ground truth: every regular file is planned, anomalies and symlinks are skipped with their reason
    assert result.summary["objects"]["files"] == estate.total_files
    assert result.summary["objects"]["bytes"] == estate.total_bytes
    reasons = {s["reason"] for s in skipped}
    assert reasons == {"anomaly", "symlink"}
    assert sum(s["reason"] == "anomaly" for s in skipped) == len(estate.catalog["audio"].anomalies)
    assert result.summary["events"]["events"] == estate.events()
    # batches: positive, non-decreasing in manifest order, one per log file
    batches = [i["batch"] for i in items]
    assert batches == sorted(batches) and batches[0] == 1
    logs = [i for i in items if i["kind"] == "events"]
    assert len({i["batch"] for i in logs}) == len(logs) == len(estate.logs["plays"])
    assert [i["seq"] for i in items] == list(range(1, len(items) + 1))


def test_report_covers_every_section_and_names_the_anomalies(estate, estate_plan, gcs_client):
    cfg, conn = estate_plan
    result = make_plan(cfg, conn, "report", gcs_client=gcs_client)
    md = result.paths["report"].read_text(encoding="utf-8")
    for heading in (
        "## Catalog sources",
        "## Storage classes and monthly cost",
        "## Listener logs to Pub/Sub",
        "## Skipped",
        "## Anomalies and names GCS would reject",
        "## Estimates",
        "## Target resources that must exist",
    ):
        assert heading in md, heading
    assert "bad-\\xff\\xfe-name.ogg" in md
    assert "line\\nbreak.ogg" in md
    assert "GCS allows at most 1024" in md
    assert "assumed 1 Gbit/s" in md
    for b in estate.buckets.values():
        assert f"`{b}`" in md
    assert f"`{estate.topics['plays']}-migrate-verify`" in md
    # the estate's buckets were never created: the report says so
    assert all(not b["exists"] for b in result.summary["buckets"])


# --- batching -----------------------------------------------------------------------------------


def test_batch_limits_hold_and_a_large_file_travels_alone(write_config, tmp_path, bucket, gcs_client):
    files = {f"small-{i:02d}": b"x" * 300 for i in range(8)}
    files["big"] = b"y" * 5000
    cfg, conn = _setup(write_config, tmp_path, bucket, files, transfer={"batch_max_files": 3, "batch_max_bytes": 1000})
    result = make_plan(cfg, conn, "b", gcs_client=gcs_client)
    items = _objects(result)
    assert len(items) == 9
    by_batch: dict[int, list[dict]] = {}
    for it in items:
        by_batch.setdefault(it["batch"], []).append(it)
    for members in by_batch.values():
        assert len(members) <= 3
        if len(members) > 1:
            assert sum(m["size"] for m in members) <= 1000
    (big,) = [it for it in items if it["relpath"] == "big"]
    assert [m["relpath"] for m in by_batch[big["batch"]]] == ["big"]
    assert result.summary["objects"]["batches"] == len(by_batch)
    assert result.summary["objects"]["files_over_batch_max_bytes"] == 1


# --- deltas against the destination -----------------------------------------------------------


def test_after_half_the_objects_exist_a_new_plan_holds_exactly_the_other_half(
    write_config, tmp_path, bucket, gcs_client
):
    files = _sample_files(10)
    cfg, conn = _setup(write_config, tmp_path, bucket, files)
    first = make_plan(cfg, conn, "bulk", gcs_client=gcs_client)
    assert {it["relpath"] for it in _objects(first)} == set(files)
    assert all(Path(it["path"]).read_bytes() == files[it["relpath"]] for it in _objects(first))
    assert all(it["object"] == "data/" + it["relpath"] and it["bucket"] == bucket for it in _objects(first))
    uploaded = sorted(files)[::2]
    b = gcs_client.bucket(bucket)
    for rel in uploaded:
        b.blob("data/" + rel).upload_from_string(files[rel])
    delta = make_plan(cfg, conn, "delta", gcs_client=gcs_client)
    assert {it["relpath"] for it in _objects(delta)} == set(files) - set(uploaded)
    skipped = _jsonl(delta.paths["skipped"])
    assert {s["relpath"] for s in skipped if s["reason"] == "already-migrated"} == set(uploaded)
    assert delta.summary["already_migrated"]["files"] == len(uploaded)
    assert delta.plan_id != first.plan_id


def test_without_hash_objects_are_compared_by_size_and_the_report_says_so(write_config, tmp_path, bucket, gcs_client):
    files = _sample_files(4)
    cfg, conn = _setup(write_config, tmp_path, bucket, files, hash=False)
    b = gcs_client.bucket(bucket)
    b.blob("data/dir0/file-00.bin").upload_from_string(b"\xff" * 100)  # same size, other bytes: undetectable
    b.blob("data/dir1/file-01.bin").upload_from_string(b"short")  # other size: a conflict
    result = make_plan(cfg, conn, "nohash", gcs_client=gcs_client)
    reasons = {s["relpath"]: s["reason"] for s in _jsonl(result.paths["skipped"])}
    assert reasons == {"dir0/file-00.bin": "already-migrated", "dir1/file-01.bin": "conflict"}
    assert result.summary["compare"]["by"] == "size"
    assert result.summary["compare"]["size_only_matches"] == 1
    md = result.paths["report"].read_text(encoding="utf-8")
    assert "inventoried without `--hash`" in md and "compared by size only" in md


@pytest.mark.parametrize("policy", ["skip", "overwrite", "fail"])
def test_conflict_policy(policy, write_config, tmp_path, bucket, gcs_client):
    files = _sample_files(4)
    cfg, conn = _setup(write_config, tmp_path, bucket, files, transfer={"conflict_policy": policy})
    blob = gcs_client.bucket(bucket).blob("data/dir2/file-02.bin")
    blob.upload_from_string(b"different content")
    gcs_client.bucket(bucket).blob("data/dir0/file-00.bin").upload_from_string(files["dir0/file-00.bin"])
    if policy == "fail":
        with pytest.raises(PlanError) as err:
            make_plan(cfg, conn, "c", gcs_client=gcs_client)
        assert "1 object(s)" in err.value.message and f"gs://{bucket}/data/dir2/file-02.bin" in err.value.message
        assert "conflict_policy" in (err.value.fix or "")
        assert not (cfg.project.plans_dir / "c.plan.json").exists()
        return
    result = make_plan(cfg, conn, "c", gcs_client=gcs_client)
    items = {it["relpath"]: it for it in _objects(result)}
    skipped = {s["relpath"]: s for s in _jsonl(result.paths["skipped"])}
    assert skipped["dir0/file-00.bin"]["reason"] == "already-migrated"
    assert result.summary["conflicts"] == {"policy": policy, "count": 1}
    if policy == "skip":
        assert "dir2/file-02.bin" not in items
        assert skipped["dir2/file-02.bin"]["reason"] == "conflict"
        assert "17 bytes" in skipped["dir2/file-02.bin"]["detail"]
        assert all(it["overwrite"] is False for it in items.values())
    else:
        blob.reload()
        over = items["dir2/file-02.bin"]
        assert over["overwrite"] is True and over["replace_generation"] == blob.generation
        assert sum(it["overwrite"] for it in items.values()) == 1
        assert result.summary["objects"]["overwrite"] == 1
        assert json.loads(result.paths["tfvars"].read_text())["allow_object_delete"] is True


def test_objects_done_in_earlier_runs_are_excluded_and_deleted_ones_come_back(
    write_config, tmp_path, bucket, gcs_client
):
    files = _sample_files(3)
    cfg, conn = _setup(write_config, tmp_path, bucket, files)
    first = make_plan(cfg, conn, "w1", gcs_client=gcs_client)
    plan = load_plan(first.paths["plan"])
    register_items(conn, plan)
    copied = _objects(first)[:2]
    for it in copied:  # what `run` leaves behind: the object in the bucket and the item done
        gcs_client.bucket(bucket).blob(it["object"]).upload_from_string(files[it["relpath"]])
        conn.execute("UPDATE items SET state='done' WHERE plan_id=? AND seq=?", (plan.plan_id, it["seq"]))
    second = make_plan(cfg, conn, "w2", gcs_client=gcs_client)
    assert [it["relpath"] for it in _objects(second)] == [_objects(first)[2]["relpath"]]
    assert second.summary["objects"]["missing_after_earlier_run"] == 0
    # someone deletes a migrated object: the next delta plans it again and says so
    gcs_client.bucket(bucket).blob(copied[0]["object"]).delete()
    third = make_plan(cfg, conn, "w3", gcs_client=gcs_client)
    assert {it["relpath"] for it in _objects(third)} == {copied[0]["relpath"], _objects(first)[2]["relpath"]}
    assert third.summary["objects"]["missing_after_earlier_run"] == 1
    assert any("no longer in their bucket" in w for w in third.warnings)


def test_a_name_gcs_would_reject_is_skipped_and_reported(write_config, tmp_path, bucket, gcs_client):
    cfg, conn = _setup(write_config, tmp_path, bucket, {"ok.txt": b"fine"})
    snap = conn.execute("SELECT MAX(id) FROM snapshots").fetchone()[0]
    # a row as an older inventory could have left it: the planner checks names itself
    conn.execute(
        "INSERT INTO files(source, relpath, kind, size, seen, changed) VALUES('src', ?, 'file', 3, ?, ?)",
        ("bell\x07.txt", snap, snap),
    )
    result = make_plan(cfg, conn, "names", gcs_client=gcs_client)
    assert [it["relpath"] for it in _objects(result)] == ["ok.txt"]
    (skip,) = _jsonl(result.paths["skipped"])
    assert skip["reason"] == "rejected-name" and "control character" in skip["detail"]
    md = result.paths["report"].read_text(encoding="utf-8")
    section = md.split("## Anomalies and names GCS would reject")[1].split("## ")[0]
    assert "bell" in section and "control character" in section


def test_tfvars_lists_exactly_the_targets_the_plan_needs(write_config, tmp_path, bucket, gcs_client):
    root = write_tree(tmp_path / "src", {"a/1.txt": b"1", "b/2.txt": b"22"})
    logs = write_tree(
        tmp_path / "logs", {"plays-1.jsonl": b'{"event_id": "e1"}\n{"event_id": "e2"}\n', "empty.jsonl": b""}
    )
    cfg = load_config(
        write_config(
            catalog=[
                {"name": "a", "root": str(root / "a"), "bucket": bucket, "prefix": "a/"},
                {"name": "b", "root": str(root / "b"), "bucket": bucket, "prefix": "b/", "storage_class": "NEARLINE"},
            ],
            listeners=[
                {
                    "name": "plays",
                    "paths": [str(logs / "*.jsonl")],
                    "topic": "plays-topic",
                    "event_id_field": "event_id",
                }
            ],
        )
    )
    conn = connect(cfg.project.state_dir)
    run_inventory(cfg, conn, hash=True)
    result = make_plan(cfg, conn, "tf", gcs_client=gcs_client)
    doc = json.loads(result.paths["tfvars"].read_text())
    assert sorted(doc["buckets"]) == [bucket]
    assert doc["buckets"][bucket]["storage_class"] == "STANDARD"
    assert sorted(doc["topics"]) == ["plays-topic"]
    assert result.targets == {"buckets": [bucket], "topics": ["plays-topic"]}
    assert load_plan(result.paths["plan"]).doc["targets"] == result.targets
    # one publish batch for the log with events; the empty log is skipped with a reason
    logs_items = [it for it in _jsonl(result.paths["manifest"]) if it["kind"] == "events"]
    assert [Path(it["path"]).name for it in logs_items] == ["plays-1.jsonl"]
    assert logs_items[0]["events"] == 2 and logs_items[0]["topic"] == "plays-topic"
    assert [s["reason"] for s in _jsonl(result.paths["skipped"])] == ["empty-log"]
    assert any("storage classes NEARLINE, STANDARD" in w for w in result.warnings)


def test_log_files_replayed_by_an_earlier_run_are_excluded(write_config, tmp_path, gcs_client):
    logs = write_tree(tmp_path / "logs", {"d1.jsonl": b'{"id": "a"}\n', "d2.jsonl": b'{"id": "b"}\n'})
    cfg = load_config(write_config(listeners=[{"name": "plays", "paths": [str(logs / "*.jsonl")], "topic": "tp-x"}]))
    conn = connect(cfg.project.state_dir)
    run_inventory(cfg, conn)
    first = make_plan(cfg, conn, "e1", gcs_client=gcs_client)
    d1 = next(it for it in _jsonl(first.paths["manifest"]) if it["path"].endswith("d1.jsonl"))
    conn.execute(
        "INSERT INTO items(plan_id, seq, kind, batch, source, relpath, topic, size, mtime_ns, inode, state)"
        " VALUES('p0', 1, 'events', 1, 'plays', ?, 'tp-x', ?, ?, ?, 'pending')",
        (d1["relpath"], d1["size"], d1["mtime_ns"], d1["inode"]),
    )
    conn.execute(
        "INSERT INTO offsets(plan_id, source, path, watermark, done) VALUES('p0', 'plays', ?, ?, 1)",
        (d1["relpath"], 12),
    )
    second = make_plan(cfg, conn, "e2", gcs_client=gcs_client)
    assert [Path(it["path"]).name for it in _jsonl(second.paths["manifest"])] == ["d2.jsonl"]
    (skip,) = _jsonl(second.paths["skipped"])
    assert skip["reason"] == "replayed-earlier" and "p0" in skip["detail"]


def test_no_inventory_is_a_plan_error_that_says_what_to_run(write_config, tmp_path, bucket, gcs_client):
    cfg = load_config(write_config(catalog=[{"name": "src", "root": str(tmp_path), "bucket": bucket}]))
    conn = connect(cfg.project.state_dir)
    with pytest.raises(PlanError) as err:
        make_plan(cfg, conn, "x", gcs_client=gcs_client)
    assert "migrate inventory" in err.value.one_line()


def test_two_sources_writing_the_same_object_is_a_plan_error(write_config, tmp_path, bucket, gcs_client):
    root = write_tree(tmp_path / "src", {"all/b/x.txt": b"1", "all/y.txt": b"2", "b/x.txt": b"3"})
    cfg = load_config(
        write_config(
            catalog=[
                {"name": "all", "root": str(root / "all"), "bucket": bucket},
                {"name": "b", "root": str(root / "b"), "bucket": bucket, "prefix": "b/"},
            ]
        )
    )
    conn = connect(cfg.project.state_dir)
    run_inventory(cfg, conn, hash=True)
    with pytest.raises(PlanError) as err:
        make_plan(cfg, conn, "dup", gcs_client=gcs_client)
    assert f"gs://{bucket}/b/x.txt (all:b/x.txt, b:x.txt)" in err.value.message
    assert "prefixes" in (err.value.fix or "")


def test_listing_survives_transient_errors_page_by_page(write_config, tmp_path, bucket, gcs_client, monkeypatch):
    from faultproxy import FaultProxy

    from migrate import clients
    from migrate.targets import gcs

    files = _sample_files(12)
    transfer = {"retry_initial_delay": 0.01, "retry_max_delay": 0.05, "retry_max_attempts": 20}
    cfg, conn = _setup(write_config, tmp_path, bucket, files, transfer=transfer)
    for rel in sorted(files)[:9]:
        gcs_client.bucket(bucket).blob("data/" + rel).upload_from_string(files[rel])
    monkeypatch.setattr(gcs, "LIST_PAGE_SIZE", 2)  # several pages, each retried on its own
    direct = make_plan(cfg, conn, "direct", gcs_client=gcs_client)
    events = []
    with FaultProxy(os.environ["STORAGE_EMULATOR_HOST"], rate=0.5, faults=("429", "503"), seed=1) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        flaky = make_plan(cfg, conn, "flaky", gcs_client=clients.gcs_client(cfg.project.id), report=events.append)
    assert proxy.injected > 0
    assert sum(e.kind == "retry" for e in events) == proxy.injected
    assert direct.paths["manifest"].read_bytes() == flaky.paths["manifest"].read_bytes()
    assert [it["relpath"] for it in _objects(flaky)] == sorted(files)[9:]
