"""The GCS wire contract: a recording proxy and the documented rules every request must follow.

The emulators accept requests that Google Cloud Storage rejects or bills for, so the end-to-end tests
send their GCS traffic through this proxy (the `wire` fixture in conftest.py) and assert, on every
request, the rules the product is written to:

- every object insert carries ifGenerationMatch (0, or the generation an overwrite replaces) and a CRC32C
  for the server to validate: in the metadata of a multipart insert, in the session metadata or on the
  final chunk (`x-goog-hash: crc32c=`) of a resumable upload
  (https://cloud.google.com/storage/docs/request-preconditions,
  https://cloud.google.com/storage/docs/data-validation,
  https://cloud.google.com/storage/docs/performing-resumable-uploads);
- a compose has at most 32 sources, each created in the destination's storage class
  (https://cloud.google.com/storage/docs/json_api/v1/objects/compose);
- nothing is deleted outside the scratch prefix `.migrate-parts/`, the only place the least-privilege
  role may delete (terraform/modules/migration).

The rules judge the product's requests: targets.gcs sends `User-Agent: migrate/<version>`, the storage
client (preflight, provisioning) `gcloud-python/<version>`. Other tools a test drives through the proxy
(the benchmark's peers and raw uploader) are recorded but not judged.
It also counts the body bytes each request carried, so a test can say how much was sent.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from faultproxy import FaultProxy

SCRATCH = ".migrate-parts/"
MAX_COMPOSE = 32
KEEP = 64 * 1024  # body bytes kept per request (metadata, compose documents)
_OBJECT = re.compile(r"^/storage/v1/b/([^/]+)/o/([^/?]+)(/compose)?$")
_UPLOAD = re.compile(r"^/upload/storage/v1/b/([^/]+)/o$")
_FINAL_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    head: bytearray = field(default_factory=bytearray)
    sent: int = 0
    status: int | None = None

    def feed(self, data: bytes) -> None:
        self.sent += len(data)
        if len(self.head) < KEEP:
            self.head += data[: KEEP - len(self.head)]

    def done(self, status: int) -> None:
        self.status = status

    @property
    def from_product(self) -> bool:
        agent = self.headers.get("user-agent", "")
        return agent.startswith("migrate/") or "gcloud-python/" in agent

    @property
    def complete(self) -> bool:
        """The whole body arrived (a client killed mid-request sent a part the server never acts on)."""
        length = self.headers.get("content-length")
        return length is None or self.sent >= int(length)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json_body(self) -> dict:
        try:
            return json.loads(bytes(self.head))
        except ValueError:
            return {}

    def multipart_metadata(self) -> dict:
        """The JSON part of a multipart/related insert."""
        text = bytes(self.head).decode("utf-8", "replace")
        start = text.find("{")
        if start < 0:
            return {}
        try:
            return json.JSONDecoder().raw_decode(text[start:])[0]
        except ValueError:
            return {}


class WireLog:
    """Every request through the proxy, and the rules checked over them."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    def begin(self, method: str, path: str, headers) -> Request:
        parts = urlsplit(path)
        rec = Request(method, parts.path, parse_qs(parts.query), {k.lower(): v for k, v in headers.items()})
        with self._lock:
            self.requests.append(rec)
        return rec

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def snapshot(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    # --- what was sent --------------------------------------------------------------------------

    def upload_bytes(self) -> int:
        """Body bytes of object uploads (inserts and resumable chunks)."""
        return sum(r.sent for r in self.snapshot() if r.path.startswith("/upload/"))

    def composes(self) -> list[Request]:
        return [r for r in self.snapshot() if r.method == "POST" and r.path.endswith("/compose")]

    def resumable_starts(self) -> list[Request]:
        return [r for r in self.snapshot() if r.method == "POST" and r.param("uploadType") == "resumable"]

    # --- the rules ------------------------------------------------------------------------------

    def violations(self) -> list[str]:
        requests = self.snapshot()
        out: list[str] = []
        classes: dict[tuple[str, str], str | None] = {}  # (bucket, name) -> storage class asked at creation
        for r in requests:
            if not r.from_product:
                continue
            upload = _UPLOAD.match(r.path)
            obj = _OBJECT.match(r.path)
            if upload and r.method == "POST":
                bucket = unquote(upload.group(1))
                kind = r.param("uploadType")
                meta = r.multipart_metadata() if kind == "multipart" else r.json_body()
                name = r.param("name") or meta.get("name") or "?"
                where = f"{r.method} {kind} insert of gs://{bucket}/{name}"
                gen = r.param("ifGenerationMatch")
                if gen is None or not gen.isdigit():
                    out.append(f"{where}: no ifGenerationMatch (got {gen!r})")
                if kind == "multipart" and r.complete and not meta.get("crc32c"):
                    out.append(f"{where}: no crc32c in the object metadata")
                if kind == "media":
                    out.append(f"{where}: a media upload cannot carry a CRC32C for the server to check")
                classes[(bucket, name)] = meta.get("storageClass")
            elif obj and obj.group(3) and r.method == "POST":
                bucket, dest = unquote(obj.group(1)), unquote(obj.group(2))
                doc = r.json_body()
                sources = doc.get("sourceObjects") or []
                dest_class = (doc.get("destination") or {}).get("storageClass")
                if len(sources) > MAX_COMPOSE:
                    out.append(f"compose of gs://{bucket}/{dest}: {len(sources)} sources (at most {MAX_COMPOSE})")
                for src in sources:
                    src_class = classes.get((bucket, src.get("name")), "unknown")
                    if src_class != dest_class:
                        out.append(
                            f"compose of gs://{bucket}/{dest} ({dest_class}): source {src.get('name')} is {src_class}"
                        )
                gen = r.param("ifGenerationMatch")
                if gen is None or not gen.isdigit():
                    out.append(f"compose of gs://{bucket}/{dest}: no ifGenerationMatch")
                classes[(bucket, dest)] = dest_class
            elif obj and r.method == "DELETE" and not obj.group(3):
                name = unquote(obj.group(2))
                if not name.startswith(SCRATCH):
                    out.append(f"DELETE gs://{unquote(obj.group(1))}/{name}: outside the scratch prefix {SCRATCH}")
        return out + self._session_violations(requests)

    def _session_violations(self, requests: list[Request]) -> list[str]:
        """A resumable session's final chunk needs a CRC32C unless its start carried one in the metadata.

        The upload_id appears only in the session URI the server returns, so chunks are matched to
        their session by object name (the `name` parameter the session URI keeps).
        """
        out = []
        started: dict[str, bool] = {}
        for r in requests:
            if not _UPLOAD.match(r.path) or not r.from_product:
                continue
            name = r.param("name") or ""
            if r.method == "POST" and r.param("uploadType") == "resumable":
                started[name] = bool(r.json_body().get("crc32c"))
            elif r.method == "PUT":
                rng = _FINAL_RANGE.fullmatch(r.headers.get("content-range", ""))
                final = rng is not None and int(rng.group(2)) + 1 == int(rng.group(3))
                if final and "crc32c=" not in r.headers.get("x-goog-hash", "") and not started.get(name):
                    out.append(f"final chunk of the resumable upload of {name}: no CRC32C (x-goog-hash or metadata)")
        return out


class WireProxy(FaultProxy):
    """A FaultProxy that records every request in `.log` (faults off unless asked for)."""

    def __init__(self, upstream: str, *, rate: float = 0.0, **kwargs) -> None:
        self.log = WireLog()
        super().__init__(upstream, rate=rate, observer=self.log, **kwargs)
