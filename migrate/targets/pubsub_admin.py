"""TopicAdmin over google-cloud-pubsub: topics, subscriptions, testIamPermissions, creation (emulator provisioning)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.api_core import exceptions as gexc

from migrate.targets.admin import Call, Denied, Missing, SubscriptionInfo, SubscriptionSpec


class PubSubAdmin:
    """`publisher` / `subscriber`: pubsub_v1 clients (closed by close()); `call`: the caller's retry wrapper."""

    def __init__(self, publisher, subscriber, project: str, call: Call, timeout: float) -> None:
        self.publisher = publisher
        self.subscriber = subscriber
        self.project = project
        self.call = call
        self.timeout = timeout

    def _topic(self, topic: str) -> str:
        return self.publisher.topic_path(self.project, topic)

    def _subscription(self, subscription: str) -> str:
        return self.subscriber.subscription_path(self.project, subscription)

    def _get(self, fn) -> Any:
        try:
            return self.call(fn)
        except gexc.NotFound:
            raise Missing() from None
        except gexc.PermissionDenied as exc:
            raise Denied(str(exc)) from None

    def check_topic(self, topic: str) -> None:
        path = self._topic(topic)
        self._get(lambda: self.publisher.get_topic(topic=path, timeout=self.timeout, retry=None))

    def subscription(self, subscription: str) -> SubscriptionInfo:
        path = self._subscription(subscription)
        got = self._get(lambda: self.subscriber.get_subscription(subscription=path, timeout=self.timeout, retry=None))
        return SubscriptionInfo(subscription, got.topic)

    def _granted(self, client, resource: str, permissions: Sequence[str]) -> set[str] | None:
        # https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.topics/testIamPermissions
        request = {"resource": resource, "permissions": list(permissions)}
        try:
            resp = self.call(lambda: client.test_iam_permissions(request=request, timeout=self.timeout, retry=None))
        except (gexc.MethodNotImplemented, gexc.NotFound):
            return None  # the Pub/Sub emulator has no IAM: anyone may publish and pull
        return set(resp.permissions)

    def topic_granted(self, topic: str, permissions: Sequence[str]) -> set[str] | None:
        return self._granted(self.publisher, self._topic(topic), permissions)

    def subscription_granted(self, subscription: str, permissions: Sequence[str]) -> set[str] | None:
        return self._granted(self.subscriber, self._subscription(subscription), permissions)

    def _create(self, create, request: dict) -> bool:
        def attempt() -> bool:
            try:
                create(request=request, retry=None, timeout=self.timeout)
                return True
            except gexc.AlreadyExists:
                return False

        return self.call(attempt)

    def create_topic(self, topic: str, *, retention_seconds: int) -> bool:
        request = {"name": self._topic(topic), "message_retention_duration": {"seconds": retention_seconds}}
        return self._create(self.publisher.create_topic, request)

    def create_subscription(self, spec: SubscriptionSpec) -> bool:
        request: dict[str, Any] = {
            "name": self._subscription(spec.name),
            "topic": self._topic(spec.topic),
            "ack_deadline_seconds": spec.ack_deadline_seconds,
            "message_retention_duration": {"seconds": spec.retention_seconds},
            "expiration_policy": {},  # never expires
        }
        if spec.dead_letter_topic:
            request["dead_letter_policy"] = {
                "dead_letter_topic": self._topic(spec.dead_letter_topic),
                "max_delivery_attempts": spec.max_delivery_attempts,
            }
        return self._create(self.subscriber.create_subscription, request)

    def close(self) -> None:
        self.subscriber.close()
        self.publisher.transport.close()


def connect(
    project: str, call: Call, timeout: float, *, impersonate: str | None = None, endpoint: str | None = None
) -> PubSubAdmin:
    from migrate.clients import publisher_client, subscriber_client

    publisher = publisher_client(impersonate=impersonate, endpoint=endpoint)
    try:
        subscriber = subscriber_client(impersonate=impersonate, endpoint=endpoint)
    except BaseException:
        publisher.transport.close()
        raise
    return PubSubAdmin(publisher, subscriber, project, call, timeout)
