"""Read a Pub/Sub subscription: the verification drain's only contact with Pub/Sub.

`SubscriptionReader` is the protocol the drain (verification/drain.py) depends on; `PubSubSubscription`
implements it over the client library's unary Pull and Acknowledge, retried with the shared classifier
(`migrate.retry`). Several threads may call `pull` and `acknowledge` at once (gRPC clients are
thread-safe), which is how the drain runs parallel pull streams.

Pull rules (https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions/pull): at most
1,000 messages per pull, and a pull "may return fewer than the number requested even if there are more
messages available in the backlog", empty included; so an empty pull never means the backlog is empty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from migrate.config import TransferConfig
from migrate.errors import TargetError
from migrate.retry import describe, retrying

MAX_PULL_MESSAGES = 1000  # projects.subscriptions.pull maxMessages
# Acknowledge (https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions/acknowledge) is
# refused above 524,288 bytes per request ("Request payload size exceeds the limit", seen in
# googleapis/nodejs-pubsub#1864); ack ids are a few hundred bytes, so 1,000 per request stays well under it.
ACK_CHUNK = 1000

OnRetry = Callable[[BaseException, int], None]


@dataclass(frozen=True, slots=True)
class Pulled:
    message_id: str
    attributes: Mapping[str, str]
    ack_id: str


class SubscriptionReader(Protocol):
    path: str

    def pull(self, max_messages: int, timeout: float) -> list[Pulled]:
        """Up to max_messages messages; [] when the pull found none within timeout seconds."""
        ...

    def acknowledge(self, ack_ids: Sequence[str]) -> int:
        """Acknowledge; returns how many were acknowledged (a failed chunk is redelivered later)."""
        ...

    def close(self) -> None: ...


class PubSubSubscription:
    """SubscriptionReader over the client library's SubscriberClient (unary Pull / Acknowledge)."""

    def __init__(
        self,
        project: str,
        subscription: str,
        retry_cfg: TransferConfig,
        *,
        endpoint: str | None = None,
        impersonate: str | None = None,
        on_retry: OnRetry | None = None,
        client=None,
    ) -> None:
        from migrate.clients import subscriber_client

        self._client = client or subscriber_client(impersonate=impersonate, endpoint=endpoint)
        self.path = self._client.subscription_path(project, subscription)
        self._retry_cfg = retry_cfg
        self._on_retry = on_retry or (lambda exc, attempt: None)

    def pull(self, max_messages: int, timeout: float) -> list[Pulled]:
        from google.api_core import exceptions as gexc

        n = max(1, min(int(max_messages), MAX_PULL_MESSAGES))

        def call():
            try:
                resp = self._client.pull(subscription=self.path, max_messages=n, timeout=timeout, retry=None)
            except gexc.DeadlineExceeded:
                return ()  # a long poll that found nothing
            return type(resp).pb(resp).received_messages  # the protobuf itself: no proto-plus wrapper per field

        try:
            received = retrying(self._retry_cfg, self._on_retry)(call)
        except gexc.NotFound:
            raise TargetError(
                f"verification subscription {self.path} not found",
                "create it before the run (terraform/, or `migrate provision` in emulator mode); "
                "events published before it existed cannot be verified",
            ) from None
        except gexc.GoogleAPICallError as exc:
            raise TargetError(f"pulling from {self.path} failed: {describe(exc)}", "retry verify later") from None
        return [Pulled(m.message.message_id, m.message.attributes, m.ack_id) for m in received]

    def acknowledge(self, ack_ids: Sequence[str]) -> int:
        from google.api_core import exceptions as gexc

        done = 0
        for i in range(0, len(ack_ids), ACK_CHUNK):
            chunk = list(ack_ids[i : i + ACK_CHUNK])
            try:
                retrying(self._retry_cfg, self._on_retry)(
                    lambda c=chunk: self._client.acknowledge(subscription=self.path, ack_ids=c)
                )
                done += len(chunk)
            except gexc.GoogleAPICallError:
                pass  # already counted and committed: a redelivery is recognised by its message id
        return done

    def close(self) -> None:
        self._client.close()
