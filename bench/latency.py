"""A latency-injecting TCP proxy: every response reaches the client `delay` seconds after the server sent it.

The proxy relays bytes both ways unchanged (any HTTP client, keep-alive, uploads of any size). A
"response" is the first bytes the server sends after the client has sent something; those bytes are
held for `delay` seconds after they arrived, and the rest of that response follows them at once.
Uploads pass through os.splice (kernel to kernel), so the relay itself does not cap bandwidth. So
each request/response exchange costs `delay` more, as a wide-area round trip would, while bandwidth is
left alone. Connection set-up is not delayed. Locations the server hands out (resumable upload
sessions) are not rewritten: requests to them bypass the proxy, which S7's small and medium files
never need.

    python -m bench.latency --target 127.0.0.1:PORT --delay 0.03    # prints "listening PORT", then serves

It runs in its own process, so its CPU is charged to no tool (every tool pays it alike).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

READ = 256 * 1024
SPLICE = 1024 * 1024


class _Link:
    """One client connection and its upstream connection, relayed by two threads."""

    def __init__(self, client: socket.socket, server: socket.socket, delay: float) -> None:
        self.client = client
        self.server = server
        self.delay = delay
        self.request_sent = False  # the client sent bytes the server has not answered yet

    def up(self) -> None:
        """Client to server: kernel to kernel through a pipe (os.splice), so uploads cost the proxy
        next to no CPU and the bandwidth every tool sees is the emulator's, not the relay's."""
        rfd, wfd = os.pipe()
        try:
            cfd, sfd = self.client.fileno(), self.server.fileno()
            while True:
                n = os.splice(cfd, wfd, SPLICE)
                if n == 0:
                    break
                self.request_sent = True
                while n:
                    n -= os.splice(rfd, sfd, n)
        except OSError:
            pass
        finally:
            os.close(rfd)
            os.close(wfd)
            with contextlib.suppress(OSError):
                self.server.shutdown(socket.SHUT_WR)

    def down(self) -> None:
        """Server to client: the first bytes of each response wait until `delay` after they arrived."""
        try:
            while True:
                data = self.server.recv(READ)
                if not data:
                    break
                if self.request_sent:
                    self.request_sent = False
                    time.sleep(self.delay)
                self.client.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                self.client.shutdown(socket.SHUT_WR)

    def run(self) -> None:
        up = threading.Thread(target=self.up, daemon=True)
        up.start()
        self.down()
        up.join()
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                s.close()


def serve(listener: socket.socket, target: tuple[str, int], delay: float) -> None:
    while True:
        client, _ = listener.accept()
        try:
            server = socket.create_connection(target)
        except OSError:
            client.close()
            continue
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_Link(client, server, delay).run, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True, help="HOST:PORT of the server")
    ap.add_argument("--delay", type=float, default=0.03, help="seconds added to every response (default 0.03)")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (default: a free port)")
    a = ap.parse_args(argv)
    thost, tport = a.target.rsplit(":", 1)
    lhost, lport = a.listen.rsplit(":", 1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.create_server((lhost, int(lport)), backlog=1024)
    print(f"listening {listener.getsockname()[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        serve(listener, (thost, int(tport)), a.delay)
    return 0


class LatencyProxy:
    """The proxy as a child process: `with LatencyProxy("http://127.0.0.1:4443", 0.03) as p: p.url`."""

    def __init__(self, upstream: str, delay: float, *, log_path: Path | None = None) -> None:
        from urllib.parse import urlsplit

        u = urlsplit(upstream)
        self.delay = delay
        self.scheme = u.scheme or "http"
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.latency", "--target", f"{u.hostname}:{u.port}", "--delay", str(delay)],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        line = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not line.startswith("listening"):
            line = self.proc.stdout.readline() if self.proc.stdout else ""
            if not line and self.proc.poll() is not None:
                break
        if not line.startswith("listening"):
            self.stop()
            raise RuntimeError("the latency proxy did not start")
        self.port = int(line.split()[1])

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        if self._log is not subprocess.DEVNULL:
            self._log.close()

    def __enter__(self) -> LatencyProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
