"""CSV rows: the header, one row as a JSON object, and rows whose quoted fields hold line breaks."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

from migrate.sources.eventlog.parsing import Parser
from migrate.sources.eventlog.records import Record

if TYPE_CHECKING:
    from migrate.sources.eventlog.reader import EventReader

MAX_QUOTED_LINES = 1000  # a CSV quoted field still open after this many lines is taken for a stray quote
MAX_QUOTED_BYTES = 12 * 1000 * 1000


class CsvParser(Parser):
    def __init__(self, reader: EventReader) -> None:
        super().__init__(reader)
        self.columns: list[str] | None = None
        self.header_error: str | None = None

    def header(self, raw: bytes) -> None:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        text, err = self.decode(line)
        if err:
            self.header_error = f"CSV header: {err}"
            return
        cols = next(csv.reader([text]), [])
        if not cols or len(set(cols)) != len(cols):
            self.header_error = "CSV header is empty or has duplicate column names"
            return
        self.columns = cols

    def record(self, line_no: int, offset: int, end: int, raw: bytes) -> Record | None:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if not line or line.isspace():
            return None
        if self.columns is None:
            return Record(line_no, offset, end, raw, error=self.header_error or "no CSV header", error_kind="malformed")
        text, err = self.decode(line)
        if err:
            return Record(line_no, offset, end, raw, error=err, error_kind="malformed")
        try:
            row = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            return Record(line_no, offset, end, raw, error=f"bad CSV row: {exc}", error_kind="malformed")
        if len(row) != len(self.columns):
            return Record(
                line_no,
                offset,
                end,
                raw,
                error=f"bad CSV row: {len(row)} columns, header has {len(self.columns)}",
                error_kind="malformed",
            )
        obj = dict(zip(self.columns, row, strict=True))
        data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return self.finish(line_no, offset, end, raw, data, obj)


class CsvJoiner:
    """Joins the physical lines of a CSV record whose quoted field holds line breaks (RFC 4180).

    A line with an odd number of double quotes opens a quoted field; lines are held until the count
    is even again (an escaped quote "" counts twice, so it never changes the parity) and then parsed
    as one record. A stray quote must not swallow the rest of the file: when the joined lines do not
    make a valid row, or the quote is still open at the end of the file or after MAX_QUOTED_LINES /
    MAX_QUOTED_BYTES, the opening line is a bad row on its own and the lines it held are read again.
    """

    def __init__(self, parse: CsvParser) -> None:
        self.parse = parse
        self.parts: list[tuple[int, int, int, bytes]] = []  # (line, offset, end, bytes)
        self.quotes = self.size = 0

    def feed(self, line_no: int, offset: int, end: int, line: bytes) -> Iterator[Record]:
        quotes = line.count(b'"')
        if not self.parts and not quotes & 1:
            rec = self.parse.record(line_no, offset, end, line)
            if rec is not None:
                yield rec
            return
        self.parts.append((line_no, offset, end, line))
        self.quotes += quotes
        self.size += len(line) + 1
        if self.quotes & 1 and len(self.parts) < MAX_QUOTED_LINES and self.size < MAX_QUOTED_BYTES:
            return
        yield from self._close(balanced=not self.quotes & 1)

    def finish(self) -> Iterator[Record]:
        """At the end of the file: whatever is held was not a quoted record."""
        while self.parts:
            yield from self._close(balanced=False)

    def _close(self, *, balanced: bool) -> Iterator[Record]:
        parts, self.parts, self.quotes, self.size = self.parts, [], 0, 0
        if balanced:
            raw = b"\n".join(p[3] for p in parts)
            rec = self.parse.record(parts[0][0], parts[0][1], parts[-1][2], raw)
            if rec is None or rec.error_kind != "malformed":
                if rec is not None:
                    rec.lines = len(parts)
                    yield rec
                return
        rec = self.parse.record(*parts[0])
        if rec is not None:
            yield rec
        for part in parts[1:]:
            yield from self.feed(*part)
