"""A lean HTTP/1.1 client for the GCS hot path: one keep-alive socket per thread, nothing else.

Small uploads are bounded by CPU, not by the network. Per object, urllib3's pool manager, connection
pool, URL re-parsing, retry and response objects plus google-auth's AuthorizedHttp cost about 40% of
migrate's CPU per small file, and http.client's response parsing (the email package) another fifth
of what is left (both measured with cProfile on bench S2). This client writes the request head
itself, sends small bodies in the same write, and reads the status line, the few headers it needs
and the body (Content-Length, chunked, or to the close) from a buffered socket.

It keeps what a request needs: a thread-local connection to the one endpoint (TLS with the system
or configured CA bundle), the credentials' headers (refreshed when they expire, and once more on a
401, as AuthorizedHttp does), timeouts, and the same error contract as the urllib3 path: transport
trouble is a builtin ConnectionError or TimeoutError (both retryable for migrate.retry); whatever a
streamed body raises (a source file that changed while it was read) passes through unchanged. A
connection that saw any error is closed and replaced on the next request.

Used only when no HTTP(S) proxy applies to the endpoint; behind a proxy the urllib3 path stays.
"""

from __future__ import annotations

import socket
import ssl
import threading
from urllib.parse import urlsplit

REFRESH_STATUS = 401
MAX_LINE = 65536
MAX_HEADERS = 200
_NO_BODY = frozenset({204, 304})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JOIN_LIMIT = 64 * 1024  # bodies up to this size go out in the same write as the head


class _Conn:
    __slots__ = ("sock", "rfile")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb", buffering=MAX_LINE)

    def close(self) -> None:
        try:
            self.rfile.close()
        finally:
            self.sock.close()


class Http1:
    def __init__(self, base: str, credentials, auth_request, *, timeout: float, connect_timeout: float, ca_certs=None):
        parts = urlsplit(base)
        self.base = base.rstrip("/")
        self.host = parts.hostname or "localhost"
        self.https = parts.scheme == "https"
        self.port = parts.port or (443 if self.https else 80)
        default_port = self.port == (443 if self.https else 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.credentials = credentials
        self.auth_request = auth_request  # a google.auth transport Request (or a callable like it), for refreshes
        self.anonymous = credentials is None or type(credentials).__name__ == "AnonymousCredentials"
        self.context = ssl.create_default_context(cafile=ca_certs) if self.https else None
        self._local = threading.local()

    def _connection(self) -> _Conn:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.timeout)
            conn = self._local.conn = _Conn(sock)
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
            status, data = self._exchange(method, target, body, headers)
            if status != REFRESH_STATUS or self.anonymous or attempt == 2:
                return status, data
            self.credentials.refresh(self.auth_request)  # a token revoked or expired early: once more
        raise AssertionError("unreachable")

    def _exchange(self, method: str, target: str, body, headers: dict[str, str]) -> tuple[int, bytes]:
        what = f"{method} {target.split('?', 1)[0]}"
        head = self._head(method, target, body, headers)
        try:
            conn = self._connection()
            _send(conn.sock, head, body)
            status, data, close = _read_response(conn.rfile, method)
        except TimeoutError as exc:
            self._drop()
            raise TimeoutError(f"{what}: {exc}") from exc
        except (OSError, ValueError) as exc:
            self._drop()
            raise ConnectionError(f"{what}: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            self._drop()  # the body's own error (or an interrupt) mid-request: the connection is unusable
            raise
        if close:
            self._drop()
        return status, data

    def _head(self, method: str, target: str, body, headers: dict[str, str]) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host_header}"]
        has_length = False
        for name, value in headers.items():
            value = str(value)
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} holds a line break")
            has_length = has_length or name.lower() == "content-length"
            lines.append(f"{name}: {value}")
        if not has_length:
            if body is None:
                if method in _BODY_METHODS:
                    lines.append("Content-Length: 0")
            elif isinstance(body, tuple | list):
                lines.append(f"Content-Length: {sum(len(chunk) for chunk in body)}")
            else:
                lines.append(f"Content-Length: {len(body)}")  # bytes, or a streamed body that knows its length
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _send(sock: socket.socket, head: bytes, body) -> None:
    if body is None:
        sock.sendall(head)
    elif isinstance(body, bytes | bytearray):
        if len(body) <= JOIN_LIMIT:
            sock.sendall(head + body)
        else:
            sock.sendall(head)
            sock.sendall(body)
    else:
        sock.sendall(head)
        for chunk in body:  # a tuple of bytes, or a streamed body that reads the file as it goes
            if chunk:
                sock.sendall(chunk)


def _read_response(rfile, method: str) -> tuple[int, bytes, bool]:
    """(status, body, the server will close) of one response; interim 1xx responses are skipped."""
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if not line:
            raise ConnectionResetError("the server closed the connection before answering")
        if len(line) > MAX_LINE:
            raise ValueError("status line too long")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ValueError(f"bad status line {line[:80]!r}")
        status = int(parts[1])
        length, chunked, close = _read_headers(rfile, parts[0] == b"HTTP/1.0")
        if not 100 <= status < 200:
            break
    if method == "HEAD" or status in _NO_BODY:
        return status, b"", close
    if chunked:
        return status, _read_chunked(rfile), close
    if length is not None:
        data = rfile.read(length)
        if len(data) != length:
            raise ConnectionResetError(f"response body cut short: {len(data)} of {length} bytes")
        return status, data, close
    return status, rfile.read(), True  # no length: the body runs to the close


def _read_headers(rfile, http10: bool) -> tuple[int | None, bool, bool]:
    length: int | None = None
    chunked = False
    close = http10
    for _ in range(MAX_HEADERS):
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise ValueError("header line too long")
        if line in (b"\r\n", b"\n", b""):
            return length, chunked, close
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            token = value.strip().lower()
            close = token == b"close" or (http10 and token != b"keep-alive")
    raise ValueError("too many response headers")


def _read_chunked(rfile) -> bytes:
    out = []
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if not line:
            raise ConnectionResetError("chunked response cut short")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while rfile.readline(MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(out)
        chunk = rfile.read(size)
        if len(chunk) != size:
            raise ConnectionResetError("chunked response cut short")
        out.append(chunk)
        rfile.readline(MAX_LINE + 1)  # the CRLF after the chunk
