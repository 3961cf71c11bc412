"""gcp-storage-emulator (PyPI) for the resumable-upload path, started on a free port (test harness only).

fake-gcs-server gets resumable uploads wrong in ways the product depends on: a status query
(`Content-Range: bytes */N`) commits the truncated object, and the session ignores the storage class and
the final chunk's CRC32C. gcp-storage-emulator answers a status query with 308 and the persisted range,
keeps partial chunks like GCS does, refuses a finalize whose bytes do not match the session's CRC32C
(400), and, like a new GCS bucket, has soft delete on by default. It ignores ifGenerationMatch and
`x-goog-hash`: tests check those on the wire (tests/wirecheck.py) instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from migrate.local.emulators import free_port

HOST = "127.0.0.1"


class ResumableGcs:
    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> ResumableGcs:
        cmd = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", HOST, "--port", str(self.port)]
        cmd += ["--in-memory", "--quiet"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gcp-storage-emulator exited: see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b?project=p", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gcp-storage-emulator did not answer on {self.url}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> ResumableGcs:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
