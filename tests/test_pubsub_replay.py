"""Event replay into the real Pub/Sub emulator: delivery, attributes, quarantine, watermarks, resume,
ordering keys, retries, and the rate limiter (with an injected clock)."""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from pathlib import Path

import files
import pytest
from pubsubkit import drain, verification_path

from migrate import clients, ledger, names
from migrate.config import PubSubConfig, TransferConfig, load_config
from migrate.hashing import IdDigest
from migrate.ledger.items import event_files, register_items
from migrate.plan import EventItem, write_plan
from migrate.progress import Event
from migrate.quarantine import iter_quarantine
from migrate.ratelimit import TokenBucket
from migrate.sources.eventlog import scan_file
from migrate.targets.pubsub import EventPublisher, OrderingKeyPaused, topic_path
from migrate.transfer.replay import replay_events

PROJECT = "test-project"


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- helpers -------------------------------------------------------------------------------------


def event(i: int, **extra) -> bytes:
    doc = {"event_id": f"e{i:06d}", "ts": f"2024-05-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z", "user": f"u{i % 5}"}
    doc.update(extra)
    return json.dumps(doc).encode()


def write_log(path: Path, lines: list[bytes], gz: bool = True) -> Path:
    return files.write_log(path, lines, gz=gz)


def setup_plan(tmp_path: Path, write_config, listeners: list[dict], pubsub: dict | None = None, name: str = "p1"):
    """Config + plan + registered items for every file matching the listeners' globs."""
    from migrate.sources.eventlog import expand_paths

    sections = {"listeners": listeners}
    if pubsub:
        sections["pubsub"] = pubsub
    cfg = load_config(write_config(**sections))
    conn = ledger.connect(cfg.project.state_dir)
    items = []
    for src in cfg.listeners:
        for path in expand_paths(src):
            st = os.stat(path)
            scan = scan_file(path, src)
            items.append(
                EventItem(
                    seq=len(items),
                    batch=0,
                    source=src.name,
                    relpath=path,
                    path=path,
                    topic=src.topic,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    inode=st.st_ino,
                    events=scan.events,
                    id_digest=scan.digest.hex,
                    format=src.format,
                )
            )
    header = {"snapshot_id": 1, "config_digest": cfg.digest(), "targets": {}}
    plan = write_plan(cfg.project.plans_dir, name, header, items)
    register_items(conn, plan)
    return cfg, conn, plan


def event_items(conn, plan):
    return conn.execute(
        "SELECT * FROM items WHERE plan_id=? AND kind='events' ORDER BY seq", (plan.plan_id,)
    ).fetchall()


def run_replay(cfg, conn, plan, *, stop=None, report=None):
    events: list[Event] = []

    def rep(e: Event) -> None:
        events.append(e)
        if report:
            report(e)

    summary = replay_events(
        conn, cfg, plan, event_files(conn, plan.plan_id), report=rep, stop=stop or threading.Event()
    )
    return summary, events


def listener_cfg(tmp_path: Path, topic: str, **kw) -> dict:
    d = {"name": "plays", "paths": [str(tmp_path / "logs" / "*")], "topic": topic, "format": "jsonl"}
    d.update(event_id_field="event_id", event_time_field="ts")
    d.update(kw)
    return {k: v for k, v in d.items() if v is not None}


# --- replay --------------------------------------------------------------------------------------


def test_every_valid_event_arrives_bad_ones_are_quarantined(emulators, topic, tmp_path, write_config) -> None:
    big = b'{"event_id": "huge", "blob": "' + b"x" * (10 * 1000 * 1000 + 100) + b'"}'
    day1 = [event(i) for i in range(0, 1500)]
    day1[10] = b"{not json"
    day1[700] = big
    day1[1200] = b'{"user": "no id"}'
    day2 = [event(i) for i in range(1500, 2500)]
    day2[5] = b"[1]"
    write_log(tmp_path / "logs" / "day1.jsonl.gz", day1)
    write_log(tmp_path / "logs" / "day2.jsonl", day2, gz=False)
    cfg, conn, plan = setup_plan(tmp_path, write_config, [listener_cfg(tmp_path, topic, ordering_key_field="user")])

    summary, events = run_replay(cfg, conn, plan)

    bad = {(str(tmp_path / "logs/day1.jsonl.gz"), 11), (str(tmp_path / "logs/day1.jsonl.gz"), 701)}
    bad |= {(str(tmp_path / "logs/day1.jsonl.gz"), 1201), (str(tmp_path / "logs/day2.jsonl"), 6)}
    expected_ids = {json.loads(x)["event_id"] for x in day1 + day2 if x.startswith(b'{"event_id": "e')}
    assert len(expected_ids) == 2500 - 4
    assert summary.events == 2496 and summary.quarantined == 4 and summary.files_done == 2
    assert summary.files_failed == 0 and summary.errors == [] and summary.max_possible_duplicates == 0
    assert sum(e.n for e in events if e.kind == "events") == 2496
    assert sum(e.n for e in events if e.kind == "quarantined") == 4

    msgs = drain(verification_path(topic), expect=2496)
    ids = [m.attributes["event_id"] for m in msgs]
    assert len(ids) == 2496 and set(ids) == expected_ids  # every valid event, exactly once
    m = next(m for m in msgs if m.attributes["event_id"] == "e000042")
    assert m.data == day1[42]
    assert m.attributes["source"] == f"{tmp_path / 'logs/day1.jsonl.gz'}:43"
    assert m.attributes["plan_id"] == plan.plan_id and m.attributes["listener"] == "plays"
    assert m.attributes["event_time"] == "2024-05-01T00:00:42Z"
    assert m.ordering_key == "u2"

    entries = list(iter_quarantine(cfg.project.state_dir, plan.plan_id))
    assert {(e["file"], e["line"]) for e in entries} == bad
    huge = next(e for e in entries if e["line"] == 701)
    assert base64.b64decode(huge["raw_b64"]) == big and "10 MB" in huge["reason"]
    assert huge["kind"] == "oversized"

    rows = {r["path"]: r for r in conn.execute("SELECT * FROM offsets WHERE plan_id=?", (plan.plan_id,))}
    r1 = rows[str(tmp_path / "logs/day1.jsonl.gz")]
    assert (r1["published"], r1["quarantined"], r1["done"], r1["interrupted"]) == (1497, 3, 1, 0)
    assert r1["watermark"] == sum(len(x) + 1 for x in day1) and r1["line"] == 1500
    states = {r["state"] for r in event_items(conn, plan)}
    assert states == {"done"}

    # A finished plan publishes nothing more.
    again, _ = run_replay(cfg, conn, plan)
    assert again.events == 0 and again.quarantined == 0
    assert drain(verification_path(topic), quiet_pulls=1) == []


def test_derived_event_ids_are_stable_across_runs(emulators, tmp_path, write_config) -> None:
    lines = [json.dumps({"n": i, "ts": 1714521600 + i}).encode() for i in range(300)]
    write_log(tmp_path / "logs" / "anon.jsonl.gz", lines)
    received = []
    for run in range(2):
        topic_id = unique_name("topic")
        _make_topic(topic_id)
        cfg, conn, plan = setup_plan(
            tmp_path, write_config, [listener_cfg(tmp_path, topic_id, event_id_field=None)], name=f"run{run}"
        )
        run_replay(cfg, conn, plan)
        received.append(sorted(m.attributes["event_id"] for m in drain(verification_path(topic_id), expect=300)))
        conn.close()
    assert received[0] == received[1] and len(set(received[0])) == 300
    # ... and equal to what inventory's digest expects.
    src = cfg.listener_source("plays")
    scan = scan_file(str(tmp_path / "logs/anon.jsonl.gz"), src)
    got = IdDigest()
    for eid in received[0]:
        got.add(eid)
    assert got == scan.digest


def test_resume_from_watermark_publishes_only_the_rest(emulators, topic, tmp_path, write_config) -> None:
    lines = [event(i) for i in range(500)]
    lines[300] = b"garbage"
    write_log(tmp_path / "logs" / "d.jsonl.gz", lines)
    cfg, conn, plan = setup_plan(tmp_path, write_config, [listener_cfg(tmp_path, topic)])
    path = str(tmp_path / "logs/d.jsonl.gz")
    wm = sum(len(x) + 1 for x in lines[:200])
    with ledger.transaction(conn):
        conn.execute(
            "INSERT INTO offsets(plan_id, source, path, watermark, line, published) VALUES(?,?,?,?,?,?)",
            (plan.plan_id, "plays", path, wm, 200, 200),
        )
    summary, _ = run_replay(cfg, conn, plan)
    ids = sorted(m.attributes["event_id"] for m in drain(verification_path(topic), expect=299))
    assert ids == [f"e{i:06d}" for i in range(200, 500) if i != 300]
    assert summary.events == 299 and summary.quarantined == 1
    row = conn.execute("SELECT * FROM offsets WHERE plan_id=?", (plan.plan_id,)).fetchone()
    assert (row["published"], row["quarantined"], row["line"], row["done"]) == (499, 1, 500, 1)


def test_stop_drains_then_resume_completes_without_loss_or_duplicates(emulators, topic, tmp_path, write_config):
    lines = [event(i) for i in range(12000)]
    for i in (5, 4000, 11999):
        lines[i] = b"broken line"
    write_log(tmp_path / "logs" / "a.jsonl.gz", lines[:6000])
    write_log(tmp_path / "logs" / "b.jsonl.gz", lines[6000:])
    cfg, conn, plan = setup_plan(
        tmp_path, write_config, [listener_cfg(tmp_path, topic)], pubsub={"max_in_flight_messages": 1000}
    )
    stop = threading.Event()

    def on_event(e: Event) -> None:
        if e.kind == "events":
            stop.set()

    first, _ = run_replay(cfg, conn, plan, stop=stop, report=on_event)
    assert first.interrupted and 0 < first.events < 11997 and first.files_done == 0
    assert first.max_possible_duplicates == 0  # a clean stop waits for every ack
    row = conn.execute(
        "SELECT SUM(interrupted), SUM(published) FROM offsets WHERE plan_id=?", (plan.plan_id,)
    ).fetchone()
    assert row[0] == 0 and row[1] == first.events

    second, _ = run_replay(cfg, conn, plan)
    assert not second.interrupted and second.files_done == 2
    assert first.events + second.events == 11997
    assert first.quarantined + second.quarantined == 3
    ids = [m.attributes["event_id"] for m in drain(verification_path(topic), expect=11997)]
    assert len(ids) == 11997 and len(set(ids)) == 11997
    entries = list(iter_quarantine(cfg.project.state_dir, plan.plan_id))
    assert sorted(e["line"] for e in entries) == [6, 4001, 6000]  # no duplicate entries


def test_truncated_gzip_publishes_what_is_readable(emulators, topic, tmp_path, write_config) -> None:
    lines = [event(i) for i in range(3000)]
    full = write_log(tmp_path / "src" / "t.jsonl.gz", lines)
    blob = full.read_bytes()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "t.jsonl.gz").write_bytes(blob[: len(blob) * 2 // 3])
    cfg, conn, plan = setup_plan(tmp_path, write_config, [listener_cfg(tmp_path, topic)])
    expected = scan_file(str(tmp_path / "logs/t.jsonl.gz"), cfg.listener_source("plays"))
    assert expected.anomaly and 0 < expected.events < 3000

    summary, _ = run_replay(cfg, conn, plan)
    assert summary.events == expected.events and summary.quarantined == 1 and summary.files_done == 1
    assert len(summary.anomalies) == 1 and "truncated gzip" in summary.anomalies[0]
    ids = [m.attributes["event_id"] for m in drain(verification_path(topic), expect=expected.events)]
    assert sorted(ids) == [f"e{i:06d}" for i in range(expected.events)]
    (entry,) = iter_quarantine(cfg.project.state_dir, plan.plan_id)
    assert entry["kind"] == "truncated"
    item = event_items(conn, plan)[0]
    assert item["state"] == "done" and "truncated gzip" in item["last_error"]


def test_changed_source_is_not_replayed(emulators, topic, tmp_path, write_config) -> None:
    path = write_log(tmp_path / "logs" / "c.jsonl", [event(i) for i in range(10)], gz=False)
    cfg, conn, plan = setup_plan(tmp_path, write_config, [listener_cfg(tmp_path, topic)])
    with open(path, "ab") as fh:
        fh.write(event(99) + b"\n")
    summary, events = run_replay(cfg, conn, plan)
    assert summary.files_changed == 1 and summary.events == 0
    assert event_items(conn, plan)[0]["state"] == "source-changed"
    assert [e.kind for e in events] == ["source_changed"]
    assert drain(verification_path(topic), quiet_pulls=1) == []


def test_csv_rows_arrive_as_json_objects(emulators, topic, tmp_path, write_config) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "x.csv").write_bytes(b"event_id,ts,user\na1,1714521600,u1\nbad\na2,1714521601000,u2\n")
    cfg, conn, plan = setup_plan(tmp_path, write_config, [listener_cfg(tmp_path, topic, format="csv")])
    summary, _ = run_replay(cfg, conn, plan)
    assert (summary.events, summary.quarantined) == (2, 1)
    msgs = sorted(drain(verification_path(topic), expect=2), key=lambda m: m.attributes["event_id"])
    assert [json.loads(m.data) for m in msgs] == [
        {"event_id": "a1", "ts": "1714521600", "user": "u1"},
        {"event_id": "a2", "ts": "1714521601000", "user": "u2"},
    ]
    assert msgs[1].attributes["event_time"] == "2024-05-01T00:00:01Z"


def test_csv_record_with_quoted_line_breaks_is_one_event_and_the_watermark_counts_its_lines(
    emulators, topic, tmp_path, write_config
) -> None:
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "x.csv"
    log.write_bytes(b'event_id,note,user\na1,"two\nlines",u1\na2,"a ""b""",u2\na3,plain,u3\na4,"x\ny",u4\n')
    cfg, conn, plan = setup_plan(tmp_path, write_config, [listener_cfg(tmp_path, topic, format="csv")])
    summary, _ = run_replay(cfg, conn, plan)
    assert (summary.events, summary.quarantined) == (4, 0)
    msgs = {m.attributes["event_id"]: m for m in drain(verification_path(topic), expect=4)}
    assert json.loads(msgs["a1"].data)["note"] == "two\nlines"
    assert json.loads(msgs["a2"].data)["note"] == 'a "b"'
    assert [msgs[e].attributes["source"].rsplit(":", 1)[1] for e in ("a1", "a2", "a3", "a4")] == ["2", "4", "5", "6"]
    row = conn.execute("SELECT * FROM offsets WHERE plan_id=?", (plan.plan_id,)).fetchone()
    assert (row["watermark"], row["line"], row["done"]) == (log.stat().st_size, 7, 1)  # physical lines


# --- publisher -----------------------------------------------------------------------------------


def _make_topic(topic_id: str, ordered_subscription: str | None = None) -> None:
    pub = clients.publisher_client()
    sub = clients.subscriber_client()
    try:
        tp = pub.topic_path(PROJECT, topic_id)
        pub.create_topic(name=tp)
        sub.create_subscription(
            name=sub.subscription_path(PROJECT, names.verification_subscription(topic_id)), topic=tp
        )
        if ordered_subscription:
            sub.create_subscription(
                request={
                    "name": sub.subscription_path(PROJECT, ordered_subscription),
                    "topic": tp,
                    "enable_message_ordering": True,
                }
            )
    finally:
        sub.close()


def test_messages_with_the_same_ordering_key_keep_their_order(emulators) -> None:
    topic_id = unique_name("topic")
    ordered = topic_id + "-ordered"
    _make_topic(topic_id, ordered_subscription=ordered)
    results: list = []
    pub = EventPublisher(
        topic_path(PROJECT, topic_id),
        PubSubConfig(batch_max_messages=7),
        TransferConfig(),
        on_done=lambda tokens, ids, exc: results.append((tokens, exc)),
        lanes=3,
    )
    for i in range(600):
        key = f"k{i % 4}"
        pub.publish(f"{key}:{i}".encode(), {"event_id": str(i)}, i, key)
    pub.close()
    assert all(exc is None for _, exc in results) and sorted(t for toks, _ in results for t in toks) == list(range(600))
    msgs = drain(f"projects/{PROJECT}/subscriptions/{ordered}", expect=600)
    per_key: dict[str, list[int]] = {}
    for m in msgs:
        per_key.setdefault(m.ordering_key, []).append(int(m.attributes["event_id"]))
    assert sorted(per_key) == ["k0", "k1", "k2", "k3"]
    for key, seq in per_key.items():
        assert seq == sorted(seq), f"{key} out of order"
        assert len(seq) == 150


def test_failed_ordering_key_is_paused_until_resumed(emulators) -> None:
    results: list = []
    pub = EventPublisher(
        topic_path(PROJECT, "no-such-topic-for-pausing"),
        PubSubConfig(batch_max_messages=1),
        TransferConfig(retry_max_attempts=1),
        on_done=lambda tokens, ids, exc: results.append((tokens, exc)),
        lanes=1,
    )
    pub.publish(b"1", {"event_id": "1"}, "first", "key-a")
    pub.wait()
    assert results[0][0] == ["first"] and "NotFound" in type(results[0][1]).__name__
    assert pub.paused_keys == {"key-a"}
    pub.publish(b"2", {"event_id": "2"}, "second", "key-a")
    pub.publish(b"3", {"event_id": "3"}, "other", "key-b")
    pub.wait()
    by_token = {t: exc for toks, exc in results for t in toks}
    assert isinstance(by_token["second"], OrderingKeyPaused)  # never sent out of order
    assert "NotFound" in type(by_token["other"]).__name__  # other keys are still tried
    pub.resume_publish("key-a")
    pub.publish(b"4", {"event_id": "4"}, "after-resume", "key-a")
    pub.close()
    assert "NotFound" in type(dict((t, e) for toks, e in results for t in toks)["after-resume"]).__name__


def test_unavailable_endpoint_is_retried_and_counted(monkeypatch) -> None:
    from migrate.local.emulators import free_port

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nothing listens there
    sleeps: list[float] = []
    results: list = []
    pub = EventPublisher(
        topic_path(PROJECT, "t"),
        PubSubConfig(publish_timeout=5),
        TransferConfig(retry_max_attempts=3, retry_initial_delay=0.01),
        on_done=lambda tokens, ids, exc: results.append((tokens, exc)),
        lanes=1,
        retry_sleep=sleeps.append,
    )
    for i in range(5):
        pub.publish(b"x", {"event_id": str(i)}, i)
    pub.close()
    assert len(sleeps) == 2 and pub.stats.retries == 2 and pub.stats.retried_messages == 10
    assert pub.stats.failed_messages == 5 and results[0][0] == [0, 1, 2, 3, 4]
    assert "ServiceUnavailable" in type(results[0][1]).__name__


# --- rate limit ----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_token_bucket_limits_rate_without_real_sleeping() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, burst=100, clock=clock, sleep=clock.sleep)
    for _ in range(100):  # the first second's burst is free
        bucket.consume(1)
    assert clock.t == 1000.0
    for _ in range(500):
        bucket.consume(1)
    assert clock.t == pytest.approx(1005.0)  # 500 more events at 100/s
    clock.t += 10  # idle time refills at most one burst
    for _ in range(100):
        bucket.consume(1)
    assert clock.t == pytest.approx(1015.0)
    bucket.consume(1)
    assert clock.t == pytest.approx(1015.01)


def test_publisher_applies_events_per_second(emulators, topic) -> None:
    clock = FakeClock()
    results: list = []
    pub = EventPublisher(
        topic_path(PROJECT, topic),
        PubSubConfig(events_per_second=50),
        TransferConfig(),
        on_done=lambda tokens, ids, exc: results.append(exc),
        clock=clock,
        sleep=clock.sleep,
    )
    assert pub.max_messages == 5  # about ten requests a second at the limit
    for i in range(250):
        pub.publish(b"x", {"event_id": str(i)}, i)
    pub.close()
    assert clock.t == pytest.approx(1004.0)  # 50 free, then 200 at 50/s
    assert results and all(exc is None for exc in results)
    assert len(drain(verification_path(topic), expect=250)) == 250


# --- wire contract -------------------------------------------------------------------------------


def test_each_publish_request_carries_one_ordering_key_and_many_keys_are_in_flight(emulators, pubsub_wire) -> None:
    # Real Pub/Sub rejects a PublishRequest whose messages carry different ordering keys
    # (https://cloud.google.com/pubsub/docs/reference/rest/v1/PubsubMessage); the emulator does not.
    topic_id = unique_name("topic")
    _make_topic(topic_id)
    pubsub_wire.delay = 0.05  # a slow network: requests of different keys must overlap, not queue
    results: list = []
    pub = EventPublisher(
        topic_path(PROJECT, topic_id),
        PubSubConfig(),
        TransferConfig(),
        on_done=lambda tokens, ids, exc: results.append((tokens, exc)),
        lanes=4,
    )
    keys = [f"user-{k}" for k in range(8)]
    for i in range(800):
        key = keys[i % 8] if i % 10 else None  # every tenth message has no key
        pub.publish(f"{i}".encode(), {"event_id": str(i)}, i, key)
    pub.close()
    assert all(exc is None for _, exc in results)
    assert sorted(t for toks, _ in results for t in toks) == list(range(800))
    reqs = pubsub_wire.requests
    assert reqs and all(len(r.keys) == 1 for r in reqs), [sorted(r.keys) for r in reqs if len(r.keys) > 1]
    assert {k for r in reqs for k in r.keys} == {*keys, ""}
    assert sum(r.messages for r in reqs) == 800
    assert len(reqs) <= 9 * 2  # batched per key, not one request per message
    assert pubsub_wire.max_keys_in_flight >= 2


def test_a_key_is_paced_to_one_megabyte_per_second(emulators, pubsub_wire) -> None:
    # "If messages have ordering keys, the maximum publisher throughput is 1 MB/s per ordering key":
    # https://cloud.google.com/pubsub/quotas
    topic_id = unique_name("topic")
    _make_topic(topic_id)
    clock = FakeClock()
    results: list = []
    pub = EventPublisher(
        topic_path(PROJECT, topic_id),
        PubSubConfig(),
        TransferConfig(),
        on_done=lambda tokens, ids, exc: results.append(exc),
        lanes=1,
        clock=clock,
        sleep=clock.sleep,
    )
    for i in range(40):  # 4 MB under one key, plus 1 MB without a key (not paced)
        pub.publish(b"x" * 100_000, {"event_id": str(i)}, i, "hot-key")
    for i in range(10):
        pub.publish(b"y" * 100_000, {"event_id": f"n{i}"}, i)
    pub.close()
    assert results and all(exc is None for exc in results)
    keyed = [r for r in pubsub_wire.requests if r.keys == {"hot-key"}]
    assert len(keyed) >= 4 and all(r.size <= 1_000_000 + 200 for r in keyed)
    # the key's 4 MB took at least 3 seconds of the (fake) clock: each request waits for its predecessor's second
    assert clock.t - 1000.0 >= 3.0 and pub.stats.paced_seconds >= 3.0
