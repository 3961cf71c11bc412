"""BucketAdmin over the GCS JSON API, through the transfer's own client (targets.gcs.Gcs).

What preflight asks of a bucket before every run (its settings, testIamPermissions, and on an emulator a
probe object) costs a few small GETs; doing them through google.cloud.storage would cost its import, about
a third of a second of CPU for every `migrate run`. Creating buckets (`migrate provision`, the demo) builds
many settings at once and stays on the storage client: `create_bucket` hands over to targets.gcs_admin.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from migrate.targets.admin import BucketSettings, Call, Denied, Missing
from migrate.targets.errors import Forbidden, HttpError
from migrate.targets.gcs import Gcs

# testIamPermissions answers these when the endpoint is not there at all: fake-gcs-server has no IAM
# (404 or 501), and a 400 means the same from a server that does not know the sub-resource.
_NO_IAM = frozenset({400, 404, 501})


class GcsJsonAdmin:
    """`gcs`: the JSON client; `call`: the caller's retry wrapper; `connect_storage`: builds the
    storage-client admin for bucket creation (called on first use only)."""

    def __init__(self, gcs: Gcs, call: Call, connect_storage=None) -> None:
        self.gcs = gcs
        self.call = call
        self._connect_storage = connect_storage
        self._storage_admin = None
        self.notes: list[str] = []

    def settings(self, bucket: str) -> BucketSettings:
        # https://cloud.google.com/storage/docs/json_api/v1/buckets#resource: storageClass, versioning,
        # softDeletePolicy.retentionDurationSeconds and retentionPolicy.retentionPeriod (int64 as strings)
        fields = "storageClass,versioning,softDeletePolicy,retentionPolicy,defaultEventBasedHold"
        try:
            doc = self.call(lambda: self.gcs.get_bucket(bucket, params={"fields": fields}))
        except Forbidden as exc:
            raise Denied(str(exc)) from None
        if doc is None:
            raise Missing(bucket)
        return BucketSettings(
            name=bucket,
            storage_class=doc.get("storageClass") or "STANDARD",
            versioning=bool((doc.get("versioning") or {}).get("enabled")),
            soft_delete_seconds=int((doc.get("softDeletePolicy") or {}).get("retentionDurationSeconds") or 0),
            retention_seconds=int((doc.get("retentionPolicy") or {}).get("retentionPeriod") or 0),
            default_event_based_hold=bool(doc.get("defaultEventBasedHold")),
        )

    def granted(self, bucket: str, permissions: Sequence[str]) -> set[str] | None:
        # https://cloud.google.com/storage/docs/json_api/v1/buckets/testIamPermissions: one `permissions`
        # query parameter per permission; the answer lists those the caller holds.
        params = [("permissions", p) for p in permissions]
        try:
            doc = self.call(lambda: self.gcs.get_bucket(bucket, "/iam/testPermissions", params))
        except HttpError as exc:
            if exc.code in _NO_IAM:
                return None  # settings() found the bucket, so this is an endpoint the emulator lacks
            raise
        return None if doc is None else set(doc.get("permissions") or ())

    def create_object(self, bucket: str, name: str) -> None:
        try:
            self.call(lambda: self.gcs.insert(bucket, name, b"", content_type="application/octet-stream"))
        except Forbidden as exc:
            raise Denied(str(exc)) from None

    def delete_objects(self, bucket: str, prefix: str, also: Iterable[str] = ()) -> int:
        try:
            names = self.call(lambda: [o.name for o in self.gcs.list(bucket, prefix)])
            # False from delete: someone else deleted it meanwhile, gone either way
            return sum(self.call(lambda name=name: self.gcs.delete(bucket, name)) for name in sorted({*also, *names}))
        except Forbidden as exc:
            raise Denied(str(exc)) from None

    def create_bucket(self, bucket: str, spec: dict[str, Any], *, location: str, labels: dict[str, str]) -> bool:
        if self._storage_admin is None:
            if self._connect_storage is None:
                raise RuntimeError("this admin was built without a storage client for bucket creation")
            self._storage_admin = self._connect_storage()
        created = self._storage_admin.create_bucket(bucket, spec, location=location, labels=labels)
        self.notes = self._storage_admin.notes
        return created


def connect(
    project: str, call: Call, timeout: float, *, impersonate: str | None = None, endpoint: str | None = None
) -> GcsJsonAdmin:
    """The admin for the config's identity and endpoint (the emulator's when STORAGE_EMULATOR_HOST is set)."""
    from migrate.clients import gcs_endpoint

    def storage_admin():
        from migrate.targets import gcs_admin

        return gcs_admin.connect(project, call, timeout, impersonate=impersonate, endpoint=endpoint)

    gcs = Gcs(gcs_endpoint(project, impersonate=impersonate, endpoint=endpoint), timeout=timeout, pool_size=4)
    return GcsJsonAdmin(gcs, call, storage_admin)
