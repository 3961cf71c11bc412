"""The lean HTTP/1.1 client of the GCS hot path, against a real local HTTP server (response framings
fake-gcs-server does not produce: chunked bodies, 204, closes, 1xx, stalls) and a 401 refresh."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.auth.credentials import AnonymousCredentials, Credentials

from migrate.targets.http1 import Http1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, bytes, dict]] = []

    def log_message(self, *args) -> None:
        pass

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_POST(self) -> None:
        body = self._body()
        self.seen.append(("POST", self.path, body, dict(self.headers)))
        if self.path.startswith("/interim"):
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._json(b'{"got": %d}' % len(body))

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, b"", dict(self.headers)))
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b'{"a":', b" 1}"):
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\nX-Trailer: t\r\n\r\n")
        elif self.path == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b'{"closed": true}')
            self.close_connection = True
        elif self.path == "/slow":
            time.sleep(2)
            self._json(b"{}")
        elif self.path == "/auth":
            ok = self.headers.get("Authorization") == "Bearer fresh"
            self._json(b"{}", 200 if ok else 401)
        else:
            self._json(b'{"path": "%s"}' % self.path.encode())

    def do_DELETE(self) -> None:
        self.seen.append(("DELETE", self.path, b"", dict(self.headers)))
        self.send_response(204)
        self.end_headers()

    def _json(self, data: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() waits for the handlers (the slow one too): nothing outlives the test

    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up (the timeout test) is expected; no traceback on stderr


@pytest.fixture
def server():
    _Handler.seen = []
    srv = _Server(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _client(base: str, creds=None, timeout: float = 5.0) -> Http1:
    return Http1(base, creds or AnonymousCredentials(), None, timeout=timeout, connect_timeout=5.0)


def test_bodies_framings_and_keep_alive(server) -> None:
    c = _client(server)
    assert c.request("POST", f"{server}/up?x=1", b"hello", {"Content-Type": "text/plain"}) == (200, b'{"got": 5}')
    parts = (b"--b\r\n", b"x" * 100_000, b"\r\n--b--")  # a multipart upload as three pieces
    length = str(sum(map(len, parts)))
    assert c.request("POST", f"{server}/up", parts, {"Content-Length": length}) == (200, b'{"got": 100012}')
    assert c.request("GET", f"{server}/chunked", None, {}) == (200, b'{"a": 1}')
    assert c.request("DELETE", f"{server}/o", None, {}) == (204, b"")
    assert c.request("POST", f"{server}/interim", b"", {}) == (200, b'{"got": 0}')  # 100 Continue skipped
    assert c.request("GET", f"{server}/close", None, {}) == (200, b'{"closed": true}')
    assert c._local.conn is None  # the server said close: the next request opens a new connection
    assert c.request("GET", f"{server}/after", None, {}) == (200, b'{"path": "/after"}')
    assert [s[1] for s in _Handler.seen] == ["/up?x=1", "/up", "/chunked", "/o", "/interim", "/close", "/after"]
    assert _Handler.seen[0][2] == b"hello" and _Handler.seen[1][2] == b"".join(parts)


def test_transport_errors_are_retryable_builtins_and_body_errors_pass_through(server) -> None:
    c = _client(server, timeout=0.5)
    with pytest.raises(TimeoutError):
        c.request("GET", f"{server}/slow", None, {})
    assert c._local.conn is None

    class SourceChanged(Exception):
        pass

    def body():
        yield b"x" * 10
        raise SourceChanged("file changed while reading")

    class Streamed:
        def __len__(self) -> int:
            return 20

        def __iter__(self):
            return body()

    with pytest.raises(SourceChanged):
        c.request("POST", f"{server}/up", Streamed(), {})
    assert c._local.conn is None  # half a body was sent: that connection is never reused
    with pytest.raises(ValueError, match="line break"):
        c.request("GET", f"{server}/x", None, {"X-Bad": "a\r\nInjected: 1"})
    dead = _client("http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(ConnectionError):
        dead.request("GET", "http://127.0.0.1:9/x", None, {})


class _Token(Credentials):
    def __init__(self) -> None:
        super().__init__()
        self.token = "stale"
        self.refreshes = 0

    def refresh(self, request) -> None:
        self.refreshes += 1
        self.token = "fresh"


def test_a_401_refreshes_the_token_once_and_retries(server) -> None:
    creds = _Token()
    c = _client(server, creds)
    assert c.request("GET", f"{server}/auth", None, {})[0] == 200
    assert creds.refreshes == 1
    auth = [{k.lower(): v for k, v in s[3].items()}.get("authorization") for s in _Handler.seen]
    assert auth == ["Bearer stale", "Bearer fresh"]
