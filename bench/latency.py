"""A latency-injecting TCP proxy: every response reaches the client `delay` seconds after the server sent it.

The proxy relays bytes both ways unchanged (any HTTP client, keep-alive, uploads of any size). A
"response" is the first bytes the server sends after the client has sent something; those bytes are
held until `delay` seconds after they arrived, and the rest of that response follows them at once. So
each request/response exchange costs `delay` more, as a wide-area round trip would, while bandwidth is
left alone. Connection set-up is not delayed. Locations the server hands out (resumable upload
sessions) are not rewritten: requests to them bypass the proxy, which S7's small and medium files
never need.

    python -m bench.latency --target 127.0.0.1:PORT --delay 0.03    # prints "listening PORT", then serves

It runs in its own process, so its CPU is charged to no tool (every tool pays it alike).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

READ = 256 * 1024


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self) -> None:
        self.request_sent = False  # the client sent bytes the server has not answered yet


async def _client_to_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
    try:
        while True:
            data = await reader.read(READ)
            if not data:
                break
            link.request_sent = True
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()


async def _server_to_client(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link, delay: float
) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            data = await reader.read(READ)
            if not data:
                break
            if link.request_sent:  # the first bytes of a response: hold them for the round trip
                link.request_sent = False
                arrived = loop.time()
                await asyncio.sleep(max(0.0, arrived + delay - loop.time()))
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _serve(host: str, port: int, target: tuple[str, int], delay: float, ready) -> None:
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection(*target)
        except OSError:
            c_writer.close()
            return
        link = _Link()
        up = asyncio.create_task(_client_to_server(c_reader, s_writer, link))
        down = asyncio.create_task(_server_to_client(s_reader, c_writer, link, delay))
        with contextlib.suppress(Exception):
            await asyncio.gather(up, down, return_exceptions=True)
        for w in (s_writer, c_writer):
            with contextlib.suppress(Exception):
                w.close()

    server = await asyncio.start_server(handle, host, port, backlog=1024)
    ready(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True, help="HOST:PORT of the server")
    ap.add_argument("--delay", type=float, default=0.03, help="seconds added to every response (default 0.03)")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (default: a free port)")
    a = ap.parse_args(argv)
    thost, tport = a.target.rsplit(":", 1)
    lhost, lport = a.listen.rsplit(":", 1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    def ready(port: int) -> None:
        print(f"listening {port}", flush=True)

    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        asyncio.run(_serve(lhost, int(lport), (thost, int(tport)), a.delay, ready))
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
