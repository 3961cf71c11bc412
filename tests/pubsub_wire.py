"""Pub/Sub wire contract: record every PublishRequest the product sends and check it against the
documented rules of the real service, which the emulator does not enforce.

The recorder is a gRPC client interceptor. The `pubsub_wire` fixture (tests/conftest.py, autouse)
attaches it where the product builds its channel: it replaces `migrate.clients.publisher_client`
with a factory that calls the product's own factory (same endpoint, same credentials) and wraps that
client's channel in the interceptor. Nothing in the product knows about it.

Rules checked on every request (each with the page that states it):
- one ordering key per request: "All PubsubMessages published in a given PublishRequest must
  specify the same ordering_key value."
  https://cloud.google.com/pubsub/docs/reference/rest/v1/PubsubMessage
- at most 1,000 messages and 10 MB per request; at most 100 attributes per message, attribute keys
  of at most 256 bytes and values of at most 1,024 bytes; ordering keys of at most 1 KB.
  https://cloud.google.com/pubsub/quotas (resource limits), https://cloud.google.com/pubsub/docs/ordering
- a message has non-empty data or at least one attribute.
  https://cloud.google.com/pubsub/docs/reference/rest/v1/PubsubMessage
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

PUBLISH = "/google.pubsub.v1.Publisher/Publish"
MAX_MESSAGES = 1000
MAX_REQUEST_BYTES = 10 * 1000 * 1000
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY = 256
MAX_ATTRIBUTE_VALUE = 1024
MAX_ORDERING_KEY = 1024


def _as_pb(request: Any):
    """The request as a protobuf PublishRequest, whatever form the caller sent it in."""
    from google.pubsub_v1.types import pubsub as pst

    if isinstance(request, (bytes, bytearray, memoryview)):
        return pst.PublishRequest.pb().FromString(bytes(request))
    if isinstance(request, pst.PublishRequest):  # proto-plus
        return pst.PublishRequest.pb(request)
    return request


def problems(req) -> list[str]:
    """Every documented rule this PublishRequest breaks (empty when it is valid on real Pub/Sub)."""
    out: list[str] = []
    keys = {m.ordering_key for m in req.messages}
    if len(keys) > 1:
        out.append(f"{len(keys)} ordering keys in one request: {sorted(keys)[:5]}")
    if len(req.messages) > MAX_MESSAGES:
        out.append(f"{len(req.messages)} messages in one request (limit {MAX_MESSAGES})")
    size = req.ByteSize()
    if size > MAX_REQUEST_BYTES:
        out.append(f"request of {size} bytes (limit {MAX_REQUEST_BYTES})")
    for i, m in enumerate(req.messages):
        if not m.data and not m.attributes:
            out.append(f"message {i}: neither data nor attributes")
        if len(m.attributes) > MAX_ATTRIBUTES:
            out.append(f"message {i}: {len(m.attributes)} attributes (limit {MAX_ATTRIBUTES})")
        for k, v in m.attributes.items():
            if len(k.encode("utf-8")) > MAX_ATTRIBUTE_KEY:
                out.append(f"message {i}: attribute key of {len(k.encode('utf-8'))} bytes (limit {MAX_ATTRIBUTE_KEY})")
            if len(v.encode("utf-8")) > MAX_ATTRIBUTE_VALUE:
                out.append(f"message {i}: attribute {k!r} of {len(v.encode('utf-8'))} bytes")
        if len(m.ordering_key.encode("utf-8")) > MAX_ORDERING_KEY:
            out.append(f"message {i}: ordering key of {len(m.ordering_key.encode('utf-8'))} bytes")
    return out


@dataclass
class Recorded:
    topic: str
    messages: int
    keys: frozenset[str]
    size: int
    problems: list[str]


@dataclass
class PublishRecorder(grpc.UnaryUnaryClientInterceptor):
    """Records a summary of every Publish call that passes through the channels it is attached to."""

    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0  # hold each Publish this long before sending it (a slow network, to make overlap visible)
    in_flight: int = 0
    max_in_flight: int = 0  # most Publish calls under way at the same moment
    max_keys_in_flight: int = 0  # most distinct non-empty ordering keys under way at the same moment
    _keys: dict[str, int] = field(default_factory=dict)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        if client_call_details.method not in (PUBLISH, PUBLISH.encode()):
            return continuation(client_call_details, request)
        req = _as_pb(request)
        keys = frozenset(m.ordering_key for m in req.messages)
        rec = Recorded(req.topic, len(req.messages), keys, req.ByteSize(), problems(req))
        with self.lock:
            self.requests.append(rec)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            for k in keys - {""}:
                self._keys[k] = self._keys.get(k, 0) + 1
            self.max_keys_in_flight = max(self.max_keys_in_flight, len(self._keys))
        try:
            if self.delay:
                time.sleep(self.delay)
            return continuation(client_call_details, request)
        finally:
            with self.lock:
                self.in_flight -= 1
                for k in keys - {""}:
                    self._keys[k] -= 1
                    if not self._keys[k]:
                        del self._keys[k]

    def violations(self) -> list[str]:
        with self.lock:
            return [f"request {i} to {r.topic}: {p}" for i, r in enumerate(self.requests) for p in r.problems]

    def messages(self) -> int:
        with self.lock:
            return sum(r.messages for r in self.requests)

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()


def recording_factory(original: Callable[..., Any], recorder: PublishRecorder) -> Callable[..., Any]:
    """A publisher-client factory: the product's own client, re-built over an intercepted channel."""

    def factory(*args: Any, **kwargs: Any):
        from google.cloud import pubsub_v1
        from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport

        base = original(*args, **kwargs)
        channel = grpc.intercept_channel(base.transport.grpc_channel, recorder)
        transport = PublisherGrpcTransport(host=base.transport._host, channel=channel)
        transport._credentials = base.transport._credentials  # a channel-built transport keeps none of its own
        return pubsub_v1.PublisherClient(transport=transport, client_options={"api_endpoint": base.api_endpoint})

    return factory
