"""The only module that prints. Tables for people, JSON for machines."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text


def _width(stream) -> int | None:
    """Rich's own choice on a terminal or when COLUMNS is set; 120 columns when piped to a log,
    where rich would otherwise assume 80 and fold every table cell into slivers."""
    if "COLUMNS" in os.environ or (hasattr(stream, "isatty") and stream.isatty()):
        return None
    return 120


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))


def error(line: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)


def warn(line: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)


def info(line: str) -> None:
    """A line written by the CLI itself: rich markup is honoured, so data in it must be escape()d."""
    console.print(line, highlight=False, soft_wrap=True)


def plain(line: str) -> None:
    """A line of data (paths, summaries built by core code): printed as is, never read as markup."""
    console.print(line, highlight=False, soft_wrap=True, markup=False)


def identity(data: dict | None, *, err: bool = False) -> None:
    """The principal and quota project in use (clients.Identity.to_dict()), as one line of data."""
    if not data:
        return
    from migrate.clients import Identity

    (err_console if err else console).print(Identity(**data).line(), highlight=False, soft_wrap=True, markup=False)


def cell(value: object) -> str:
    """A table cell's text: counts with thousands separators, None as empty."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]], *, right: Iterable[str] = ()) -> None:
    right = set(right)
    t = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    for col in columns:
        t.add_column(col, justify="right" if col in right else "left", overflow="fold")
    for row in rows:
        # cells are data (file names), never markup; very long names keep their head and tail
        t.add_row(*(Text(shorten(cell(v))) for v in row))
    console.print(t)


def shorten(text: str, limit: int = 100) -> str:
    """Middle-elide a long cell so a 1,000-byte object name doesn't fill the screen (--json has it whole)."""
    if len(text) <= limit:
        return text
    keep = (limit - 1) // 2
    return text[:keep] + "…" + text[-keep:]


class _Spinner:
    """A transient status line fed by progress Events (used by scans that have no known total)."""

    def __init__(self, title: str, enabled: bool) -> None:
        self.title = title
        self.enabled = enabled and console.is_terminal
        self.count = 0
        self._status = None

    def __enter__(self):
        if self.enabled:
            self._status = console.status(self.title)
            self._status.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)

    def __call__(self, event) -> None:
        if self._status is None:
            return
        if event.kind == "file":
            self.count += event.n or 1
            self._status.update(f"{self.title}: {self.count:,} entries")
        elif event.kind == "phase":
            self._status.update(f"{self.title}: {event.name}")


def status_spinner(title: str, *, enabled: bool = True) -> _Spinner:
    return _Spinner(title, enabled)
