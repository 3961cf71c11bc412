"""Publish events to a Pub/Sub topic: batched, bounded, retried, ordered, rate limited.

Design (chosen by measurement, see README "Event replay speed"): instead of the high-level
`PublisherClient.publish()` (one future, one lock round and one proto-plus message per event), each
message is encoded once into PublishRequest wire bytes (`pubsub_encoding`, checked against the
generated classes in the tests), and ready-made requests of up to `batch_max_messages` messages and
`batch_max_bytes` bytes are sent over the client's own gRPC channel (`/google.pubsub.v1.Publisher/Publish`)
from sender threads ("lanes"): a few for messages without a key, more for keyed ones, whose requests are
smaller.

- One ordering key per request. Real Pub/Sub rejects a PublishRequest whose messages carry different
  ordering keys ("All PubsubMessages published in a given PublishRequest must specify the same
  ordering_key value": https://cloud.google.com/pubsub/docs/reference/rest/v1/PubsubMessage); the
  emulator accepts it. So there is one open batch per key (and one for messages without a key). When
  more than `max_held` messages wait in open batches, the oldest batches are sent, so many keys are in
  flight at once without holding memory or messages back.
- Per-key order: every batch of a key goes to the lane chosen by a stable hash of the key, and a lane
  sends one request at a time, so a key's messages are published in the order `publish()` saw them
  (https://cloud.google.com/pubsub/docs/ordering). As with the client library's `resume_publish`: once
  a request of a key fails for good, that key is paused; its queued and future messages fail at once
  with `OrderingKeyPaused` (never sent out of order) until `resume_publish(key)`.
- Per-key throughput: Pub/Sub takes at most 1 MB/s per ordering key
  (https://cloud.google.com/pubsub/quotas, "Publisher throughput"). A keyed request holds at most
  1 MB, and a lane does not start a key's next request before the key's previous bytes fit that rate.
- Bounded memory: a full batch waits before it is handed to a lane while more than
  `max_in_flight_messages` messages (or `max_in_flight_bytes`) await acknowledgement.
- Retries: each request is retried with `migrate.retry` (shared classifier, backoff, budget); every
  retry is counted, and so are the messages of retried requests, because a request that timed out may
  have been stored anyway (a possible duplicate, same event_id).
- Rate limit: `events_per_second` > 0 puts a token bucket in front of `publish()`; the bucket takes an
  injectable clock and sleep, so it is tested without waiting (the per-key pacing uses them too).

Completion is reported through `on_done(tokens, message_ids, error)`, called from a lane thread once per
request (or per failed batch); tokens are whatever the caller passed with each message, in order.
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
from migrate.targets.pubsub_encoding import encode_attributes, encode_message, encode_request_head

DEFAULT_LANES = 6  # lanes for messages without a key: a few large requests keep the emulator and the GIL busy
# Lanes for keyed messages: with many distinct keys requests are small (one key each), so throughput is the
# number of requests in flight (measured on the emulator with a distinct key per event: see the commit).
DEFAULT_KEY_LANES = 32
DEFAULT_MAX_IN_FLIGHT_BYTES = 128 * 1024 * 1024
PUBLISH_METHOD = "/google.pubsub.v1.Publisher/Publish"
# Publisher throughput per ordering key: https://cloud.google.com/pubsub/quotas ("If messages have
# ordering keys, the maximum publisher throughput is 1 MB/s per ordering key").
KEY_BYTES_PER_SECOND = 1000 * 1000
KEY_MAX_REQUEST_BYTES = 1000 * 1000
PACE_FORGET = 4096  # prune the per-key pacing table of a lane beyond this many keys

OnDone = Callable[[list[Any], list[str] | None, BaseException | None], None]


def _response_type():
    from google.pubsub_v1.types import pubsub as pst

    return pst.PublishResponse.pb()


def _as_is(request: bytes) -> bytes:
    return request


class OrderingKeyPaused(Exception):
    """A message's ordering key failed earlier; call resume_publish(key) before sending it again."""

    def __init__(self, key: str) -> None:
        super().__init__(f"ordering key {key!r} is paused after an earlier publish failure")
        self.key = key


class PublisherClosed(RuntimeError):
    pass


@dataclass(slots=True)
class _Batch:
    key: str  # the one ordering key of every message in the request ("" for none)
    parts: list = field(default_factory=list)  # encoded messages (pubsub_encoding), until the request is built
    request: bytes = b""  # the whole PublishRequest, built once when the batch is handed to a lane
    tokens: list = field(default_factory=list)
    nbytes: int = 0  # encoded size of the messages
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
    paced_seconds: float = 0.0  # lanes waited this long to keep keys within 1 MB/s


class EventPublisher:
    """Batched, flow-controlled publishing to one topic. `publish()` from one producer thread."""

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
        key_lanes: int = DEFAULT_KEY_LANES,
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
        self._clock = clock
        self._sleep = sleep
        self.stats = PublisherStats()
        self.errors: list[BaseException] = []
        self._client = client or publisher_client(endpoint=cfg.endpoint)
        self._stub = self._client.transport.grpc_channel.unary_unary(
            PUBLISH_METHOD,
            request_serializer=_as_is,  # requests are wire bytes already (pubsub_encoding)
            response_deserializer=_response_type().FromString,
        )
        self._head = encode_request_head(topic_path)
        self._fixed: tuple[dict[str, str] | None, bytes] = (None, b"")  # fixed_attributes and their encoding
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
        # Messages waiting in open batches (one per key) before the oldest batches are sent anyway.
        self.max_held = max(self.max_messages, self.max_in_flight // 2)
        self._cond = threading.Condition()
        self._in_flight = 0
        self._in_flight_bytes = 0
        self._paused: set[str] = set()
        self._closed = False
        self._lanes = max(1, lanes)  # messages without a key go round robin over the first `lanes`
        self._key_lanes = max(self._lanes, key_lanes)  # a key's batches all go to one of these, by hash
        self._queues: list[queue.Queue] = [queue.Queue(maxsize=2) for _ in range(self._key_lanes)]
        self._open: dict[str, _Batch] = {}  # ordering key ("" for none) -> batch being filled, oldest first
        self._held = 0
        self._rr = 0
        self._threads = [
            threading.Thread(target=self._lane, args=(i,), name=f"pubsub-lane-{i}", daemon=True)
            for i in range(self._key_lanes)
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
        fixed_attributes: dict[str, str] | None = None,
    ) -> None:
        """Queue one message; blocks for flow control and the rate limit. Completion goes to on_done.

        fixed_attributes: more attributes, the same for every message of the caller (plan id, listener).
        """
        if self._closed:
            raise PublisherClosed("publisher is closed")
        if self.bucket is not None:
            self.bucket.consume(1)
        self._add(data, attributes, token, ordering_key or "", fixed_attributes)

    def _add(self, data: bytes, attributes: dict[str, str], token: Any, key: str, fixed: dict[str, str] | None) -> None:
        more = b""
        if fixed:
            if fixed != self._fixed[0]:
                self._fixed = (dict(fixed), encode_attributes(fixed))
            more = self._fixed[1]
        entry = encode_message(data, attributes, key, more)
        size = len(entry)
        limit = min(self.max_bytes, KEY_MAX_REQUEST_BYTES) if key else self.max_bytes
        batch = self._open.get(key)
        if batch is not None and batch.tokens and batch.nbytes + size > limit:
            self._dispatch(key)  # this message goes first in the key's next request
            batch = None
        if batch is None:
            batch = self._open[key] = _Batch(key)
        batch.parts.append(entry)
        batch.tokens.append(token)
        batch.nbytes += size
        batch.data_bytes += len(data)
        self._held += 1
        if len(batch.tokens) >= self.max_messages:
            self._dispatch(key)
        elif self._held > self.max_held:
            # Many keys, each with a few messages: send the oldest batches rather than hold them.
            for oldest in list(self._open)[: max(1, len(self._open) // 2)]:
                self._dispatch(oldest)
                if self._held <= self.max_held // 2:
                    break

    def flush(self) -> None:
        """Send every partly filled batch now."""
        for key in list(self._open):
            self._dispatch(key)

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

    def _dispatch(self, key: str) -> None:
        batch = self._open.pop(key, None)
        if batch is None or not batch.tokens:
            return
        self._held -= len(batch.tokens)
        batch.request = b"".join((self._head, *batch.parts))
        batch.parts = []
        if key:
            target = zlib.crc32(key.encode("utf-8")) % self._key_lanes
        else:
            target = self._rr % self._lanes
            self._rr += 1
        self._reserve(len(batch.tokens), batch.nbytes)
        self._queues[target].put(batch)

    # --- lane side --------------------------------------------------------------------------------

    def _lane(self, index: int) -> None:
        q = self._queues[index]
        ready: dict[str, float] = {}  # key -> earliest start of its next request (this lane's keys only)
        while True:
            batch = q.get()
            if batch is None:
                return
            try:
                if batch.key:
                    self._pace(ready, batch)
                self._send(batch)
            except BaseException as exc:  # a bug in a callback must not kill the lane silently
                self.errors.append(exc)
            finally:
                with self._cond:
                    self._in_flight -= len(batch.tokens)
                    self._in_flight_bytes -= batch.nbytes
                    self._cond.notify_all()

    def _pace(self, ready: dict[str, float], batch: _Batch) -> None:
        """Keep each ordering key within KEY_BYTES_PER_SECOND: wait for the key's previous bytes."""
        now = self._clock()
        start = ready.get(batch.key, now)
        if start > now:
            self._sleep(start - now)
            with self._cond:
                self.stats.paced_seconds += start - now
            now = start
        ready[batch.key] = now + batch.nbytes / KEY_BYTES_PER_SECOND
        if len(ready) > PACE_FORGET:
            for k in [k for k, t in ready.items() if t <= now]:
                del ready[k]

    def _send(self, batch: _Batch) -> None:
        count = len(batch.tokens)
        if batch.key:
            with self._cond:
                paused = batch.key in self._paused
            if paused:
                with self._cond:
                    self.stats.failed_messages += count
                self.on_done(batch.tokens, None, OrderingKeyPaused(batch.key))
                return

        def on_retry(exc: BaseException, attempt: int) -> None:
            with self._cond:
                self.stats.retries += 1
                self.stats.retried_messages += count
            if self.on_retry is not None:
                self.on_retry(exc, attempt, batch.tokens)

        def call():
            try:
                return self._stub(batch.request, timeout=self.cfg.publish_timeout)
            except grpc.RpcError as exc:  # as google.api_core exceptions, for the shared classifier
                raise gexc.from_grpc_error(exc) from exc

        try:
            response = retrying(self.retry_cfg, on_retry, sleep=self._retry_sleep)(call)
        except BaseException as exc:
            with self._cond:
                if batch.key:
                    self._paused.add(batch.key)
                self.stats.failed_messages += count
            self.on_done(batch.tokens, None, exc)
            return
        with self._cond:
            self.stats.requests += 1
            self.stats.messages += count
            self.stats.bytes += batch.data_bytes
        self.on_done(batch.tokens, list(response.message_ids), None)


def topic_path(project: str, topic: str) -> str:
    return f"projects/{project}/topics/{topic}"


__all__: Sequence[str] = (
    "EventPublisher",
    "OrderingKeyPaused",
    "PublisherStats",
    "topic_path",
)
