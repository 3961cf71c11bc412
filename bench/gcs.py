"""Talk to fake-gcs-server directly (JSON API over HTTP): create a bucket, list it, and check that it
holds exactly a dataset's files. Deliberately independent of migrate's own GCS code."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

from bench.datasets import Dataset

PROJECT = "test-project"


def _request(url: str, method: str = "GET", body: dict | None = None, timeout: float = 120.0) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"{}")


def create_bucket(endpoint: str, bucket: str) -> None:
    _request(f"{endpoint}/storage/v1/b?project={PROJECT}", "POST", {"name": bucket})


def list_objects(endpoint: str, bucket: str, prefix: str = "") -> Iterator[dict]:
    """Every object under prefix (paged)."""
    token = None
    while True:
        q = {"prefix": prefix, "maxResults": "1000"}
        if token:
            q["pageToken"] = token
        page = _request(f"{endpoint}/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o?{urllib.parse.urlencode(q)}")
        yield from page.get("items", [])
        token = page.get("nextPageToken")
        if not token:
            return


@dataclass
class BucketCheck:
    """The destination compared with a dataset's manifest."""

    expected_objects: int
    expected_bytes: int
    objects: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    size_mismatch: list[str] = field(default_factory=list)
    crc_mismatch: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    generations: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.size_mismatch or self.crc_mismatch)

    def summary(self) -> str:
        text = f"{self.objects}/{self.expected_objects} objects, {self.bytes}/{self.expected_bytes} bytes"
        for label, names in (
            ("missing", self.missing),
            ("size differs", self.size_mismatch),
            ("crc32c differs", self.crc_mismatch),
            ("extra", self.extra),
        ):
            if names:
                text += f"; {len(names)} {label} (e.g. {names[0]!r})"
        return text

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "objects": self.objects,
            "bytes": self.bytes,
            "expected_objects": self.expected_objects,
            "expected_bytes": self.expected_bytes,
            "missing": len(self.missing),
            "size_mismatch": len(self.size_mismatch),
            "crc_mismatch": len(self.crc_mismatch),
            "extra": len(self.extra),
        }


def check_bucket(endpoint: str, bucket: str, prefix: str, dataset: Dataset) -> BucketCheck:
    """List bucket/prefix and compare every object's size and CRC32C with the dataset's files."""
    want = {prefix + m["relpath"]: (m["size"], m["crc32c"]) for m in dataset.iter_manifest()}
    check = BucketCheck(expected_objects=dataset.files, expected_bytes=dataset.bytes)
    seen: set[str] = set()
    for obj in list_objects(endpoint, bucket, prefix):
        name = obj["name"]
        size = int(obj.get("size", 0))
        check.generations[name] = str(obj.get("generation"))
        expected = want.get(name)
        if expected is None:
            check.extra.append(name)
            continue
        seen.add(name)
        check.objects += 1
        check.bytes += size
        if size != expected[0]:
            check.size_mismatch.append(name)
        elif obj.get("crc32c") != expected[1]:
            check.crc_mismatch.append(name)
    check.missing = sorted(set(want) - seen)
    return check
