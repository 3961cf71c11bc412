"""The reader: a log's records from a byte offset, with line numbers, over plain or gzip bytes."""

from __future__ import annotations

import os
from collections.abc import Iterator

from migrate.config import ListenerSource
from migrate.errors import SourceError
from migrate.sources.eventlog.csvrows import CsvJoiner, CsvParser
from migrate.sources.eventlog.parsing import JsonParser
from migrate.sources.eventlog.paths import file_identity
from migrate.sources.eventlog.records import Record
from migrate.sources.eventlog.streams import GZIP_MAGIC, Chunks, open_regular

# Longest line kept in memory; longer lines are oversized and their raw bytes truncated to this.
MAX_LINE_KEEP = 12 * 1000 * 1000


class EventReader:
    """Iterate a log's records from a byte offset. After iteration, `anomaly` names a truncated or
    corrupt gzip (the records before it were yielded; an incomplete last line comes as a record
    with error_kind 'truncated'), and `bytes_read` is the decompressed stream length reached.

    Raises SourceError if the file cannot be opened or a read fails.
    """

    def __init__(self, path: str, listener: ListenerSource, start_offset: int = 0, start_line: int = 0) -> None:
        self.path = path
        self.listener = listener
        self.start_offset = start_offset
        self.start_line = start_line
        self.anomaly: str | None = None
        self.bytes_read = 0
        self.stat: os.stat_result | None = None
        self.identity = file_identity(path, listener)
        self.crc32c: int | None = None  # after a full read of a plain file from byte 0: its CRC32C
        self.is_gzip: bool | None = None  # known once the first record is read (offsets are then file offsets)
        self._it = self._records()

    def __iter__(self) -> EventReader:
        return self

    def __next__(self) -> Record:
        return next(self._it)

    def _records(self) -> Iterator[Record]:
        fh, self.stat = open_regular(self.path)
        with fh:
            try:
                yield from self._read(fh)
            except OSError as exc:
                raise SourceError(
                    f"{self.path}: read failed at byte {self.bytes_read} ({exc.strerror or exc})",
                    "check the file system; the run is resumable",
                ) from None

    def _read(self, fh) -> Iterator[Record]:
        head = fh.read(2)
        is_gzip = self.is_gzip = head == GZIP_MAGIC
        fh.seek(0)
        chunks = Chunks(fh, is_gzip)
        parse = JsonParser(self) if self.listener.format == "jsonl" else CsvParser(self)
        pos = 0  # decompressed offset of buf[0]
        line_no = self.start_line
        buf = b""
        skip = self.start_offset
        needs_header = isinstance(parse, CsvParser)
        joiner = CsvJoiner(parse) if isinstance(parse, CsvParser) else None
        if not is_gzip and skip and not needs_header:
            fh.seek(skip)
            pos, skip = skip, 0
        overflow = False  # discarding the rest of an over-long line
        over_start = 0
        over_raw = b""
        for chunk in chunks:
            self.bytes_read = pos + len(buf) + len(chunk)
            buf += chunk
            start = 0
            while True:
                nl = buf.find(b"\n", start)
                if nl < 0:
                    break
                line = buf[start:nl]
                abs_off = pos + start
                end = pos + nl + 1
                start = nl + 1
                if overflow:
                    overflow = False
                    if skip:
                        continue
                    line_no += 1
                    yield parse.too_long(line_no, over_start, end, over_raw)
                    continue
                if needs_header:  # CSV: the first line is the header, read even when resuming
                    needs_header = False
                    parse.header(line)
                    if self.start_line == 0:
                        line_no = 1
                    if skip and skip <= end:
                        skip = 0
                    continue
                if skip:
                    if end <= skip:
                        continue
                    skip = 0
                line_no += 1
                if joiner is not None:
                    yield from joiner.feed(line_no, abs_off, end, line)
                    continue
                rec = parse.record(line_no, abs_off, end, line)
                if rec is not None:
                    yield rec
            buf = buf[start:]
            pos += start
            if len(buf) > MAX_LINE_KEEP:
                if not overflow:
                    overflow, over_start, over_raw = True, pos, buf[:MAX_LINE_KEEP]
                pos += len(buf)
                buf = b""
        if chunks.truncated:
            self.anomaly = f"{chunks.truncated} at decompressed byte {self.bytes_read}"
        whole = not is_gzip and self.start_offset == 0 and self.stat is not None
        if whole and chunks.raw_bytes == self.stat.st_size:  # not grown while it was read
            self.crc32c = chunks.raw_crc
        if overflow:
            if not skip:
                line_no += 1
                if chunks.truncated:
                    yield Record(line_no, over_start, pos, over_raw, error=self.anomaly, error_kind="truncated")
                else:
                    yield parse.too_long(line_no, over_start, pos, over_raw)
        elif buf and not (skip and pos + len(buf) <= skip):
            if needs_header:
                parse.header(buf)
                return
            line_no += 1
            if chunks.truncated:
                if joiner is not None:
                    yield from joiner.finish()
                yield Record(line_no, pos, pos + len(buf), buf, error=self.anomaly, error_kind="truncated")
            elif joiner is not None:
                yield from joiner.feed(line_no, pos, pos + len(buf), buf)
            else:
                rec = parse.record(line_no, pos, pos + len(buf), buf)
                if rec is not None:
                    yield rec
        if joiner is not None:
            yield from joiner.finish()


def iter_records(path: str, listener: ListenerSource, start_offset: int = 0, start_line: int = 0) -> EventReader:
    """Records of one log file from `start_offset` (decompressed bytes; must be a line start) on.

    `start_line` is the number of lines below `start_offset` (for CSV, including the header), so
    line numbers continue correctly. The returned iterator carries `anomaly` after exhaustion.
    """
    return EventReader(path, listener, start_offset, start_line)
