"""A log that grew after a run replayed it: the next plan replays only the appended lines, when provable.

Real Pub/Sub emulator throughout: inventory -> plan -> run -> verify, then append, and again.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pipeline
import pytest
from pubsubkit import drain
from test_verify_helpers import FAST_DRAIN

from migrate import clients
from migrate.config import load_config
from migrate.sources.eventlog import iter_records
from migrate.transfer.run import RunOptions, run_plan
from migrate.verification.verify import verify_plan


class Wave:
    """One listener log, planned, run and verified in waves."""

    def __init__(self, tmp_path: Path, write_config, topic: str, log: Path, fmt: str = "jsonl") -> None:
        self.log = log
        self.topic = topic
        listener = {"name": "plays", "paths": [str(log)], "format": fmt, "topic": topic}
        if fmt == "jsonl":
            listener["event_time_field"] = "ts"
        self.cfg = load_config(write_config(listeners=[listener]))

    def plan(self, name: str) -> tuple[dict | None, dict]:
        result = pipeline.plan(self.cfg, name, hash=False)
        manifest = Path(result.paths["manifest"]).read_text().splitlines()
        items = [json.loads(x) for x in manifest if json.loads(x)["kind"] == "events"]
        assert len(items) <= 1
        return (items[0] if items else None), {"warnings": result.warnings, "plan": result.paths["plan"]}

    def run_and_verify(self, plan: str) -> tuple[dict, object]:
        seen: list = []
        summary = pipeline.run(self.cfg, plan, workers=2, report=seen.append)
        assert summary.status == "ok", summary.to_dict()
        (start,) = [e for e in seen if e.kind == "start"]
        self.announced = start.data["events"]  # what the progress display counts down from
        report = verify_plan(self.cfg, Path(plan), drain=FAST_DRAIN)
        return summary.events, report

    def records(self) -> list:
        return list(iter_records(str(self.log), self.cfg.listener_source("plays")))


def _wave(tmp_path: Path, write_config, topic: str, name: str, content: bytes, fmt: str = "jsonl") -> Wave:
    """A listener over one log file logs/<name> holding `content`."""
    log = tmp_path / "logs" / name
    log.parent.mkdir(exist_ok=True)
    log.write_bytes(content)
    return Wave(tmp_path, write_config, topic, log, fmt)


def _jsonl(start: int, n: int, *, bad_at: int | None = None) -> bytes:
    out = []
    for i in range(start, start + n):
        if i == bad_at:
            out.append(b"{broken json")
        else:
            out.append(json.dumps({"user": f"u{i}", "track": i, "ts": f"2026-01-01T00:00:{i % 60:02d}Z"}).encode())
    return b"\n".join(out) + b"\n"


@pytest.fixture
def audit(emulators, topic):
    """A second subscription on the topic, to read exactly what a wave published."""
    sub = clients.subscriber_client()
    path = sub.subscription_path(emulators.project, f"{topic}-audit")
    sub.create_subscription(name=path, topic=f"projects/{emulators.project}/topics/{topic}")

    sub.close()
    yield lambda: drain(path)


def test_grown_jsonl_log_replays_only_the_appended_lines(tmp_path, write_config, topic, audit):
    w = _wave(tmp_path, write_config, topic, "plays-current.jsonl", _jsonl(0, 10, bad_at=4))
    log = w.log

    first, _ = w.plan("w1")
    assert first["events"] == 9 and "start_offset" not in first and first["crc32c"]
    events, report = w.run_and_verify(_plan_path(w, "w1"))
    assert report.ok and events["events"] == 9
    assert len(audit()) == 9

    old_size = log.stat().st_size
    with open(log, "ab") as fh:  # the active log keeps growing between waves
        fh.write(_jsonl(10, 6, bad_at=12))
    second, info = w.plan("w2")
    assert (second["start_offset"], second["start_line"]) == (old_size, 10)
    assert (second["events"], second["malformed"], second["replayed_before"]) == (5, 1, False)
    assert any("only the lines appended since are planned" in x for x in info["warnings"])

    events, report = w.run_and_verify(info["plan"])
    assert events["events"] == 5 and events["quarantined"] == 1 and w.announced == 5
    assert report.ok, report.to_dict()
    (src,) = report.events
    assert (src.expected_events, src.received_events, src.duplicates, src.missing) == (5, 5, 0, 0)

    got = audit()
    whole = {r.event_id: r for r in w.records() if r.error is None}
    tail = {eid for eid, r in whole.items() if r.offset >= old_size}
    assert {m.attributes["event_id"] for m in got} == tail and len(got) == 5  # nothing re-published
    for m in got:  # line numbers continue where the first wave stopped
        r = whole[m.attributes["event_id"]]
        assert m.attributes["source"] == f"{log}:{r.line}" and r.line > 10
        assert m.data == r.data

    third, _ = w.plan("w3")  # nothing appended since: nothing to replay
    assert third is None

    # the first wave still verifies after its log grew: verify reads a plan's logs only up to the planned size
    again = verify_plan(w.cfg, Path(_plan_path(w, "w1")), drain=FAST_DRAIN)
    (src,) = again.events
    assert again.ok, again.to_dict()
    assert (src.expected_events, src.missing, src.source_drift) == (9, 0, False)


def test_rewritten_prefix_is_replayed_whole_with_a_warning(tmp_path, write_config, topic):
    original = _jsonl(0, 8)
    w = _wave(tmp_path, write_config, topic, "plays.jsonl", original)
    log = w.log
    w.plan("w1")
    w.run_and_verify(_plan_path(w, "w1"))

    changed = original.replace(b'"u3"', b'"u9"')  # same size, other bytes: not the file that was replayed
    log.write_bytes(changed + _jsonl(8, 2))
    item, info = w.plan("w2")
    assert "start_offset" not in item and item["replayed_before"] is True and item["events"] == 10
    assert any("replaying them again re-publishes" in x for x in info["warnings"])


def test_grown_gzip_log_is_replayed_whole(tmp_path, write_config, topic):
    w = _wave(tmp_path, write_config, topic, "plays.jsonl.gz", gzip.compress(_jsonl(0, 5)))
    log = w.log
    first, _ = w.plan("w1")
    assert first["crc32c"] is None  # a gzip member cannot be extended in place: no tail replay
    w.run_and_verify(_plan_path(w, "w1"))
    with open(log, "ab") as fh:
        fh.write(gzip.compress(_jsonl(5, 3)))  # a second member: a valid, longer gzip file
    item, _ = w.plan("w2")
    assert "start_offset" not in item and item["replayed_before"] is True and item["events"] == 8


def test_grown_csv_log_keeps_its_header_and_line_numbers(tmp_path, write_config, topic, audit):
    rows = b"user,track,ts\nu0,1,2026-01-01T00:00:00Z\nu1,2,2026-01-01T00:00:01Z\n"
    w = _wave(tmp_path, write_config, topic, "skips.csv", rows, fmt="csv")
    log = w.log
    w.plan("w1")
    events, report = w.run_and_verify(_plan_path(w, "w1"))
    assert report.ok and events["events"] == 2
    audit()
    with open(log, "ab") as fh:
        fh.write(b"u2,3,2026-01-01T00:00:02Z\n")
    item, info = w.plan("w2")
    assert (item["start_line"], item["events"]) == (3, 1)  # header + two rows below the start
    events, report = w.run_and_verify(info["plan"])
    assert report.ok and events["events"] == 1
    (m,) = audit()
    assert json.loads(m.data) == {"user": "u2", "track": "3", "ts": "2026-01-01T00:00:02Z"}
    assert m.attributes["source"] == f"{log}:4"


def test_a_log_that_ended_mid_line_is_replayed_whole(tmp_path, write_config, topic):
    w = _wave(tmp_path, write_config, topic, "plays.jsonl", _jsonl(0, 3) + b'{"user": "u3", "track": 3')  # mid-line
    log = w.log
    w.plan("w1")
    run_plan(w.cfg, Path(_plan_path(w, "w1")), options=RunOptions(workers=2))
    with open(log, "ab") as fh:
        fh.write(b', "ts": "2026-01-01T00:00:03Z"}\n')
    item, _ = w.plan("w2")
    assert "start_offset" not in item and item["replayed_before"] is True  # the old last line changed


def _plan_path(w: Wave, name: str) -> str:
    return str(Path(w.cfg.project.plans_dir) / f"{name}.plan.json")


def test_log_appended_between_plan_and_run_replays_exactly_the_planned_part(tmp_path, write_config, topic, audit):
    w = _wave(tmp_path, write_config, topic, "plays-current.jsonl", _jsonl(0, 6))
    log = w.log
    w.plan("w1")
    planned = {r.event_id for r in w.records() if r.error is None}
    planned_size = log.stat().st_size
    with open(log, "ab") as fh:  # the writer keeps going after the plan was made
        fh.write(_jsonl(6, 3))

    events, report = w.run_and_verify(_plan_path(w, "w1"))  # not "source changed": it only grew
    assert events["events"] == 6 and events["files_changed"] == 0 and report.ok
    assert {m.attributes["event_id"] for m in audit()} == planned

    item, info = w.plan("w2")
    assert (item["start_offset"], item["events"]) == (planned_size, 3)
    events, report = w.run_and_verify(info["plan"])
    assert events["events"] == 3 and report.ok
    assert len(audit()) == 3


def test_log_rewritten_and_grown_before_the_run_is_left_as_source_changed(tmp_path, write_config, topic):
    original = _jsonl(0, 6)
    w = _wave(tmp_path, write_config, topic, "plays.jsonl", original)
    log = w.log
    w.plan("w1")
    log.write_bytes(original.replace(b'"u2"', b'"u7"') + _jsonl(6, 2))  # not an append: planned bytes changed
    summary = run_plan(w.cfg, Path(_plan_path(w, "w1")), options=RunOptions(workers=2))
    assert summary.events["events"] == 0 and summary.events["files_changed"] == 1
    assert summary.status != "ok"
