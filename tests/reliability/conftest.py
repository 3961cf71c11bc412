"""Fixtures of the reliability suite; the helpers live in relkit.py."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from relkit import kill_group


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    """Processes a test started with start_cli; any still alive at teardown get SIGKILLed (by group)."""
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            kill_group(p)
