"""BucketAdmin over google-cloud-storage: bucket settings, testIamPermissions, probe objects, bucket creation."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from google.api_core import exceptions as gexc

from migrate.targets.admin import BucketSettings, Call, Denied, Missing

SECONDS_PER_DAY = 86_400


class GcsAdmin:
    """`client`: a storage.Client; `call`: the caller's retry wrapper; `timeout`: seconds per request."""

    def __init__(self, client, call: Call, timeout: float) -> None:
        self.client = client
        self.call = call
        self.timeout = timeout
        self.notes: list[str] = []

    def settings(self, bucket: str) -> BucketSettings:
        b = self.client.bucket(bucket)
        try:
            self.call(lambda: b.reload(timeout=self.timeout, retry=None))
        except gexc.NotFound:
            raise Missing(bucket) from None
        except gexc.Forbidden as exc:
            raise Denied(str(exc)) from None
        soft = b.soft_delete_policy
        return BucketSettings(
            name=bucket,
            storage_class=b.storage_class or "STANDARD",
            versioning=bool(b.versioning_enabled),
            soft_delete_seconds=int((soft.retention_duration_seconds if soft else 0) or 0),
            retention_seconds=int(b.retention_period or 0),
            default_event_based_hold=bool(b.default_event_based_hold),
        )

    def granted(self, bucket: str, permissions: Sequence[str]) -> set[str] | None:
        # https://cloud.google.com/storage/docs/json_api/v1/buckets/testIamPermissions
        b = self.client.bucket(bucket)
        try:
            got = self.call(lambda: b.test_iam_permissions(list(permissions), timeout=self.timeout, retry=None))
        except (gexc.NotFound, gexc.MethodNotImplemented, gexc.BadRequest):
            # settings() found the bucket, so this is an endpoint the emulator does not implement
            # (fake-gcs-server answers 404 or 501).
            return None
        return set(got or ())

    def create_object(self, bucket: str, name: str) -> None:
        blob = self.client.bucket(bucket).blob(name)
        try:
            self.call(lambda: blob.upload_from_string(b"", if_generation_match=0, timeout=self.timeout, retry=None))
        except gexc.Forbidden as exc:
            raise Denied(str(exc)) from None

    def delete_objects(self, bucket: str, prefix: str, also: Iterable[str] = ()) -> int:
        b = self.client.bucket(bucket)
        names = self.call(lambda: [o.name for o in self.client.list_blobs(bucket, prefix=prefix, retry=None)])
        deleted = 0
        for name in sorted({*also, *names}):
            try:
                self.call(lambda name=name: b.blob(name).delete(timeout=self.timeout, retry=None))
                deleted += 1
            except gexc.NotFound:
                pass  # deleted by someone else meanwhile: gone either way
            except gexc.Forbidden as exc:
                raise Denied(str(exc)) from None
        return deleted

    def create_bucket(self, bucket: str, spec: dict[str, Any], *, location: str, labels: dict[str, str]) -> bool:
        def create(versioning: bool) -> None:
            self.client.create_bucket(
                self._bucket(bucket, spec, labels, versioning=versioning),
                location=location,
                retry=None,
                timeout=self.timeout,
            )

        def attempt() -> bool:
            try:
                create(versioning=True)
                return True
            except gexc.Conflict:
                return False
            except gexc.InternalServerError as exc:
                # fake-gcs-server's filesystem backend has no object versioning: create without it.
                if "versioning" not in str(exc):
                    raise
            try:
                create(versioning=False)
            except gexc.Conflict:
                return False
            if spec.get("versioning"):
                self.notes.append(f"bucket {bucket}: versioning not supported by the emulator; created without it")
            return True

        return self.call(attempt)

    def _bucket(self, name: str, spec: dict, labels: dict, *, versioning: bool):
        bucket = self.client.bucket(name)
        bucket.storage_class = spec.get("storage_class") or "STANDARD"
        bucket.versioning_enabled = bool(spec.get("versioning")) and versioning
        if labels:
            bucket.labels = dict(labels)
        days = spec.get("soft_delete_retention_days")
        if days:
            bucket.soft_delete_policy.retention_duration_seconds = int(days) * SECONDS_PER_DAY
        for rule in spec.get("lifecycle_rules") or []:
            if rule.get("action") == "SetStorageClass":
                bucket.add_lifecycle_set_storage_class_rule(rule["storage_class"], age=int(rule["age_days"]))
            elif rule.get("action") == "Delete":
                bucket.add_lifecycle_delete_rule(age=int(rule["age_days"]))
        return bucket


def connect(
    project: str, call: Call, timeout: float, *, impersonate: str | None = None, endpoint: str | None = None
) -> GcsAdmin:
    from migrate.clients import gcs_client

    return GcsAdmin(gcs_client(project, pool_size=4, impersonate=impersonate, endpoint=endpoint), call, timeout)
