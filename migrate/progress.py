"""Progress events. Core code reports through a callback; only the CLI renders.

Workers call `report(Event(...))`; the CLI's renderer turns the stream into a rich
progress display, periodic log lines, or nothing (--json / --quiet).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """kind: one of
    'start'        data: totals (objects, bytes, events, files)
    'bytes'        n: bytes moved (negative when a retry rewound)
    'object_done'  name, n: size
    'object_failed' name, data: {'error': ...}
    'source_changed' name
    'events'       n: events acknowledged, data: {'bytes': ...}
    'quarantined'  n, name: file
    'retry'        name, data: {'error': ...}
    'phase'        name: what is happening ('listing', 'hashing', ...)
    'identity'     data: clients.Identity.to_dict() (principal, kind, quota_project, via), before any target call
    'file'         name: a file scanned (inventory)
    'finish'       data: summary
    """

    kind: str
    name: str = ""
    n: int = 0
    data: dict[str, Any] = field(default_factory=dict)


Reporter = Callable[[Event], None]


def null_reporter(event: Event) -> None:
    """Discard events (quiet and --json modes)."""
