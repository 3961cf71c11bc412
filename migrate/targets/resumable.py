"""Resumable uploads through the JSON API: one session per large file, sent in chunks.

https://cloud.google.com/storage/docs/performing-resumable-uploads
- The session starts with a POST (uploadType=resumable) that carries the object's metadata, its
  storage class and the precondition (ifGenerationMatch=0, or the generation an overwrite replaces):
  both are fixed for the whole session. The answer's Location header is the session URI, valid for a
  week; the caller keeps it in the ledger before any byte is sent.
- Each chunk is a PUT with `Content-Range: bytes FIRST-LAST/TOTAL`; every chunk but the last is a
  multiple of 256 KiB. A 308 answer's `Range: bytes=0-N` says what the server has persisted, which
  may be less than was sent: the next chunk starts there.
- After a crash, an empty PUT with `Content-Range: bytes */TOTAL` asks the same question.
- The last chunk carries `x-goog-hash: crc32c=...` of the whole object, and the session's metadata the
  inventory's CRC32C when known: GCS validates it when it finalizes, and refuses (400) damaged bytes
  (https://cloud.google.com/storage/docs/data-validation).
- A DELETE on the session URI cancels an unfinished upload (answered 499), with no object permission.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlencode

from migrate.hashing import crc32c_b64
from migrate.targets.errors import HttpError
from migrate.targets.gcs import _OBJECT_FIELDS, Gcs, ObjectInfo, StreamedBody, object_resource

CHUNK_ALIGN = 256 * 1024  # non-final chunks are multiples of this
_RANGE = re.compile(r"bytes=0-(\d+)")


class SessionGone(Exception):
    """The session URI is unknown or expired (404/410): start a new session."""


@dataclass(frozen=True, slots=True)
class Persisted:
    """A 308: the server holds the first `offset` bytes, the upload is not finished."""

    offset: int


def chunk_size(configured: int) -> int:
    """The configured chunk size rounded up to the 256 KiB multiple GCS requires."""
    return max(1, -(-max(configured, 1) // CHUNK_ALIGN)) * CHUNK_ALIGN


def start_session(
    gcs: Gcs,
    bucket: str,
    name: str,
    *,
    size: int,
    content_type: str,
    metadata: dict[str, str] | None,
    crc32c: str | None,
    if_generation_match: int,
    storage_class: str | None,
) -> str:
    """Open a session; returns its URI. A 412 here means the object already exists."""
    resource = object_resource(name, content_type, metadata, crc32c, storage_class)
    params = {
        "uploadType": "resumable",
        "name": name,
        "ifGenerationMatch": str(if_generation_match),
        "fields": _OBJECT_FIELDS,
    }
    url = f"{gcs.upload_api}/b/{bucket}/o?{urlencode(params)}"
    headers = {
        "Content-Type": "application/json; charset=UTF-8",
        "X-Upload-Content-Type": content_type,
        "X-Upload-Content-Length": str(size),
    }
    response = gcs.send("POST", url, body=json.dumps(resource, ensure_ascii=False).encode("utf-8"), headers=headers)
    gcs.raise_for("POST", url, response)
    uri = response.headers.get("Location")
    if not uri:
        raise ConnectionError(f"POST {bucket}/{name}: resumable session started without a Location header")
    return uri


def _answer(gcs: Gcs, method: str, uri: str, response) -> Persisted | ObjectInfo:
    if response.status == 308:
        match = _RANGE.search(response.headers.get("Range") or "")
        return Persisted(int(match.group(1)) + 1 if match else 0)
    if response.status in (404, 410):
        raise SessionGone(f"resumable session gone (HTTP {response.status})")
    gcs.raise_for(method, uri, response)
    return ObjectInfo.from_json(json.loads(response.data))


def query(gcs: Gcs, uri: str, size: int) -> Persisted | ObjectInfo:
    """What the server holds of this session: Persisted(offset), or the finished object."""
    response = gcs.send("PUT", uri, body=b"", headers={"Content-Range": f"bytes */{size}", "Content-Length": "0"})
    return _answer(gcs, "PUT", uri, response)


def put_chunk(
    gcs: Gcs, uri: str, body: StreamedBody, *, first: int, size: int, final_crc: int | None
) -> Persisted | ObjectInfo:
    """Send the object's bytes [first, first + len(body)); the final chunk carries the object's CRC32C."""
    last = first + len(body) - 1
    headers = {"Content-Range": f"bytes {first}-{last}/{size}", "Content-Length": str(len(body))}
    if final_crc is not None:
        headers["x-goog-hash"] = f"crc32c={crc32c_b64(final_crc)}"
    response = gcs.send("PUT", uri, body=body, headers=headers)
    return _answer(gcs, "PUT", uri, response)


def cancel(gcs: Gcs, uri: str) -> None:
    """Abandon an unfinished session (best effort: an expired one is gone anyway)."""
    try:
        gcs.send("DELETE", uri, headers={"Content-Length": "0"})
    except (OSError, HttpError):
        pass
