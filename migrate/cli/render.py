"""The only module that prints. Tables for people, JSON for machines."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def error(line: str) -> None:
    err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)


def warn(line: str) -> None:
    err_console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)


def info(line: str) -> None:
    console.print(line, highlight=False, soft_wrap=True)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]], *, right: Iterable[str] = ()) -> None:
    right = set(right)
    t = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    for col in columns:
        t.add_column(col, justify="right" if col in right else "left", overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    console.print(t)
