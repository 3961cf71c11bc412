"""GCS objects through the JSON API: create-once uploads, compose, stat, delete, paged listing.

Uploads are hand-built multipart requests sent with the storage client's credentials and
endpoint (so emulator mode is the client's). Blob.upload_from_* speaks the same protocol but
costs about 50% more CPU per object in Python layers; on a small machine that CPU is what
bounds files/s for small files, so the hot path talks to the API directly.

Every create is conditional: `ifGenerationMatch=0` (or the generation a plan means to replace),
so a retry or a re-run can never write a second generation; a 412 is answered by the caller,
who compares the existing object's CRC32C. The CRC32C goes into the upload's metadata, and GCS
rejects the upload if the bytes it received do not match it; the response's CRC32C is checked
too (fake-gcs-server does not validate). A streamed body (migrate.sources.filebody) withholds its last
block until a final check on the bytes read passes, so a file that changed while it was read
aborts the request and leaves no object behind.

Composite objects (the large-file path of migrate.transfer.objects) are built from part
objects under PARTS_PREFIX in the same bucket; gcs_listing.list_pages (the listing plan and
verify use) hides that prefix.
"""

from __future__ import annotations

import itertools
import json
import mimetypes
import os
import secrets
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol
from urllib.parse import quote, urlencode, urlsplit

import google_crc32c

from migrate import __version__
from migrate.hashing import crc32c_b64
from migrate.targets.errors import from_http_status
from migrate.targets.http1 import Http1

PARTS_PREFIX = ".migrate-parts/"
MTIME_KEY = "goog-reserved-file-mtime"  # seconds since the epoch, as gsutil and rclone write it
PLAN_KEY = "migrate-plan-id"
MAX_COMPOSE = 32  # sources per compose request
_OBJECT_FIELDS = "name,size,crc32c,generation"
_LIST_FIELDS = "items(name,size,crc32c,generation),nextPageToken"
# commas (the fields masks) stay literal: a query with no %-escapes takes urllib3's fast path,
# where an escaped one is re-scanned character by character twice per request
_QUERY_SAFE = ",()"
# multipart boundaries: a random 96-bit prefix per process and a counter (no random syscall per object)
_BOUNDARY_BASE = secrets.token_hex(12)
_BOUNDARY_SEQ = itertools.count()
_UPLOAD_QUERY = urlencode({"uploadType": "multipart", "fields": _OBJECT_FIELDS}, safe=_QUERY_SAFE)
LIST_PAGE_SIZE = 1000
_CONTENT_TYPES = {".flac": "audio/flac", ".ogg": "audio/ogg", ".opus": "audio/ogg", ".m4a": "audio/mp4"}


class StreamedBody(Protocol):
    """A request body read as it is sent (migrate.sources.filebody.FileBody).

    insert() sets the multipart framing `head` and `tail`; after a complete iteration `crc` holds
    the CRC32C (int) of the bytes streamed between them.
    """

    head: bytes
    tail: bytes
    crc: int | None

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[bytes]: ...


class TransportCorruption(ConnectionError):
    """GCS got other bytes than we sent: it refused them (400) or, not validating, stored them as `generation`.

    A ConnectionError, so the classifier retries it; the retry replaces a stored damaged generation under
    ifGenerationMatch=generation, no delete needed (https://cloud.google.com/storage/docs/request-preconditions).
    """

    def __init__(self, message: str, generation: int | None = None) -> None:
        super().__init__(message)
        self.generation = generation


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str
    size: int
    crc32c: str | None
    generation: int

    @classmethod
    def from_json(cls, doc: dict) -> ObjectInfo:
        return cls(doc["name"], int(doc.get("size") or 0), doc.get("crc32c"), int(doc.get("generation") or 0))


def content_type(name: str) -> str:
    # mimetypes reads only the trailing suffixes (type, encoding): everything after the base name's
    # first dot decides, so the answer is cached per suffix chain rather than guessed per object
    base = name.rsplit("/", 1)[-1]
    dot = base.find(".", 1 if base.startswith(".") else 0)
    return _content_type_of_suffixes(base[dot:] if dot > 0 else "")


@lru_cache(maxsize=4096)
def _content_type_of_suffixes(suffixes: str) -> str:
    name = "x" + suffixes
    ext = os.path.splitext(name)[1].lower()
    return _CONTENT_TYPES.get(ext) or mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def object_metadata(mtime_ns: int, plan_id: str) -> dict[str, str]:
    return {MTIME_KEY: str(mtime_ns // 1_000_000_000), PLAN_KEY: plan_id}


def object_resource(name: str, content_type: str, metadata: dict | None, crc32c: str | None, cls: str | None) -> dict:
    """The object metadata an upload starts with; GCS validates the bytes against its crc32c."""
    resource: dict = {"name": name, "contentType": content_type}
    if metadata:
        resource["metadata"] = metadata
    if crc32c:
        resource["crc32c"] = crc32c
    if cls:
        resource["storageClass"] = cls
    return resource


def part_prefix(plan_id: str, seq: int) -> str:
    return f"{PARTS_PREFIX}{plan_id}/{seq}/"


# --- the API -----------------------------------------------------------------------------------


def _ca_certs() -> str:
    ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or os.environ.get("CURL_CA_BUNDLE")
    if not ca:
        import certifi

        ca = certifi.where()
    return ca


def _proxy_for(base: str) -> str | None:
    host = urlsplit(base).hostname or ""
    return None if urllib.request.proxy_bypass(host) else urllib.request.getproxies().get(urlsplit(base).scheme)


def _pool(base: str, pool_size: int, timeout: tuple[float, float]):
    """One urllib3 connection pool, its proxy and CA settings read from the environment once, not per request."""
    import urllib3

    parts = urlsplit(base)
    kwargs: dict = {
        "num_pools": 4,
        "maxsize": pool_size,
        "retries": False,  # migrate.retry decides
        "timeout": urllib3.Timeout(connect=timeout[0], read=timeout[1]),
    }
    if parts.scheme == "https":
        kwargs["ca_certs"] = _ca_certs()
    proxy = _proxy_for(base)
    return urllib3.ProxyManager(proxy, **kwargs) if proxy else urllib3.PoolManager(**kwargs)


def _error(method: str, url: str, status: int, data: bytes) -> Exception:
    try:
        message = json.loads(data)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = data[:200].decode("utf-8", "replace")
    path = urlsplit(url).path
    text = f"{method} {path}: {message or 'HTTP ' + str(status)}"
    if status == 400 and "crc32c" in (message or "").lower():
        # GCS validated the CRC32C we sent and the bytes it received differ: damaged on the way
        # (https://cloud.google.com/storage/docs/data-validation)
        return TransportCorruption(f"HTTP 400: {text}")
    return from_http_status(status, text)


class Gcs:
    """The JSON API calls the transfer needs.

    Requests go through the lean keep-alive client (targets/http1.py) wherever no proxy stands in
    between, else through google-auth's urllib3 transport. Plain urllib3 rather than requests: requests
    re-reads proxy settings from the whole environment on every request and adds a layer of objects per
    call, together about a third of the per-object CPU when the objects are small.

    `client` is a `migrate.clients.GcsEndpoint` (endpoint and credentials, the CLI's choice: it needs no
    import of google.cloud.storage) or a google.cloud.storage Client. Credentials None mean anonymous
    (the emulator). The urllib3 transport is built on first use: resumable uploads and proxied runs.
    """

    def __init__(self, client, *, timeout: float = 60.0, connect_timeout: float = 10.0, pool_size: int = 32) -> None:
        base = client.api_endpoint.rstrip("/")
        self.api = f"{base}/storage/v1"
        self.upload_api = f"{base}/upload/storage/v1"
        self._base = base
        self._credentials = client.credentials if hasattr(client, "credentials") else client._credentials
        self._pool_args = (pool_size, (min(connect_timeout, timeout), timeout))
        self._http = None
        self._http_lock = threading.Lock()
        self.headers = {"User-Agent": f"migrate/{__version__}", "Accept-Encoding": "identity"}
        self.fast: Http1 | None = None  # the lean client, wherever no proxy stands in between
        if _proxy_for(base) is None:
            self.fast = Http1(
                base,
                self._credentials,
                self._auth_request,
                timeout=timeout,
                connect_timeout=min(connect_timeout, timeout),
                ca_certs=_ca_certs() if base.startswith("https") else None,
            )

    @property
    def http(self):
        """The urllib3 transport: google-auth's AuthorizedHttp over one pool, or the bare pool when anonymous."""
        with self._http_lock:
            if self._http is None:
                pool = _pool(self._base, *self._pool_args)
                if self._credentials is None:
                    self._http = pool
                else:
                    from google.auth.transport.urllib3 import AuthorizedHttp

                    self._http = AuthorizedHttp(self._credentials, http=pool)
            return self._http

    def _auth_request(self, *args, **kwargs):
        """google-auth's transport request over the urllib3 pool, for the lean client's token refreshes."""
        from google.auth.transport.urllib3 import Request

        return Request(self.http.http)(*args, **kwargs)

    def send(self, method: str, url: str, *, body=None, headers: dict | None = None):
        """The raw urllib3 response (resumable uploads read its headers); transport trouble becomes
        builtin ConnectionError / TimeoutError."""
        from urllib3 import exceptions as u3exc

        try:
            return self.http.urlopen(method, url, body=body, headers=self._headers(headers))
        except u3exc.TimeoutError as exc:
            raise TimeoutError(f"{method} {urlsplit(url).path}: {exc}") from exc
        except (u3exc.ProtocolError, u3exc.NewConnectionError, u3exc.ProxyError, u3exc.SSLError) as exc:
            raise ConnectionError(f"{method} {urlsplit(url).path}: {exc}") from exc

    def _headers(self, extra: dict | None) -> dict:
        """The client's own headers plus a request's."""
        return {**self.headers, **extra} if extra else dict(self.headers)

    def raise_for(self, method: str, url: str, response) -> None:
        if response.status >= 400:
            raise _error(method, url, response.status, response.data)

    def _call(self, method: str, url: str, *, body=None, headers: dict | None = None, not_found_ok: bool = False):
        """(status, decoded JSON or None); raises targets.errors.HttpError for HTTP errors, builtin
        ConnectionError / TimeoutError for transport trouble (both retryable for the classifier).
        JSON calls go through the lean keep-alive client when there is one (it returns status and
        body only, which is all a JSON call needs)."""
        if self.fast is not None:
            status, data = self.fast.request(method, url, body, self._headers(headers))
        else:
            response = self.send(method, url, body=body, headers=headers)
            status, data = response.status, response.data
        if status == 404 and not_found_ok:
            return status, None
        if status >= 400:
            raise _error(method, url, status, data)
        return status, json.loads(data) if data else None

    def _object_url(self, bucket: str, name: str, params: dict | None = None) -> str:
        url = f"{self.api}/b/{bucket}/o/{quote(name, safe='')}"
        return f"{url}?{urlencode(params)}" if params else url

    def insert(
        self,
        bucket: str,
        name: str,
        body: bytes | StreamedBody,
        *,
        content_type: str,
        metadata: dict[str, str] | None = None,
        crc32c: str | None = None,
        if_generation_match: int | None = 0,
        storage_class: str | None = None,
    ) -> ObjectInfo:
        """Create an object in one multipart request. Raises PreconditionFailed (412) if it exists.

        crc32c (base64) is sent for GCS to validate; with bytes it defaults to their CRC32C. The
        stored object's CRC32C is compared with the bytes sent, so a server that does not
        validate cannot keep a damaged object quietly.
        """
        if isinstance(body, bytes):
            sent_crc = crc32c_b64(google_crc32c.value(body))
            crc32c = crc32c or sent_crc
        else:
            sent_crc = None
        resource = object_resource(name, content_type, metadata, crc32c, storage_class)
        boundary = f"===migrate-{_BOUNDARY_BASE}-{next(_BOUNDARY_SEQ)}=="
        head = (
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
            + json.dumps(resource, ensure_ascii=False)
            + f"\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n"
        ).encode("utf-8")
        tail = f"\r\n--{boundary}--\r\n".encode("ascii")
        if isinstance(body, bytes):
            # small bodies are joined (one send); big ones go as three chunks, never copied
            data: bytes | tuple | StreamedBody = head + body + tail if len(body) < 65536 else (head, body, tail)
            length = len(head) + len(body) + len(tail)
        else:
            body.head, body.tail = head, tail
            data = body
            length = len(body)
        # the query is the same for every upload but the precondition: no urlencode per object
        query = _UPLOAD_QUERY + (
            f"&ifGenerationMatch={int(if_generation_match)}" if if_generation_match is not None else ""
        )
        _, doc = self._call(
            "POST",
            f"{self.upload_api}/b/{quote(bucket, safe='')}/o?{query}",
            body=data,
            headers={"Content-Type": f'multipart/related; boundary="{boundary}"', "Content-Length": str(length)},
        )
        info = ObjectInfo.from_json(doc)
        if sent_crc is None and not isinstance(body, bytes) and body.crc is not None:
            sent_crc = crc32c_b64(body.crc)
        if sent_crc is not None and info.crc32c is not None and info.crc32c != sent_crc:
            raise TransportCorruption(
                f"gs://{bucket}/{name}: stored CRC32C {info.crc32c} differs from the {sent_crc} sent",
                generation=info.generation,
            )
        return info

    def get(self, bucket: str, name: str) -> ObjectInfo | None:
        """The live object's size, CRC32C and generation, or None if there is none."""
        _, doc = self._call("GET", self._object_url(bucket, name, {"fields": _OBJECT_FIELDS}), not_found_ok=True)
        return ObjectInfo.from_json(doc) if doc is not None else None

    def compose(
        self,
        bucket: str,
        name: str,
        sources: Sequence[ObjectInfo],
        *,
        content_type: str,
        metadata: dict[str, str] | None = None,
        if_generation_match: int | None = 0,
        storage_class: str | None = None,
        delete_sources: bool = False,
    ) -> ObjectInfo:
        """Concatenate up to 32 objects of the bucket (pinned to their generations) into `name`.

        delete_sources asks GCS to hard-delete the sources with the compose (deleteSourceObjects,
        https://cloud.google.com/storage/docs/json_api/v1/objects/compose); a server that ignores it
        leaves them for the caller's cleanup.
        """
        if not 0 < len(sources) <= MAX_COMPOSE:
            raise ValueError(f"compose takes 1..{MAX_COMPOSE} sources, got {len(sources)}")
        destination: dict = {"contentType": content_type}
        if metadata:
            destination["metadata"] = metadata
        if storage_class:
            destination["storageClass"] = storage_class
        doc = {
            "kind": "storage#composeRequest",
            "sourceObjects": [{"name": s.name, "generation": str(s.generation)} for s in sources],
            "destination": destination,
        }
        if delete_sources:
            doc["deleteSourceObjects"] = True
        params = {"fields": _OBJECT_FIELDS}
        if if_generation_match is not None:
            params["ifGenerationMatch"] = str(if_generation_match)
        url = f"{self.api}/b/{bucket}/o/{quote(name, safe='')}/compose?{urlencode(params)}"
        _, out = self._call(
            "POST", url, body=json.dumps(doc).encode("utf-8"), headers={"Content-Type": "application/json"}
        )
        return ObjectInfo.from_json(out)

    def delete(self, bucket: str, name: str, *, generation: int | None = None) -> bool:
        """Delete an object (that generation, if given). False if it was not there."""
        params = {"generation": str(generation)} if generation else None
        status, _ = self._call("DELETE", self._object_url(bucket, name, params), not_found_ok=True)
        return status != 404

    def get_bucket(self, bucket: str, tail: str = "", params: dict | Sequence | None = None) -> dict | None:
        """GET {api}/b/{bucket}{tail}?{params} as JSON, or None on 404: a bucket's resource or one of its
        sub-resources (https://cloud.google.com/storage/docs/json_api/v1/buckets)."""
        url = f"{self.api}/b/{quote(bucket, safe='')}{tail}"
        _, doc = self._call("GET", f"{url}?{urlencode(params)}" if params else url, not_found_ok=True)
        return doc

    def bucket_exists(self, bucket: str) -> bool:
        """buckets.get with a one-field mask (https://cloud.google.com/storage/docs/json_api/v1/buckets/get)."""
        return self.get_bucket(bucket, params={"fields": "name"}) is not None

    def list_page(
        self, bucket: str, prefix: str = "", token: str | None = None, *, page_size: int = LIST_PAGE_SIZE
    ) -> tuple[list[ObjectInfo], str | None]:
        """One page of live objects under prefix (a fields mask keeps it small) and the next page's token."""
        params = {"fields": _LIST_FIELDS, "maxResults": str(page_size)}
        if prefix:
            params["prefix"] = prefix
        if token:
            params["pageToken"] = token
        _, doc = self._call("GET", f"{self.api}/b/{bucket}/o?{urlencode(params)}")
        doc = doc or {}
        return [ObjectInfo.from_json(item) for item in doc.get("items", ())], doc.get("nextPageToken") or None

    def list(self, bucket: str, prefix: str = "", *, page_size: int = LIST_PAGE_SIZE) -> Iterator[ObjectInfo]:
        """Every live object under prefix, one page in memory at a time (no retries: see list_pages)."""
        token: str | None = None
        while True:
            infos, token = self.list_page(bucket, prefix, token, page_size=page_size)
            yield from infos
            if not token:
                return
