"""A lean HTTP/1.1 client for the GCS hot path: one keep-alive connection per thread, nothing else.

Small uploads are bounded by CPU, not by the network: per object, urllib3's pool manager, connection
pool, URL re-parsing, retry and response objects plus google-auth's AuthorizedHttp cost more than
the request itself (about 40% of migrate's CPU per small file, measured with cProfile on S2). This
client keeps what a request needs: a thread-local `http.client` connection to the one endpoint,
the credentials' headers (refreshed when they expire, and once more on a 401, as AuthorizedHttp
does), timeouts, and the same error contract as the urllib3 path: transport trouble is a builtin
ConnectionError or TimeoutError (both retryable for migrate.retry), anything the request body
raises (a source file that changed while it was read) passes through unchanged. A connection that
saw any error is closed and replaced on the next request.

Used only when no HTTP(S) proxy applies to the endpoint; behind a proxy the urllib3 path stays.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from urllib.parse import urlsplit

REFRESH_STATUS = 401


class Http1:
    def __init__(self, base: str, credentials, auth_request, *, timeout: float, connect_timeout: float, ca_certs=None):
        parts = urlsplit(base)
        self.base = base.rstrip("/")
        self.host = parts.hostname or "localhost"
        self.https = parts.scheme == "https"
        self.port = parts.port or (443 if self.https else 80)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.credentials = credentials
        self.auth_request = auth_request  # google.auth transport Request, for token refreshes
        self.anonymous = type(credentials).__name__ == "AnonymousCredentials"
        self.context = ssl.create_default_context(cafile=ca_certs) if self.https else None
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.https:
                conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.connect_timeout, context=self.context
                )
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
            conn.connect()
            conn.sock.settimeout(self.timeout)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def request(self, method: str, url: str, body, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body bytes) of one request to `url` (which starts with the endpoint given at init)."""
        if not url.startswith(self.base):
            raise ValueError(f"{url} is not under {self.base}")
        target = url[len(self.base) :] or "/"
        for attempt in (1, 2):
            if not self.anonymous:
                self.credentials.before_request(self.auth_request, method, url, headers)
            status, data = self._send(method, target, body, headers)
            if status != REFRESH_STATUS or self.anonymous or attempt == 2:
                return status, data
            self.credentials.refresh(self.auth_request)  # a token revoked or expired early: once more
        raise AssertionError("unreachable")

    def _send(self, method: str, target: str, body, headers: dict[str, str]) -> tuple[int, bytes]:
        what = f"{method} {target.split('?', 1)[0]}"
        try:
            conn = self._connection()
            conn.request(method, target, body=_sendable(body), headers=headers)
            response = conn.getresponse()
            data = response.read()
        except TimeoutError as exc:
            self._drop()
            raise TimeoutError(f"{what}: {exc}") from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise ConnectionError(f"{what}: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            self._drop()  # the body's own error (or an interrupt) mid-request: the connection is unusable
            raise
        if response.will_close:
            self._drop()
        return response.status, data


def _sendable(body):
    """http.client sends bytes in one piece with the headers and iterates anything else."""
    if body is None or isinstance(body, bytes | bytearray):
        return body
    return iter(body)
