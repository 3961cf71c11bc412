"""The Pub/Sub wire contract itself (tests/pubsub_wire.py): each documented limit is caught on a request."""

from __future__ import annotations

import pytest
from google.pubsub_v1.types import pubsub as pst
from pubsub_wire import problems

PR, PM = pst.PublishRequest.pb(), pst.PubsubMessage.pb()


def request(*messages) -> object:
    return PR(topic="projects/p/topics/t", messages=list(messages))


def test_a_valid_request_has_no_problems() -> None:
    msgs = [PM(data=b"x" * 100, attributes={"k" * 256: "v" * 1024}, ordering_key="key") for _ in range(1000)]
    assert problems(request(*msgs)) == []


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([PM(data=b"a", ordering_key="k1"), PM(data=b"b", ordering_key="k2")], "2 ordering keys in one request"),
        ([PM(data=b"a", ordering_key="k1"), PM(data=b"b")], "2 ordering keys in one request"),
        ([PM(data=b"a")] * 1001, "1001 messages in one request"),
        ([PM(data=b"x" * 5_000_000), PM(data=b"y" * 5_000_000)], "bytes (limit 10000000)"),
        ([PM(data=b"a", attributes={f"a{i}": "v" for i in range(101)})], "101 attributes (limit 100)"),
        ([PM(data=b"a", attributes={"k" * 257: "v"})], "attribute key of 257 bytes"),
        ([PM(data=b"a", attributes={"k": "é" * 513})], "attribute 'k' of 1026 bytes"),
        ([PM(data=b"a", ordering_key="k" * 1025)], "ordering key of 1025 bytes"),
        ([PM()], "neither data nor attributes"),
    ],
)
def test_each_rule_is_caught(messages, expected) -> None:
    found = problems(request(*messages))
    assert any(expected in p for p in found), found
