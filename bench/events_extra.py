"""S4 variants: `migrate run` with ordering keys, and the drain rate of `migrate verify`.

- keyed: the same events with `ordering_key_field = "country"` (10 keys). Pub/Sub takes one ordering key
  per PublishRequest and at most 1 MB/s per key (https://cloud.google.com/pubsub/quotas), and migrate
  keeps to both even on the emulator, so this row is bounded by about 10 MB/s of messages.
- verify: after the plain migrate run, `migrate verify` drains the verification subscription with its
  parallel pull streams (the bench's own check drains a second subscription on the same topic). The
  row's events/s is the drain rate migrate reports (messages read / seconds of draining); its wall time
  also covers re-reading the logs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

CHECK_SUBSCRIPTION = "bench-check"
KEYED_LABEL = "migrate run, ordering keys (country)"
VERIFY_LABEL = "migrate verify (drain)"
KEY_FIELD = "country"


def add_check_subscription(host: str, project: str, topic: str) -> str:
    """A second subscription the bench drains, so the verification subscription stays for migrate verify."""
    import os

    os.environ["PUBSUB_EMULATOR_HOST"] = host
    from google.cloud import pubsub_v1

    sub = pubsub_v1.SubscriberClient()
    try:
        sub.create_subscription(
            name=sub.subscription_path(project, CHECK_SUBSCRIPTION),
            topic=f"projects/{project}/topics/{topic}",
            ack_deadline_seconds=600,
        )
    finally:
        sub.close()
    return CHECK_SUBSCRIPTION


def verify_check(expected: int) -> Callable:
    """The verify step counts when migrate verify matched every expected event; its rate is the drain rate."""

    def check(m) -> tuple[bool, dict, dict, str | None]:
        doc = json.loads(m.stdout())
        drains = doc.get("drains") or [{}]
        d = drains[0]
        received = sum(int(x.get("received", 0)) for x in drains)
        seconds = sum(float(x.get("seconds", 0)) for x in drains)
        metrics = {
            "events": expected,
            "events_per_s": round(received / seconds, 1) if seconds else 0.0,
            "drain_seconds": seconds,
            "streams": d.get("streams"),
            "stopped": d.get("stopped"),
        }
        ok = bool(doc.get("ok")) and received == expected and d.get("stopped") == "complete"
        why = None if ok else f"verify ok={doc.get('ok')}, drained {received} of {expected}, stopped {d.get('stopped')}"
        return ok, {"drains": drains}, metrics, why

    return check


def verify_argv(migrate: Callable[..., list[str]], cfg: Path, plan: Path) -> list[str]:
    return migrate("verify", "-c", str(cfg), str(plan), "--json", "--quiet-period", "10")
