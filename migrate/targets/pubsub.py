"""Publish events to a Pub/Sub topic: batched, bounded, retried, ordered, rate limited.

Design (chosen by measurement, see README "Event replay speed"): instead of the high-level
`PublisherClient.publish()` (one future, one lock round and one proto-plus message per event),
each message is encoded once into protobuf wire bytes (`encode_message`, checked against the
generated classes in the tests) and sent in ready-made PublishRequests of up to
`batch_max_messages` messages and `batch_max_bytes` bytes over the client's own gRPC channel
(`/google.pubsub.v1.Publisher/Publish`), from a few sender threads ("lanes").

- Bounded memory: a full batch waits before it is handed to a lane while more than
  `max_in_flight_messages` messages (or `max_in_flight_bytes`) await acknowledgement; besides
  those, at most one open batch per lane (plus one without ordering keys) is being filled.
- Retries: each request is retried with `migrate.retry` (shared classifier, backoff, budget);
  every retry is counted, and so are the messages of retried requests, because a request that
  timed out may have been stored anyway (a possible duplicate, same event_id).
- Ordering keys: every message with a key goes to the lane chosen by a stable hash of the key,
  and a lane sends one request at a time, so messages with the same key are published in the
  order `publish()` saw them. As with the client library's `resume_publish`: once a request
  carrying a key fails for good, that key is paused; its queued and future messages fail at
  once with `OrderingKeyPaused` (never sent out of order) until `resume_publish(key)`.
- Rate limit: `events_per_second` > 0 puts a token bucket in front of `publish()`; the bucket
  takes an injectable clock and sleep, so it is tested without waiting.

Completion is reported through `on_done(tokens, message_ids, error)`, called from a lane thread
once per request (or per group of failed messages); tokens are whatever the caller passed with
each message, in order.
"""

from __future__ import annotations

import queue
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.api_core import exceptions as gexc

from migrate.config import PubSubConfig, TransferConfig
from migrate.ratelimit import TokenBucket
from migrate.retry import retrying

DEFAULT_LANES = 6
DEFAULT_MAX_IN_FLIGHT_BYTES = 128 * 1024 * 1024

OnDone = Callable[[list[Any], list[str] | None, BaseException | None], None]


# --- protobuf wire encoding ------------------------------------------------------------------------
# PublishRequest{1: topic, 2: repeated PubsubMessage}; PubsubMessage{1: data, 2: map<string,string>
# attributes (entries {1: key, 2: value}), 5: ordering_key}. Length-delimited fields: tag, varint, bytes.


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [_varint(i) for i in range(1 << 14)]


def _vi(n: int) -> bytes:
    return _SMALL[n] if n < 16384 else _varint(n)


_KEYS: dict[str, bytes] = {}


def encode_attributes(attributes: dict[str, str]) -> bytes:
    """Attribute map entries as wire bytes; pass constant ones to publish(fixed_attributes=...) once."""
    small = _SMALL
    parts: list[bytes] = []
    for k, v in attributes.items():
        kb = _KEYS.get(k)
        if kb is None:
            raw = k.encode("utf-8")
            kb = _KEYS[k] = b"\x0a" + _vi(len(raw)) + raw
        vb = v.encode("utf-8")
        n = len(vb)
        vlen = small[n] if n < 16384 else _varint(n)
        m = len(kb) + 1 + len(vlen) + n
        parts += (b"\x12", small[m] if m < 16384 else _varint(m), kb, b"\x12", vlen, vb)
    return b"".join(parts)


def encode_message(
    data: bytes, attributes: dict[str, str], ordering_key: str | None = None, fixed_attributes: bytes = b""
) -> bytes:
    """One PubsubMessage as it appears inside a PublishRequest (field 2, length-prefixed)."""
    n = len(data)
    body = b"".join(
        (
            b"\x0a",
            _SMALL[n] if n < 16384 else _varint(n),
            data,
            encode_attributes(attributes),
            fixed_attributes,
            b"\x2a" + _vi(len(kb := ordering_key.encode("utf-8"))) + kb if ordering_key else b"",
        )
    )
    n = len(body)
    return b"\x12" + (_SMALL[n] if n < 16384 else _varint(n)) + body


def encode_request_head(topic: str) -> bytes:
    raw = topic.encode("utf-8")
    return b"\x0a" + _vi(len(raw)) + raw


def _identity(b: bytes) -> bytes:
    return b


def _response_type():
    from google.pubsub_v1.types import pubsub as pst

    return pst.PublishResponse.pb()


class OrderingKeyPaused(Exception):
    """A message's ordering key failed earlier; call resume_publish(key) before sending it again."""

    def __init__(self, key: str) -> None:
        super().__init__(f"ordering key {key!r} is paused after an earlier publish failure")
        self.key = key


class PublisherClosed(RuntimeError):
    pass


# --- rate limit ------------------------------------------------------------------------------------


# --- batches ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    messages: list = field(default_factory=list)  # encoded messages (wire bytes)
    tokens: list = field(default_factory=list)
    keys: list = field(default_factory=list)  # ordering key per message (None for none)
    nbytes: int = 0  # encoded size
    data_bytes: int = 0  # payload size


@dataclass
class PublisherStats:
    requests: int = 0
    messages: int = 0
    bytes: int = 0
    retries: int = 0
    retried_messages: int = 0  # messages in requests that were re-sent: possible duplicates
    failed_messages: int = 0
    max_in_flight: int = 0


class EventPublisher:
    """Batched, flow-controlled publishing to one topic. Thread-safe `publish()` from one producer."""

    def __init__(
        self,
        topic_path: str,
        cfg: PubSubConfig,
        retry_cfg: TransferConfig,
        *,
        on_done: OnDone,
        on_retry: Callable[[BaseException, int, list[Any]], None] | None = None,
        client: Any = None,
        lanes: int = DEFAULT_LANES,
        max_in_flight_bytes: int = DEFAULT_MAX_IN_FLIGHT_BYTES,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        retry_sleep: Callable[[float], None] | None = None,
    ) -> None:
        from migrate.clients import publisher_client

        self.topic = topic_path
        self.cfg = cfg
        self.retry_cfg = retry_cfg
        self.on_done = on_done
        self.on_retry = on_retry
        self._retry_sleep = retry_sleep
        self.stats = PublisherStats()
        self.errors: list[BaseException] = []
        self._client = client or publisher_client()
        self._head = encode_request_head(topic_path)
        channel = self._client.transport.grpc_channel
        self._stub = channel.unary_unary(
            "/google.pubsub.v1.Publisher/Publish",
            request_serializer=_identity,
            response_deserializer=_response_type().FromString,
        )
        self.max_messages = cfg.batch_max_messages
        self.max_bytes = cfg.batch_max_bytes
        self.bucket: TokenBucket | None = None
        if cfg.events_per_second and cfg.events_per_second > 0:
            # one second of events as the burst; the shared bucket goes into debt, so the long-run rate is exact
            self.bucket = TokenBucket(
                cfg.events_per_second, burst=max(1.0, cfg.events_per_second), clock=clock, sleep=sleep
            )
            # About ten requests a second at the limit, so a slow rate does not hold a batch for long.
            self.max_messages = max(1, min(self.max_messages, int(cfg.events_per_second // 10) or 1))
        self.max_in_flight = max(self.max_messages, cfg.max_in_flight_messages)
        self.max_in_flight_bytes = max(self.max_bytes * 2, max_in_flight_bytes)
        self._cond = threading.Condition()
        self._in_flight = 0
        self._in_flight_bytes = 0
        self._paused: set[str] = set()
        self._closed = False
        self._lanes = max(1, lanes)
        self._queues: list[queue.Queue] = [queue.Queue(maxsize=2) for _ in range(self._lanes)]
        self._open: list[_Batch] = [_Batch() for _ in range(self._lanes)]  # keyed messages, per lane
        self._unkeyed = _Batch()
        self._rr = 0
        self._threads = [
            threading.Thread(target=self._lane, args=(i,), name=f"pubsub-lane-{i}", daemon=True)
            for i in range(self._lanes)
        ]
        for t in self._threads:
            t.start()

    # --- producer side ---------------------------------------------------------------------------

    def publish(
        self,
        data: bytes,
        attributes: dict[str, str],
        token: Any,
        ordering_key: str | None = None,
        fixed_attributes: bytes = b"",
    ) -> None:
        """Queue one message; blocks for flow control and the rate limit. Completion goes to on_done.

        fixed_attributes: more attributes, pre-encoded with encode_attributes() (constant ones).
        """
        if self._closed:
            raise PublisherClosed("publisher is closed")
        if self.bucket is not None:
            self.bucket.consume(1)
        msg = encode_message(data, attributes, ordering_key, fixed_attributes)
        size = len(msg)
        if ordering_key:
            lane = zlib.crc32(ordering_key.encode("utf-8")) % self._lanes
            batch = self._open[lane]
        else:
            lane = -1
            batch = self._unkeyed
        if batch.messages and (len(batch.messages) >= self.max_messages or batch.nbytes + size > self.max_bytes):
            self._dispatch(lane)
            batch = self._open[lane] if lane >= 0 else self._unkeyed
        batch.messages.append(msg)
        batch.tokens.append(token)
        batch.keys.append(ordering_key or None)
        batch.nbytes += size
        batch.data_bytes += len(data)
        if len(batch.messages) >= self.max_messages:
            self._dispatch(lane)

    def flush(self) -> None:
        """Send every partly filled batch now."""
        self._dispatch(-1)
        for lane in range(self._lanes):
            self._dispatch(lane)

    def wait(self, timeout: float | None = None) -> bool:
        """Flush, then wait until every message is acknowledged or failed. False on timeout."""
        self.flush()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None else 1.0)
        return True

    def close(self) -> None:
        """Flush, wait for everything in flight, stop the lanes."""
        if self._closed:
            return
        self.wait()
        self._closed = True
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join()

    def resume_publish(self, ordering_key: str) -> None:
        """Un-pause a key after a failure, as the client library's resume_publish does."""
        with self._cond:
            self._paused.discard(ordering_key)

    @property
    def paused_keys(self) -> set[str]:
        with self._cond:
            return set(self._paused)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _over(self, n: int, nbytes: int) -> bool:
        return self._in_flight + n > self.max_in_flight or self._in_flight_bytes + nbytes > self.max_in_flight_bytes

    def _reserve(self, n: int, nbytes: int) -> None:
        """Wait until a batch of n messages fits in the in-flight limits (lanes release as they finish)."""
        with self._cond:
            while self._in_flight and self._over(n, nbytes):
                self._cond.wait(1.0)
            self._in_flight += n
            self._in_flight_bytes += nbytes
            if self._in_flight > self.stats.max_in_flight:
                self.stats.max_in_flight = self._in_flight

    def _dispatch(self, lane: int) -> None:
        if lane < 0:
            batch = self._unkeyed
            if not batch.messages:
                return
            self._unkeyed = _Batch()
            target = self._rr % self._lanes
            self._rr += 1
        else:
            batch = self._open[lane]
            if not batch.messages:
                return
            self._open[lane] = _Batch()
            target = lane
        self._reserve(len(batch.messages), batch.nbytes)
        self._queues[target].put(batch)

    # --- lane side --------------------------------------------------------------------------------

    def _lane(self, index: int) -> None:
        q = self._queues[index]
        while True:
            batch = q.get()
            if batch is None:
                return
            try:
                self._send(batch)
            except BaseException as exc:  # a bug in a callback must not kill the lane silently
                self.errors.append(exc)
            finally:
                with self._cond:
                    self._in_flight -= len(batch.messages)
                    self._in_flight_bytes -= batch.nbytes
                    self._cond.notify_all()

    def _send(self, batch: _Batch) -> None:
        if any(batch.keys):
            with self._cond:
                paused = set(self._paused)
            if paused and any(k in paused for k in batch.keys):
                batch = self._fail_paused(batch, paused)
                if not batch.messages:
                    return
        request = self._head + b"".join(batch.messages)
        count = len(batch.messages)

        def on_retry(exc: BaseException, attempt: int) -> None:
            with self._cond:
                self.stats.retries += 1
                self.stats.retried_messages += count
            if self.on_retry is not None:
                self.on_retry(exc, attempt, batch.tokens)

        def call():
            try:
                return self._stub(request, timeout=self.cfg.publish_timeout)
            except grpc.RpcError as exc:  # as google.api_core exceptions, for the shared classifier
                raise gexc.from_grpc_error(exc) from exc

        try:
            response = retrying(self.retry_cfg, on_retry, sleep=self._retry_sleep)(call)
        except BaseException as exc:
            keys = {k for k in batch.keys if k}
            with self._cond:
                self._paused |= keys
                self.stats.failed_messages += count
            self.on_done(batch.tokens, None, exc)
            return
        with self._cond:
            self.stats.requests += 1
            self.stats.messages += count
            self.stats.bytes += batch.data_bytes
        self.on_done(batch.tokens, list(response.message_ids), None)

    def _fail_paused(self, batch: _Batch, paused: set[str]) -> _Batch:
        keep = _Batch()
        failed_tokens: list[Any] = []
        first_key = None
        for msg, token, key in zip(batch.messages, batch.tokens, batch.keys, strict=True):
            if key is not None and key in paused:
                failed_tokens.append(token)
                first_key = first_key or key
            else:
                keep.messages.append(msg)
                keep.tokens.append(token)
                keep.keys.append(key)
        with self._cond:
            self.stats.failed_messages += len(failed_tokens)
        self.on_done(failed_tokens, None, OrderingKeyPaused(first_key or ""))
        return keep


def topic_path(project: str, topic: str) -> str:
    return f"projects/{project}/topics/{topic}"


__all__: Sequence[str] = (
    "EventPublisher",
    "OrderingKeyPaused",
    "encode_attributes",
    "encode_message",
    "PublisherStats",
    "topic_path",
)
