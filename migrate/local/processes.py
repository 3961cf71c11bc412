"""Processes of the local harness: free ports, HTTP readiness, process groups, and a reaper that kills
an emulator's group if its owner dies without stopping it (even on SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group, read from /proc."""
    return [pid for pid, _ in group_states(pgid)]


def group_states(pgid: int) -> list[tuple[int, str]]:
    """(pid, state letter) of the live (non-zombie) processes in a process group."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp ...
        rest = stat.rsplit(")", 1)[-1].split()
        if len(rest) >= 3 and rest[0] != "Z" and int(rest[2]) == pgid:
            members.append((int(entry.name), rest[0]))
    return members


_REAPER_CODE = (
    "import os, signal, sys\n"
    "sys.stdin.buffer.read()\n"
    "try:\n"
    "    os.killpg(int(sys.argv[1]), signal.SIGKILL)\n"
    "except OSError:\n"
    "    pass\n"
)


class Reaper:
    """Kills an emulator's process group if this process dies without stopping it (even on SIGKILL).

    A tiny Python process in its own session blocks reading a pipe whose only writer is this process;
    when this process exits for any reason the pipe closes, the read returns and it kills the group.
    A normal stop disarms it first (SIGKILL to the reaper), so it never signals a reused group id.
    """

    def __init__(self, pgid: int) -> None:
        self._proc: subprocess.Popen | None = subprocess.Popen(
            [sys.executable, "-S", "-c", _REAPER_CODE, str(pgid)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def disarm(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
