"""Freeze and thaw an emulator's process group (SIGSTOP / SIGCONT): it stops answering but keeps its
connections open, which is how a hung service looks to a client."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from migrate.local.emulators import PubSubEmulator
from migrate.local.processes import STOP_TIMEOUT, group_states


def freeze(server: PubSubEmulator) -> None:
    """SIGSTOP the whole group; returns once every process of it is stopped (delivery is asynchronous)."""
    _signal(server, signal.SIGSTOP)
    _wait_states(server, lambda state: state in "Tt")


def thaw(server: PubSubEmulator) -> None:
    """SIGCONT the whole group after freeze(); returns once no process of it is stopped."""
    _signal(server, signal.SIGCONT)
    _wait_states(server, lambda state: state not in "Tt")


def _signal(server: PubSubEmulator, sig: int) -> None:
    if server.pgid is not None:
        try:
            os.killpg(server.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_states(server: PubSubEmulator, ok: Callable[[str], bool]) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT
    while server.pgid is not None and time.monotonic() < deadline:
        if all(ok(state) for _, state in group_states(server.pgid)):
            return
        time.sleep(0.01)
