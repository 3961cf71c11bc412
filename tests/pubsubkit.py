"""The one way tests read a Pub/Sub subscription: drain() (pull, ack, stop once quiet)."""

from __future__ import annotations

import time

from google.api_core import exceptions as gexc

from migrate import clients, names

PROJECT = "test-project"


def verification_path(topic: str, project: str = PROJECT) -> str:
    """The verification subscription of a topic (created by the topic fixture and provisioning)."""
    return f"projects/{project}/subscriptions/{names.verification_subscription(topic)}"


def drain(
    subscription: str,
    *,
    expect: int = 0,
    limit: int | None = None,
    ack: bool = True,
    quiet_pulls: int = 2,
    pull_timeout: float = 2.0,
    max_seconds: float = 120.0,
    raw: bool = False,
) -> list:
    """Pull everything from a subscription path: the messages (ReceivedMessages with `raw`).

    Pulls answer at once while fewer than `expect` messages arrived; after that each pull is held open
    for `pull_timeout` seconds, and `quiet_pulls` of them in a row bringing nothing end the drain, so a
    straggler (a redelivery, a late duplicate) arriving within that window is still counted. `limit`
    stops after that many messages; `ack=False` leaves them to be redelivered.
    """
    sub = clients.subscriber_client()
    got: list = []
    quiet = 0
    deadline = time.monotonic() + max_seconds
    try:
        while quiet < quiet_pulls and time.monotonic() < deadline and (limit is None or len(got) < limit):
            caught_up = len(got) >= expect
            request = {
                "subscription": subscription,
                "max_messages": 1000 if limit is None else min(1000, limit - len(got)),
                # an empty subscription answers a return_immediately pull at once; held open once caught up
                "return_immediately": not caught_up,
            }
            try:
                resp = sub.pull(request=request, timeout=pull_timeout if caught_up else 10)
                received = list(resp.received_messages)
            except gexc.DeadlineExceeded:
                received = []
            if not received:
                if caught_up:
                    quiet += 1
                else:
                    time.sleep(0.05)
                continue
            quiet = 0
            got.extend(received)
            if ack:
                sub.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in received])
    finally:
        sub.close()
    return got if raw else [m.message for m in got]
