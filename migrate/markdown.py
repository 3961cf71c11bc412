"""Markdown for the report files (plans/<name>.md, .verify.md): escaped cells, code spans, tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from migrate.names import display_name
from migrate.units import format_bytes


class Md(str):
    """Text that is already markdown: table() does not escape it."""


def cell(value: object) -> str:
    """A table cell: printable (names that are not UTF-8, line breaks) with '|' escaped."""
    if isinstance(value, Md):
        return str(value)
    text = "" if value is None else str(value)
    return display_name(text).replace("|", "\\|")


def code(value: object) -> Md:
    """A code span; text holding a backtick gets the double-backtick form."""
    text = cell(value)
    if not text:
        return Md("")
    return Md(f"`` {text} ``" if "`" in text else f"`{text}`")


def num(value: int) -> Md:
    return Md(f"{value:,}")


def nbytes(value: int) -> Md:
    return Md(format_bytes(value) if value else "0 B")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], right: Iterable[int] = ()) -> list[str]:
    """A table; the columns in `right` are right-aligned."""
    right = set(right)
    out = ["| " + " | ".join(headers) + " |"]
    out.append("|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|")
    for row in rows:
        out.append("| " + " | ".join(cell(v) for v in row) + " |")
    return out
