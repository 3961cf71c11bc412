"""Listener log reading: formats, offsets, resume, event ids, bad records, truncated gzip, scan stats."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import files
import pytest

from migrate.config import ListenerSource
from migrate.hashing import IdDigest
from migrate.sources.eventlog import csvrows, expand_paths, iter_records, normalize_time, reader, scan_file, streams


def listener(pattern: str | Path, **kw) -> ListenerSource:
    kw.setdefault("event_id_field", "event_id")
    kw.setdefault("event_time_field", "ts")
    return ListenerSource(name=kw.pop("name", "plays"), paths=(str(pattern),), topic="t-events", **kw)


def event(i: int, **extra) -> bytes:
    doc = {"event_id": f"e{i}", "ts": f"2024-01-01T00:00:{i % 60:02d}Z", "user": f"u{i % 3}", **extra}
    return json.dumps(doc).encode()


def write(path: Path, lines: list[bytes], *, gz: bool = False, trailing_newline: bool = True) -> Path:
    return files.write_log(path, lines, gz=gz, trailing_newline=trailing_newline)


def test_expand_paths_sorted_and_deduplicated(tmp_path: Path) -> None:
    for name in ("b.jsonl", "a.jsonl", "c.jsonl.gz"):
        write(tmp_path / "logs" / name, [event(1)])
    (tmp_path / "logs" / "sub").mkdir()
    src = ListenerSource(
        name="plays",
        paths=(str(tmp_path / "logs/*.jsonl"), str(tmp_path / "logs/*"), str(tmp_path / "logs/a.jsonl")),
        topic="t",
    )
    got = expand_paths(src)
    assert got == sorted(str(tmp_path / "logs" / n) for n in ("a.jsonl", "b.jsonl", "c.jsonl.gz"))


def test_gzip_and_plain_give_identical_records_and_offsets(tmp_path: Path) -> None:
    lines = [event(i) for i in range(50)]
    plain = write(tmp_path / "p" / "x.log", lines)
    packed = write(tmp_path / "g" / "x.log", lines, gz=True)  # detected by magic bytes, not by name
    a = list(iter_records(str(plain), listener(tmp_path / "p/*.log")))
    b = list(iter_records(str(packed), listener(tmp_path / "g/*.log")))
    assert [(r.line, r.offset, r.end_offset, r.data, r.event_id) for r in a] == [
        (r.line, r.offset, r.end_offset, r.data, r.event_id) for r in b
    ]
    assert len(a) == 50 and a[0].offset == 0 and a[1].offset == len(lines[0]) + 1
    assert a[-1].end_offset == plain.stat().st_size
    assert a[3].data == lines[3]  # exactly the line without its newline
    assert a[3].event_id == "e3" and a[3].event_time == "2024-01-01T00:00:03Z"


def test_bad_records_are_yielded_with_reasons(tmp_path: Path) -> None:
    lines = [
        event(1),
        b"not json",
        b"[1, 2]",
        b'{"ts": "2024-01-01T00:00:00Z"}',
        b'{"event_id": "e\xff"}',
        b"",
        b"   ",
        b'{"event_id": "x' + b"y" * 1100 + b'"}',
        event(2) + b"\r",
    ]
    path = write(tmp_path / "l.jsonl", lines)
    recs = list(iter_records(str(path), listener(path)))
    by_line = {r.line: r for r in recs}
    assert sorted(by_line) == [1, 2, 3, 4, 5, 8, 9]  # blank lines 6 and 7 are neither events nor errors
    assert by_line[1].error is None
    assert by_line[2].error.startswith("malformed JSON") and by_line[2].error_kind == "malformed"
    assert by_line[3].error == "not a JSON object (list)"
    assert by_line[4].error == "missing event_id field 'event_id'"
    assert "invalid UTF-8" in by_line[5].error
    assert by_line[8].error_kind == "oversized" and "event_id is 1101 bytes" in by_line[8].error
    assert by_line[9].error is None and by_line[9].data == event(2)  # CRLF is the newline
    assert by_line[2].data == b"not json"  # raw bytes kept for the quarantine


def test_ordering_key_over_limit_and_present(tmp_path: Path) -> None:
    path = write(tmp_path / "k.jsonl", [event(1, user="u1"), event(2, user="k" * 1025), event(3, user=7)])
    recs = list(iter_records(str(path), listener(path, ordering_key_field="user")))
    assert recs[0].ordering_key == "u1" and recs[0].error is None
    assert recs[1].error_kind == "oversized" and "ordering key is 1025 bytes" in recs[1].error
    assert recs[2].ordering_key == "7"


def test_event_over_10mb_is_oversized_and_reading_continues(tmp_path: Path) -> None:
    big = b'{"event_id": "big", "blob": "' + b"a" * (10 * 1000 * 1000 + 10) + b'"}'
    path = write(tmp_path / "big.jsonl.gz", [event(1), big, event(2)], gz=True)
    recs = list(iter_records(str(path), listener(path)))
    assert [r.error_kind for r in recs] == [None, "oversized", None]
    assert "10 MB" in recs[1].error and recs[1].data == big
    scan = scan_file(str(path), listener(path))
    assert (scan.events, scan.oversized, scan.malformed) == (2, 1, 0)


def test_line_longer_than_memory_cap_is_oversized_with_truncated_raw(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(reader, "MAX_LINE_KEEP", 1000)
    monkeypatch.setattr(streams, "READ_CHUNK", 256)
    path = write(tmp_path / "l.jsonl", [event(1), b"x" * 5000, event(2)])
    recs = list(iter_records(str(path), listener(path)))
    assert [(r.line, r.error_kind) for r in recs] == [(1, None), (2, "oversized"), (3, None)]
    assert recs[1].end_offset - recs[1].offset == 5001 and len(recs[1].data) == 1000
    assert recs[2].event_id == "e2"


def test_resume_from_offset_yields_only_the_rest(tmp_path: Path) -> None:
    lines = [event(i) for i in range(100)]
    for gz in (False, True):
        path = write(tmp_path / f"r{gz}.jsonl", lines, gz=gz)
        full = list(iter_records(str(path), listener(path)))
        cut = full[40]
        rest = list(iter_records(str(path), listener(path), cut.offset, cut.line - 1))
        assert rest == full[40:]


def test_csv_rows_become_json_objects_and_resume_reads_the_header(tmp_path: Path) -> None:
    path = tmp_path / "plays.csv"
    path.write_bytes(
        b"event_id,ts,user\r\n"
        b"a1,1700000000,u1\r\n"
        b"a2,1700000000123,u2\r\n"
        b"only,two\r\n"
        b'"q,1",2024-01-01T01:00:00+01:00,u3\r\n'
    )
    src = listener(path, format="csv", ordering_key_field="user")
    recs = list(iter_records(str(path), src))
    assert [r.line for r in recs] == [2, 3, 4, 5]
    assert json.loads(recs[0].data) == {"event_id": "a1", "ts": "1700000000", "user": "u1"}
    assert recs[0].event_time == "2023-11-14T22:13:20Z"  # epoch seconds
    assert recs[1].event_time == "2023-11-14T22:13:20.123000Z"  # epoch milliseconds
    assert recs[2].error == "bad CSV row: 2 columns, header has 3"
    assert recs[3].event_id == "q,1" and recs[3].event_time == "2024-01-01T00:00:00Z" and recs[3].ordering_key == "u3"
    rest = list(iter_records(str(path), src, recs[2].offset, recs[2].line - 1))
    assert rest == recs[2:]


def test_csv_quoted_line_breaks_join_one_record_and_resume_after_it(tmp_path: Path) -> None:
    path = tmp_path / "skips.csv"
    path.write_bytes(
        b"event_id,note,user\n"
        b'a1,"first line\nsecond ""quoted"" line\nthird",u1\n'  # one record over three lines
        b"a2,plain,u2\n"
        b'a3,"one, two",u3\n'
    )
    src = listener(path, format="csv")
    recs = list(iter_records(str(path), src))
    assert [(r.line, r.lines, r.error) for r in recs] == [(2, 3, None), (5, 1, None), (6, 1, None)]
    assert json.loads(recs[0].data)["note"] == 'first line\nsecond "quoted" line\nthird'
    assert recs[0].end_offset == recs[1].offset
    # resuming after the joined record (its end, and the physical lines below it) reads the same rest
    rest = list(iter_records(str(path), src, recs[0].end_offset, recs[0].last_line))
    assert rest == recs[1:]
    scan = scan_file(str(path), src)
    assert (scan.events, scan.malformed, scan.lines) == (3, 0, 6)


def test_csv_stray_quote_is_one_bad_row_and_the_lines_after_it_are_read(tmp_path: Path) -> None:
    path = tmp_path / "skips.csv"
    path.write_bytes(b'event_id,note\na1,ok\na2,"never closed\na3,fine\na4,"x\ny",z\na5,last\n')
    recs = list(iter_records(str(path), listener(path, format="csv")))
    got = [(r.line, r.lines, r.event_id if r.error is None else "BAD") for r in recs]
    # a4's quoted field spans two lines but gives three columns, not two: not a row, so its lines are read
    # again one by one (the csv module takes `y",z` for a row of two columns)
    assert got == [(2, 1, "a1"), (3, 1, "BAD"), (4, 1, "a3"), (5, 1, "BAD"), (6, 1, 'y"'), (7, 1, "a5")]
    assert recs[1].data == b'a2,"never closed'  # the bad line alone is quarantined
    assert [r.offset for r in recs] == sorted(r.offset for r in recs)


def test_csv_open_quote_is_given_up_after_the_line_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(csvrows, "MAX_QUOTED_LINES", 3)
    path = tmp_path / "skips.csv"
    path.write_bytes(b'event_id,note\na1,"oops\na2,x\na3,y\na4,z\n')
    recs = list(iter_records(str(path), listener(path, format="csv")))
    assert [(r.line, r.error is None) for r in recs] == [(2, False), (3, True), (4, True), (5, True)]
    assert [r.event_id for r in recs[1:]] == ["a2", "a3", "a4"]


def test_derived_event_id_is_stable_across_runs_and_mount_points(tmp_path: Path) -> None:
    lines = [json.dumps({"n": i}).encode() for i in range(5)]
    a = write(tmp_path / "site1" / "logs" / "day1.jsonl.gz", lines, gz=True)
    ids1 = [r.event_id for r in iter_records(str(a), listener(tmp_path / "site1/logs/*.gz", event_id_field=None))]
    ids2 = [r.event_id for r in iter_records(str(a), listener(tmp_path / "site1/logs/*.gz", event_id_field=None))]
    assert ids1 == ids2 and len(set(ids1)) == 5 and all(i.startswith("d-") for i in ids1)
    # The same share mounted elsewhere gives the same ids: identity is relative to the glob's base.
    shutil.copytree(tmp_path / "site1", tmp_path / "site2")
    b = tmp_path / "site2" / "logs" / "day1.jsonl.gz"
    ids3 = [r.event_id for r in iter_records(str(b), listener(tmp_path / "site2/logs/*.gz", event_id_field=None))]
    assert ids3 == ids1
    # Another listener, or another file, gives other ids.
    other = [
        r.event_id for r in iter_records(str(a), listener(tmp_path / "site1/logs/*.gz", event_id_field=None, name="x"))
    ]
    assert set(other).isdisjoint(ids1)


def test_truncated_gzip_yields_what_was_read_then_the_anomaly(tmp_path: Path) -> None:
    lines = [event(i) for i in range(2000)]
    good = write(tmp_path / "good.jsonl.gz", lines, gz=True)
    blob = good.read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    reader = iter_records(str(cut), listener(cut))
    recs = list(reader)
    assert reader.anomaly and reader.anomaly.startswith("truncated gzip")
    valid = [r for r in recs if r.error is None]
    assert [r.event_id for r in valid] == [f"e{i}" for i in range(len(valid))]
    assert 0 < len(valid) < 2000
    # Every decompressed byte is accounted for: the partial last line comes as a 'truncated' record.
    assert recs[-1].error_kind == "truncated" and recs[-1].end_offset == reader.bytes_read
    scan = scan_file(str(cut), listener(cut))
    assert scan.anomaly == reader.anomaly and scan.events == len(valid) and scan.malformed == 1


def test_corrupt_gzip_keeps_records_before_the_damage(tmp_path: Path) -> None:
    lines = [event(i) for i in range(3000)]
    good = write(tmp_path / "good.jsonl.gz", lines, gz=True)
    blob = bytearray(good.read_bytes())
    mid = len(blob) // 2
    blob[mid : mid + 64] = b"\x00" * 64
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(bytes(blob))
    reader = iter_records(str(bad), listener(bad))
    recs = [r for r in reader if r.error is None]
    assert reader.anomaly and ("corrupt gzip" in reader.anomaly or "truncated" in reader.anomaly)
    # Records before the damage are intact. (Deflate may decode garbage after it until the CRC check
    # fails, so the whole file is an anomaly; what follows the damage is not to be trusted.)
    assert [r.event_id for r in recs[:100]] == [f"e{i}" for i in range(100)]


def test_concatenated_gzip_members_are_one_stream(tmp_path: Path) -> None:
    p = tmp_path / "multi.jsonl.gz"
    part1 = gzip.compress(b"\n".join(event(i) for i in range(3)) + b"\n")
    part2 = gzip.compress(b"\n".join(event(i) for i in range(3, 6)) + b"\n")
    p.write_bytes(part1 + part2)
    reader = iter_records(str(p), listener(p))
    assert [r.event_id for r in reader] == [f"e{i}" for i in range(6)] and reader.anomaly is None


def test_unreadable_files_are_anomalies_not_crashes(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    scan = scan_file(str(fifo), listener(fifo))  # must not block waiting for a writer
    assert scan.anomaly and "not a regular file" in scan.anomaly and scan.events == 0
    gone = scan_file(str(tmp_path / "deleted.jsonl"), listener(tmp_path / "*.jsonl"))
    assert gone.anomaly and "No such file" in gone.anomaly


def test_scan_file_counts_digest_and_time_range(tmp_path: Path) -> None:
    lines = [
        json.dumps({"event_id": "a", "ts": "2024-03-01T10:00:00.5Z"}).encode(),
        json.dumps({"event_id": "b", "ts": 1709287200}).encode(),  # 2024-03-01T10:00:00Z
        b"{broken",
        json.dumps({"event_id": "c", "ts": "2024-03-01T12:00:00+02:00"}).encode(),  # 10:00:00Z
        json.dumps({"event_id": "d", "ts": "2024-03-02T00:00:00Z"}).encode(),
    ]
    path = write(tmp_path / "s.jsonl.gz", lines, gz=True)
    scan = scan_file(str(path), listener(path), bad_line_limit=10)
    assert (scan.events, scan.malformed, scan.oversized) == (4, 1, 0)
    assert scan.bad_lines == [(3, sum(len(x) + 1 for x in lines[:2]), scan.bad_lines[0][2])]
    expect = IdDigest()
    for i in "abcd":
        expect.add(i)
    assert scan.digest == expect
    assert scan.min_time == "2024-03-01T10:00:00Z" and scan.max_time == "2024-03-02T00:00:00Z"
    assert scan.event_bytes == sum(len(x) for x in lines) - len(b"{broken")
    st = path.stat()
    assert (scan.size, scan.mtime_ns, scan.inode) == (st.st_size, st.st_mtime_ns, st.st_ino)


def test_bad_line_limit_caps_the_list_not_the_count(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", [b"x"] * 20)
    scan = scan_file(str(path), listener(path), bad_line_limit=5)
    assert scan.malformed == 20 and len(scan.bad_lines) == 5


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
        ("2024-01-01T00:00:00.123456789Z", "2024-01-01T00:00:00.123456789Z"),
        ("2024-01-01T02:00:00+02:00", "2024-01-01T00:00:00Z"),
        ("2024-01-01T00:00:00", "2024-01-01T00:00:00Z"),
        (1704067200, "2024-01-01T00:00:00Z"),
        (1704067200500, "2024-01-01T00:00:00.500000Z"),
        ("1704067200", "2024-01-01T00:00:00Z"),
        ("yesterday", None),
        (None, None),
        (True, None),
        ("２０２４-01-01T00:00:00Z", None),
    ],
)
def test_normalize_time(value, expected) -> None:
    assert normalize_time(value) == expected


def test_scan_matches_generator_ground_truth(tmp_path: Path) -> None:
    from migrate.config import load_config
    from migrate.local import datagen

    estate = datagen.generate(tmp_path / "dc", scale=0.05)
    cfg = load_config(estate.config_path)
    src = cfg.listener_source("plays")
    truth = {str(Path(lt.path)): lt for lt in estate.logs["plays"]}
    paths = expand_paths(src)
    assert sorted(truth) == paths
    for p in paths:
        scan = scan_file(p, src)
        lt = truth[p]
        assert scan.events == lt.events and scan.anomaly is None
        assert sorted(line for line, _, _ in scan.bad_lines) == sorted(lt.malformed_lines)
        expect = IdDigest()
        for eid in lt.event_ids:
            expect.add(eid)
        assert scan.digest == expect
