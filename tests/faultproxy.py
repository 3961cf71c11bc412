"""A small threaded HTTP proxy in front of fake-gcs-server that injects faults (test harness only).

At `rate` (0..1, decided per request by a seeded RNG) it injects one of `faults`:
  "429", "503"  answer with that status and a JSON error body (the request body is read and dropped);
  "reset"       close the client connection with a TCP RST right after the request headers;
  "stall"       forward the request, then hold the response for `stall_seconds` (past the client's
                timeout) and drop the connection; with stall_forwards=False it stalls before forwarding;
  "corrupt"     (only when asked for, never among the defaults) forward the request with one byte in the
                middle of its body flipped: damage on the way that TCP did not catch.
An `observer` (tests/wirecheck.py) sees every request as the client sent it: begin(method, path, headers)
returns a record that is fed the body and told the status.
Every other request is forwarded faithfully: method, path, headers and a streamed body (Content-Length or
chunked) go upstream; status, headers and a streamed body come back. A Location header that points at the
upstream (resumable upload sessions) is rewritten to point at the proxy, so later chunks pass through it too.

    with FaultProxy(emulators.gcs, rate=0.2, seed=3) as proxy:
        os.environ["STORAGE_EMULATOR_HOST"] = proxy.url
        ...
        proxy.counts  # {"429": n, "503": n, "reset": n, "stall": n, "forwarded": n, "upstream_error": n}
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULTS = ("429", "503", "reset", "stall")
ALL_FAULTS = (*FAULTS, "corrupt")
CHUNK = 64 * 1024
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: FaultProxy


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.2,
        faults: Iterable[str] = FAULTS,
        seed: int = 0,
        stall_seconds: float = 5.0,
        stall_forwards: bool = True,
        match: Callable[[str, str], bool] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        observer=None,
    ) -> None:
        parts = urlsplit(upstream if "://" in upstream else f"http://{upstream}")
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port
        self.upstream_url = f"http://{parts.hostname}:{parts.port}"
        self.faults = tuple(faults)
        unknown = set(self.faults) - set(ALL_FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; use {ALL_FAULTS}")
        self.observer = observer
        self.rate = rate
        self.stall_seconds = stall_seconds
        self.stall_forwards = stall_forwards
        self.match = match
        self.counts: Counter[str] = Counter()
        self.requests = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server((host, port), _Handler)
        self._server.proxy = self
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}"

    @property
    def injected(self) -> int:
        with self._lock:
            return sum(n for k, n in self.counts.items() if k in FAULTS)

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes stalled handlers
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- decisions ----------------------------------------------------------------------------

    def decide(self, method: str, path: str) -> str | None:
        """The fault for this request, or None to forward it. Counts the request."""
        with self._lock:
            self.requests += 1
            if not self.faults or (self.match is not None and not self.match(method, path)):
                return None
            if self._rng.random() >= self.rate:
                return None
            fault = self._rng.choice(self.faults)
            self.counts[fault] += 1
            return fault

    def count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        pass

    # Every method goes through the same path.
    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    @property
    def proxy(self) -> FaultProxy:
        return self.server.proxy

    def _handle(self) -> None:
        proxy = self.proxy
        self._rec = proxy.observer.begin(self.command, self.path, self.headers) if proxy.observer else None
        fault = proxy.decide(self.command, self.path)
        self._fault = fault
        if fault == "reset":
            self._reset()
            return
        if fault in ("429", "503"):
            try:
                self._drain_body()
            except (OSError, ValueError):
                self._reset()
                return
            self._error(int(fault))
            return
        if fault == "stall" and not proxy.stall_forwards:
            proxy._stopping.wait(proxy.stall_seconds)
            self._reset()
            return
        try:
            resp, conn = self._forward()
        except (OSError, ValueError, http.client.HTTPException):
            proxy.count("upstream_error")
            self._reset()  # like a server that is down
            return
        try:
            if fault == "stall":
                resp.read()  # the upstream did the work; the client never hears about it
                proxy._stopping.wait(proxy.stall_seconds)
                self._reset()
                return
            proxy.count("forwarded")
            if self._rec is not None:
                self._rec.done(resp.status)
            self._relay(resp)
        finally:
            conn.close()

    # --- faults ------------------------------------------------------------------------------------

    def _reset(self) -> None:
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    def _error(self, status: int) -> None:
        reason = "Too Many Requests" if status == 429 else "Service Unavailable"
        body = json.dumps({"error": {"code": status, "message": f"fault injected: {reason}"}}).encode()
        self.send_response(status, reason)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _drain_body(self) -> None:
        for _ in self._body_chunks():
            pass

    # --- forwarding ----------------------------------------------------------------------------

    def _body_chunks(self):
        """The request body as it arrives, shown to the observer, damaged if the fault says so."""
        flip = int(self.headers.get("Content-Length") or 0) // 2 if getattr(self, "_fault", None) == "corrupt" else -1
        seen = 0
        for data in self._raw_body_chunks():
            if 0 <= flip - seen < len(data):
                i = flip - seen
                data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
            seen += len(data)
            if getattr(self, "_rec", None) is not None:
                self._rec.feed(data)
            yield data

    def _raw_body_chunks(self):
        """The request body as it arrives (decoded if chunked), in pieces of at most CHUNK bytes."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                left = size
                while left:
                    data = self.rfile.read(min(left, CHUNK))
                    if not data:
                        raise ConnectionError("client closed mid-chunk")
                    left -= len(data)
                    yield data
                self.rfile.readline(1024)  # CRLF after the chunk
            return
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            data = self.rfile.read(min(left, CHUNK))
            if not data:
                raise ConnectionError("client closed mid-body")
            left -= len(data)
            yield data

    def _forward(self) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        proxy = self.proxy
        conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=self.timeout)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in self.headers.items():
                low = key.lower()
                if low in HOP_BY_HOP:
                    continue
                if low == "host":
                    value = f"{proxy.upstream_host}:{proxy.upstream_port}"
                conn.putheader(key, value)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for data in self._body_chunks():
                conn.send(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if chunked:
                conn.send(b"0\r\n\r\n")
            return conn.getresponse(), conn
        except BaseException:
            conn.close()
            raise

    def _relay(self, resp: http.client.HTTPResponse) -> None:
        proxy = self.proxy
        self.send_response_only(resp.status, resp.reason)
        length = resp.getheader("Content-Length")
        no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        for key, value in resp.getheaders():
            low = key.lower()
            if low in HOP_BY_HOP:
                continue
            if low == "location" and value.startswith(proxy.upstream_url):
                value = proxy.url + value[len(proxy.upstream_url) :]
            self.send_header(key, value)
        rechunk = not no_body and length is None
        if rechunk:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if no_body:
            return
        while True:
            data = resp.read(CHUNK)
            if not data:
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if rechunk else data)
        if rechunk:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
