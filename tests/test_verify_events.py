"""migrate verify, events side: drain the verification subscription and compare with the source logs."""

from __future__ import annotations

import base64
import json

from pubsubkit import drain
from test_verify_helpers import build_world
from typer.testing import CliRunner

from migrate import clients, names
from migrate.cli import app
from migrate.ledger import connect
from migrate.sources.eventlog import iter_records
from migrate.targets.subscription import Pulled
from migrate.verification import drain as draining
from migrate.verification.model import Drain


def _events_world(tmp_path, write_config, gcs_client, topic, **kw):
    return build_world(tmp_path, write_config, gcs_client, topic=topic, **kw)


def _sub_path(w) -> str:
    return f"projects/{w.cfg.project.id}/subscriptions/{names.verification_subscription(w.topic)}"


def _pull(w, n: int, *, ack: bool = True) -> list:
    """A consumer on the verification subscription: read n messages."""
    return drain(_sub_path(w), expect=n, limit=n, ack=ack, raw=True)


def test_clean_events_match_and_a_rerun_reports_the_same(tmp_path, write_config, gcs_client, topic):
    w = _events_world(tmp_path, write_config, gcs_client, topic)
    rep = w.verify()
    assert rep.ok, rep.to_dict()
    (e,) = rep.events
    assert (e.source, e.topic, e.files) == ("plays", topic, 1)
    assert e.inventory_events == e.expected_events == e.received_events == 12  # the malformed line is not an event
    assert e.digest_match and e.expected_digest == e.inventory_digest and not e.source_drift
    assert (e.missing, e.duplicates, e.unexpected, e.received_before) == (0, 0, 0, 0)
    (d,) = rep.drains
    assert (d.received, d.new, d.acked, d.this_plan, d.stopped) == (12, 12, 12, 12, "complete")

    again = w.verify()  # the subscription is empty now: the ledger remembers what verify drained
    (e2,) = again.events
    assert again.ok and again.drains[0].received == 0
    assert (e2.received_events, e2.received_before, e2.received_digest) == (12, 12, e.received_digest)
    assert any("drained by an earlier verify" in n for n in again.notes)


def test_event_consumed_away_is_named_missing(tmp_path, write_config, gcs_client, topic):
    w = _events_world(tmp_path, write_config, gcs_client, topic)
    (stolen,) = _pull(w, 1)
    stolen_id = stolen.message.attributes["event_id"]
    rep = w.verify(show=5)
    (e,) = rep.events
    assert not rep.ok
    assert (e.expected_events, e.received_events, e.missing, e.duplicates, e.unexpected) == (12, 11, 1, 0, 0)
    assert not e.digest_match
    assert e.examples["missing"] == [stolen_id]
    assert w.listing() == [f"+ event://plays/{stolen_id}"]


def test_event_published_twice_is_a_duplicate_unless_an_interrupted_run_explains_it(
    tmp_path, write_config, gcs_client, topic
):
    w = _events_world(tmp_path, write_config, gcs_client, topic)
    again = w.records()[4]
    w.publish([again])
    rep = w.verify()
    (e,) = rep.events
    assert not rep.ok
    assert (e.received_events, e.missing, e.duplicates, e.duplicates_explained, e.unexpected) == (13, 0, 1, 0, 0)
    assert e.examples["duplicates"] == [f"{again.event_id} (x2)"]
    assert w.listing() == [f"* event://plays/{again.event_id}"]

    # The same duplicate after a run that was interrupted with events in flight is expected at-least-once delivery.
    conn = connect(w.cfg.project.state_dir)
    conn.execute(
        "INSERT INTO offsets(plan_id, source, path, in_flight_max, interrupted) VALUES(?,?,?,?,?)",
        (w.plan.plan_id, "plays", str(w.log), 8, 1),
    )
    conn.close()
    rep = w.verify()
    (e,) = rep.events
    assert rep.ok
    assert (e.duplicates, e.duplicates_explained, e.duplicates_unexplained, e.interrupted_runs) == (1, 1, 0, 1)
    assert any("explained by 1 interrupted run" in n for n in rep.notes)


def test_unexpected_ids_other_plans_and_foreign_messages(tmp_path, write_config, gcs_client, topic):
    w = _events_world(tmp_path, write_config, gcs_client, topic)
    pub = clients.publisher_client()
    try:
        path = pub.topic_path(w.cfg.project.id, topic)
        futures = [
            pub.publish(path, b"{}", event_id="ghost-1", plan_id=w.plan.plan_id, listener="plays", source="x:1"),
            pub.publish(path, b"{}", event_id="ev-0001", plan_id="another-plan", listener="plays", source="x:1"),
            pub.publish(path, b"hello"),  # not written by migrate
        ]
        for f in futures:
            f.result(timeout=60)
    finally:
        pub.transport.close()
    rep = w.verify()
    (e,) = rep.events
    (d,) = rep.drains
    assert (e.received_events, e.unexpected, e.missing, e.duplicates) == (13, 1, 0, 0)
    assert e.examples["unexpected"] == ["ghost-1 (x1)"]
    assert (d.received, d.this_plan, d.other_plans, d.foreign) == (15, 13, 1, 1)
    assert not rep.ok
    assert w.listing() == ["- event://plays/ghost-1"]
    conn = connect(w.cfg.project.state_dir)
    kept = conn.execute("SELECT source, event_id, seen FROM event_ids WHERE plan_id = 'another-plan'").fetchall()
    conn.close()
    assert [tuple(r) for r in kept] == [("plays", "ev-0001", 1)]  # kept for that plan's own verify


def test_foreign_message_fails_only_with_strict(tmp_path, write_config, gcs_client, topic):
    w = _events_world(tmp_path, write_config, gcs_client, topic, n_events=3)
    pub = clients.publisher_client()
    try:
        pub.publish(pub.topic_path(w.cfg.project.id, topic), b"hello").result(timeout=60)
    finally:
        pub.transport.close()
    lenient = w.verify()
    assert lenient.ok and lenient.drains[0].foreign == 1
    pub = clients.publisher_client()
    try:
        pub.publish(pub.topic_path(w.cfg.project.id, topic), b"hello").result(timeout=60)
    finally:
        pub.transport.close()
    strict = w.verify(strict=True)
    assert not strict.ok and strict.drains[0].foreign == 1


def test_quarantined_records_are_not_expected(tmp_path, write_config, gcs_client, topic):
    w = _events_world(tmp_path, write_config, gcs_client, topic, publish=False)
    records = w.records()
    held = records[2]
    w.publish([r for r in records if r is not held])
    qdir = w.cfg.project.state_dir / "quarantine"
    qdir.mkdir(parents=True)
    (malformed,) = [r for r in iter_records(str(w.log), w.cfg.listener_source("plays")) if r.error]
    bad = {"file": str(w.log), "line": malformed.line, "offset": malformed.offset, "reason": "malformed", "raw_b64": ""}
    rec = {
        "file": str(w.log),
        "line": held.line,
        "offset": held.offset,
        "reason": "rejected by Pub/Sub",
        "raw_b64": base64.b64encode(held.data).decode(),
    }
    (qdir / f"{w.plan.plan_id}.jsonl").write_text(json.dumps(bad) + "\n" + json.dumps(rec) + "\n{torn")
    rep = w.verify()
    (e,) = rep.events
    assert rep.ok, rep.to_dict()
    assert (e.inventory_events, e.quarantined, e.quarantined_valid, e.expected_events, e.received_events) == (
        12,
        2,
        1,
        11,
        11,
    )
    assert e.digest_match


def test_redelivered_message_is_counted_once(tmp_path, write_config, gcs_client, topic):
    w = _events_world(tmp_path, write_config, gcs_client, topic, n_events=5)
    # A verify that committed what it pulled and died before acking: the same messages come back.
    msgs = _pull(w, 5, ack=False)
    assert len(msgs) == 5
    conn = connect(w.cfg.project.state_dir)
    first = Drain(topic=topic, subscription=_sub_path(w))
    pulled = [Pulled(m.message.message_id, dict(m.message.attributes), m.ack_id) for m in msgs]
    draining._persist(conn, topic, w.plan.plan_id, pulled, first)
    conn.close()
    assert (first.new, first.this_plan) == (5, 5)
    sub = clients.subscriber_client()
    try:
        sub.modify_ack_deadline(subscription=_sub_path(w), ack_ids=[m.ack_id for m in msgs], ack_deadline_seconds=0)
    finally:
        sub.close()
    rep = w.verify()
    (e,) = rep.events
    (d,) = rep.drains
    assert rep.ok, rep.to_dict()
    assert (d.received, d.redelivered, d.new) == (5, 5, 0)
    assert (e.received_events, e.duplicates) == (5, 0)


def test_failed_event_file_and_missing_subscription(tmp_path, write_config, gcs_client, topic):
    w = _events_world(tmp_path, write_config, gcs_client, topic, n_events=3)
    conn = connect(w.cfg.project.state_dir)
    conn.execute("UPDATE items SET state = 'failed', last_error = 'HTTP 403' WHERE kind = 'events'")
    conn.close()
    rep = w.verify()
    (e,) = rep.events
    assert not rep.ok and e.run_failed == 1
    assert w.listing() == [f"! file://{w.log}"]

    sub = clients.subscriber_client()
    try:
        sub.delete_subscription(subscription=_sub_path(w))
    finally:
        sub.close()
    result = CliRunner().invoke(
        app, ["verify", str(w.plan.path), "--config", str(w.cfg.path), "--pull-timeout", "1", "--quiet-period", "1"]
    )
    assert result.exit_code == 1
    assert "verification subscription" in result.stderr and "not found" in result.stderr
    assert "Traceback" not in result.output


def test_cli_json_with_objects_and_events(tmp_path, write_config, gcs_client, bucket, topic):
    w = build_world(tmp_path, write_config, gcs_client, bucket=bucket, topic=topic, n_objects=2, n_events=4)
    _pull(w, 1)
    args = ["verify", "wave1", "--config", str(w.cfg.path), "--json", "--pull-timeout", "1", "--quiet-period", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["objects"]["matched"] == 2
    (ev,) = doc["events"]
    assert (ev["missing"], ev["received_events"], ev["ok"]) == (1, 3, False)
    assert doc["problem_counts"]["+"] == 1


# --- when draining stops (issue 12 §5) ------------------------------------------------------------


class EmptyAtFirst:
    """Harness fault: real Pub/Sub may answer empty pulls while a backlog remains
    (https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions/pull); the emulator
    does not, so the first `empties` pulls of this reader come back empty before reaching it."""

    def __init__(self, reader, empties: int) -> None:
        self.reader, self.path, self.empties, self.pulls = reader, reader.path, empties, 0

    def pull(self, max_messages: int, timeout: float) -> list:
        self.pulls += 1
        if self.pulls <= self.empties:
            return []
        return self.reader.pull(max_messages, timeout)

    def acknowledge(self, ack_ids) -> int:
        return self.reader.acknowledge(ack_ids)

    def close(self) -> None:
        self.reader.close()


def _readers(w, empties: int):
    from migrate.targets.subscription import PubSubSubscription

    made: list[EmptyAtFirst] = []

    def factory(topic: str):
        real = PubSubSubscription(w.cfg.project.id, names.verification_subscription(topic), w.cfg.transfer)
        made.append(EmptyAtFirst(real, empties))
        return made[-1]

    return factory, made


def test_empty_pulls_do_not_end_the_drain_while_expected_events_are_unseen(tmp_path, write_config, gcs_client, topic):
    w = _events_world(tmp_path, write_config, gcs_client, topic)
    factory, made = _readers(w, empties=12)  # more empty pulls than any fixed count of "empties" would allow
    rep = w.verify(reader_factory=factory)
    (d,) = rep.drains
    (e,) = rep.events
    assert rep.ok, rep.to_dict()
    assert made[0].pulls > 12 and d.pulls > 12
    assert (d.stopped, d.received, d.expected_left, e.received_events, e.missing) == ("complete", 12, 0, 12, 0)
    assert any("stopped: every expected event was seen" in n for n in rep.notes), rep.notes
    assert d.streams == 4  # parallel pull streams by default


def test_a_missing_event_ends_the_drain_after_the_stated_quiet_period(tmp_path, write_config, gcs_client, topic):
    w = _events_world(tmp_path, write_config, gcs_client, topic)
    (stolen,) = _pull(w, 1)
    rep = w.verify()  # FAST_DRAIN: a quiet period of 2 s
    (d,) = rep.drains
    assert not rep.ok and rep.events[0].missing == 1
    assert (d.stopped, d.expected_left, d.received, d.quiet_seconds) == ("quiet", 1, 11, 2.0)
    assert d.seconds >= 2.0
    note = next(n for n in rep.notes if "stopped:" in n)
    assert "nothing arrived for 2 s and nothing was in flight, with 1 expected event(s) not seen" in note
    assert rep.to_dict()["drains"][0]["why_stopped"].startswith("nothing arrived for 2 s")
    md = (w.plan.path.parent / f"{w.plan.name}.verify.md").read_text()
    assert "nothing arrived for 2 s" in md
