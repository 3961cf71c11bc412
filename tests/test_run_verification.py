"""`migrate run` refuses to publish to a topic whose verification subscription is missing (issue 12 §5):
such events could never be verified. `--no-event-verification` publishes anyway."""

from __future__ import annotations

import json
import uuid

from typer.testing import CliRunner

from migrate import clients
from migrate.cli import app
from migrate.names import verification_subscription


def test_run_refuses_a_topic_without_its_verification_subscription(emulators, tmp_path, write_config, pubsub_wire):
    topic_id = f"topic-{uuid.uuid4().hex[:12]}"
    pub = clients.publisher_client()
    try:
        pub.create_topic(name=pub.topic_path(emulators.project, topic_id))  # and no subscription
    finally:
        pub.transport.close()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.jsonl").write_text("".join(json.dumps({"event_id": f"e{i}"}) + "\n" for i in range(5)))
    cfg = str(
        write_config(
            listeners=[
                {"name": "plays", "paths": [str(logs / "*.jsonl")], "topic": topic_id, "event_id_field": "event_id"}
            ]
        )
    )
    runner = CliRunner()
    for args in (["inventory"], ["plan", "--name", "w1"]):
        res = runner.invoke(app, [*args, "--config", cfg])
        assert res.exit_code == 0, res.output

    refused = runner.invoke(app, ["run", "w1", "--config", cfg])
    assert refused.exit_code == 2, refused.output
    errors = [line for line in refused.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in refused.output
    assert f"verification subscription '{verification_subscription(topic_id)}'" in errors[0]
    assert "terraform" in errors[0] and "--no-event-verification" in errors[0]
    assert pubsub_wire.messages() == 0  # nothing was published

    forced = runner.invoke(app, ["run", "w1", "--config", cfg, "--no-event-verification", "--json"])
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["events"]["events"] == 5 and pubsub_wire.messages() == 5
