"""Listener event logs: JSONL or CSV, gzipped or plain, read as records with byte offsets.

Offsets are byte offsets in the *decompressed* stream, so a watermark means the same thing
for a plain and a gzipped file. Resuming a gzip re-decompresses from the start and skips
to the offset (gzip has no random access).

Event ids
  With `event_id_field` set, the id is that field's value (strings as is, other JSON values
  as compact JSON). Otherwise the id is derived: ``blake2b-128(listener + "\\0" + relpath +
  "\\0" + offset)`` in hex, prefixed with ``d-``. ``relpath`` is the file's path relative to the
  non-wildcard directory of the glob pattern that matched it (``/srv/logs/plays/*.jsonl.gz``
  -> base ``/srv/logs/plays``), so the id is stable across runs and across machines that mount
  the same share elsewhere, and it never depends on inode or mtime.

Bad records are yielded, never dropped: ``Record.error`` names the reason and
``Record.error_kind`` is 'malformed' (not a valid record), 'oversized' (valid but over a
Pub/Sub limit) or 'truncated' (the incomplete tail of a truncated gzip).

Blank lines (empty or whitespace only) are skipped: they are neither events nor malformed.

CSV: the first physical line is the header (read even when resuming); each later physical
line is one row, published as a compact JSON object {column: value}. Quoted fields that
span lines are not supported: such a row has the wrong column count and is malformed.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import re
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import google_crc32c

from migrate.config import ListenerSource
from migrate.errors import SourceError
from migrate.hashing import IdDigest, crc32c_b64

GZIP_MAGIC = b"\x1f\x8b"
READ_CHUNK = 1 << 20
# Pub/Sub refuses a PublishRequest over 10,000,000 bytes; a message must fit in one.
MAX_REQUEST_BYTES = 10 * 1000 * 1000
# Request framing and attributes we cannot know while scanning (topic path, plan id), budgeted
# generously so inventory and run agree on which events are oversized.
REQUEST_OVERHEAD = 512
PLAN_ID_LEN = 24
MAX_ATTRIBUTE_VALUE = 1024
MAX_ORDERING_KEY = 1024
# Longest line kept in memory; longer lines are oversized and their raw bytes truncated to this.
MAX_LINE_KEEP = 12 * 1000 * 1000
MAX_QUOTED_LINES = 1000  # a CSV quoted field still open after this many lines is taken for a stray quote
MAX_QUOTED_BYTES = 12 * 1000 * 1000

_CANON_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?Z")
# The C scanner behind json.loads, without its two whitespace regex passes per call.
_scan_once = json.JSONDecoder().scan_once
_JSON_WS = " \t\r\n"
_ATTR_KEYS = ("event_id", "event_time", "source", "plan_id", "listener")


@dataclass(slots=True)
class Record:
    line: int  # 1-based physical line number
    offset: int  # byte offset of the line's first byte (decompressed stream)
    end_offset: int  # byte offset just past its newline
    data: bytes  # what to publish; for a bad record, the raw line (possibly truncated)
    event_id: str | None = None
    event_time: str | None = None
    ordering_key: str | None = None
    error: str | None = None
    error_kind: str | None = None  # 'malformed' | 'oversized' | 'truncated'
    lines: int = 1  # physical lines (more than one for a CSV record with a quoted line break)

    @property
    def last_line(self) -> int:
        return self.line + self.lines - 1


@dataclass
class EventFileScan:
    path: str
    size: int = 0
    mtime_ns: int = 0
    inode: int = 0
    events: int = 0
    event_bytes: int = 0
    malformed: int = 0
    oversized: int = 0
    bad_lines: list[tuple[int, int, str]] = field(default_factory=list)
    min_time: str | None = None
    max_time: str | None = None
    digest: IdDigest = field(default_factory=IdDigest)
    anomaly: str | None = None
    lines: int = 0
    decompressed_bytes: int = 0
    crc32c: str | None = None  # plain files read whole: CRC32C (base64) of the raw bytes


# --- paths and identity --------------------------------------------------------------------------


def _has_magic(part: str) -> bool:
    return any(ch in part for ch in "*?[")


def glob_base(pattern: str) -> str:
    """The directory part of a glob pattern before its first wildcard segment."""
    parts = pattern.split(os.sep)
    keep: list[str] = []
    for part in parts[:-1]:
        if _has_magic(part):
            break
        keep.append(part)
    base = os.sep.join(keep)
    return base or (os.sep if pattern.startswith(os.sep) else ".")


def expand_paths(listener: ListenerSource) -> list[str]:
    """Every file matching any of the listener's patterns, sorted and de-duplicated."""
    found: set[str] = set()
    for pattern in listener.paths:
        if not _has_magic(pattern):
            if os.path.lexists(pattern):
                found.add(pattern)
            continue
        for p in glob.iglob(pattern, recursive=True):
            if not os.path.isdir(p):
                found.add(p)
    return sorted(found)


def file_identity(path: str, listener: ListenerSource) -> str:
    """The file's path relative to the base of the first pattern that matches it (else its name)."""
    from fnmatch import fnmatchcase

    for pattern in listener.paths:
        if path == pattern or (_has_magic(pattern) and _glob_match(path, pattern, fnmatchcase)):
            base = glob_base(pattern)
            rel = os.path.relpath(path, base)
            if not rel.startswith(".."):
                return rel.replace(os.sep, "/")
    return os.path.basename(path)


def _glob_match(path: str, pattern: str, fnmatchcase) -> bool:
    if "**" in pattern:
        return fnmatchcase(path, pattern) or fnmatchcase(path, pattern.replace("**/", ""))
    return fnmatchcase(path, pattern)


def derived_event_id(listener_name: str, identity: str, offset: int) -> str:
    h = hashlib.blake2b(f"{listener_name}\0{identity}\0{offset}".encode("utf-8", "surrogateescape"), digest_size=16)
    return "d-" + h.hexdigest()


def source_attribute(path: str, line: int) -> str:
    """The `source` attribute, `file:line`, cut from the left to fit Pub/Sub's 1024-byte value limit."""
    text = f"{path}:{line}"
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_ATTRIBUTE_VALUE:
        return raw.decode("utf-8", "replace")
    return "…" + raw[-(MAX_ATTRIBUTE_VALUE - 3) :].decode("utf-8", "replace")


# --- time ------------------------------------------------------------------------------------------


def normalize_time(value: object) -> str | None:
    """RFC 3339 strings (any offset) and epoch seconds/milliseconds -> RFC 3339 UTC; None if unusable.

    Already-canonical UTC strings ('...Z') are kept as they are, sub-second digits included.
    """
    if type(value) is str and _CANON_TIME.fullmatch(value):
        return value
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if _CANON_TIME.fullmatch(text):
            return text
        try:
            number = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text)
            except ValueError:
                return None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            return _fmt(dt.astimezone(UTC))
        return _from_epoch(number)
    if isinstance(value, (int, float)):
        return _from_epoch(float(value))
    return None


def _from_epoch(number: float) -> str | None:
    if number != number or abs(number) > 1e15:  # NaN or absurd
        return None
    if abs(number) >= 1e11:  # milliseconds (1e11 s would be the year 5138)
        number /= 1000.0
    try:
        return _fmt(datetime.fromtimestamp(number, UTC))
    except (OverflowError, OSError, ValueError):
        return None


def _fmt(dt: datetime) -> str:
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def time_key(ts: str) -> str:
    """A key that orders canonical RFC 3339 UTC strings of mixed sub-second precision."""
    body = ts[:-1]
    if len(body) == 19:
        return body + ".000000000"
    return body.ljust(29, "0")


# --- byte streams ----------------------------------------------------------------------------------


class _Chunks:
    """Decompressed (or plain) chunks of a file; records a truncation instead of raising."""

    def __init__(self, fh, is_gzip: bool) -> None:
        self.fh = fh
        self.is_gzip = is_gzip
        self.truncated: str | None = None
        self.compressed_read = 0
        self.raw_crc = 0  # plain files: CRC32C of the bytes read (from where the file was positioned)
        self.raw_bytes = 0

    def __iter__(self) -> Iterator[bytes]:
        if not self.is_gzip:
            while True:
                block = self.fh.read(READ_CHUNK)
                if not block:
                    return
                self.raw_crc = google_crc32c.extend(self.raw_crc, block)
                self.raw_bytes += len(block)
                yield block
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pending = b""
        while True:
            if pending:
                block, pending = pending, b""
            else:
                block = self.fh.read(READ_CHUNK)
                self.compressed_read += len(block)
            if not block:
                if not d.eof:
                    self.truncated = "truncated gzip (stream ends before its end marker)"
                return
            saved = d.copy()
            try:
                out = d.decompress(block)
            except zlib.error as exc:
                # Recover every byte before the corruption: replay the block in small pieces.
                self.truncated = f"corrupt gzip ({exc})"
                yield from _salvage(saved, block)
                return
            if out:
                yield out
            if d.eof:
                # Another gzip member may follow (concatenated gzip); zero padding ends the stream.
                rest = d.unused_data.lstrip(b"\0")
                while not rest:
                    more = self.fh.read(READ_CHUNK)
                    if not more:
                        return
                    self.compressed_read += len(more)
                    rest = more.lstrip(b"\0")
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                pending = rest


def _salvage(d, block: bytes) -> Iterator[bytes]:
    for i in range(0, len(block), 512):
        try:
            out = d.decompress(block[i : i + 512])
        except zlib.error:
            return
        if out:
            yield out


def _open_regular(path: str):
    """Open a regular file for reading; never blocks on a FIFO. Raises SourceError."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise SourceError(
            f"{path}: cannot read ({exc.strerror or exc})", "check the file exists and is readable"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"{path}: not a regular file", "remove it from the listener's paths or fix the glob")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        fh = os.fdopen(fd, "rb", buffering=0)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror or exc})", "check permissions on the file") from None
    return fh, st


class _CsvJoiner:
    """Joins the physical lines of a CSV record whose quoted field holds line breaks (RFC 4180).

    A line with an odd number of double quotes opens a quoted field; lines are held until the count
    is even again (an escaped quote "" counts twice, so it never changes the parity) and then parsed
    as one record. A stray quote must not swallow the rest of the file: when the joined lines do not
    make a valid row, or the quote is still open at the end of the file or after MAX_QUOTED_LINES /
    MAX_QUOTED_BYTES, the opening line is a bad row on its own and the lines it held are read again.
    """

    def __init__(self, parse: _CsvParser) -> None:
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
        fh, self.stat = _open_regular(self.path)
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
        chunks = _Chunks(fh, is_gzip)
        parse = _JsonParser(self) if self.listener.format == "jsonl" else _CsvParser(self)
        pos = 0  # decompressed offset of buf[0]
        line_no = self.start_line
        buf = b""
        skip = self.start_offset
        needs_header = isinstance(parse, _CsvParser)
        joiner = _CsvJoiner(parse) if isinstance(parse, _CsvParser) else None
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


@dataclass(frozen=True)
class Prefix:
    """The first `size` bytes of a plain log: their CRC32C (base64), newline count, and whether the
    last of them is a newline (the next byte starts a line)."""

    size: int
    crc32c: str
    lines: int
    ends_line: bool


def read_prefix(path: str, size: int) -> Prefix | None:
    """Prefix of a plain log file; None for a gzip file, a shorter file or a read error."""
    try:
        with open(path, "rb", buffering=0) as fh:
            if fh.read(2) == GZIP_MAGIC:
                return None
            fh.seek(0)
            crc, lines, left, last = 0, 0, size, b""
            while left:
                block = fh.read(min(READ_CHUNK, left))
                if not block:
                    return None
                crc = google_crc32c.extend(crc, block)
                lines += block.count(b"\n")
                left -= len(block)
                last = block[-1:]
    except OSError:
        return None
    return Prefix(size, crc32c_b64(crc), lines, last == b"\n")


def only_appended(path: str, size: int, crc32c: str | None) -> bool:
    """True if a plain log's first `size` bytes still have the CRC32C recorded for them (it only grew)."""
    if not crc32c:
        return False
    prefix = read_prefix(path, size)
    return prefix is not None and prefix.crc32c == crc32c


def iter_records(path: str, listener: ListenerSource, start_offset: int = 0, start_line: int = 0) -> EventReader:
    """Records of one log file from `start_offset` (decompressed bytes; must be a line start) on.

    `start_line` is the number of lines below `start_offset` (for CSV, including the header), so
    line numbers continue correctly. The returned iterator carries `anomaly` after exhaustion.
    """
    return EventReader(path, listener, start_offset, start_line)


# --- parsing ---------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, reader: EventReader) -> None:
        lst = reader.listener
        self.listener = lst.name
        self.path = reader.path
        self.identity = reader.identity
        self.id_field = lst.event_id_field
        self.time_field = lst.event_time_field
        self.key_field = lst.ordering_key_field
        self.missing_id = f"missing event_id field {self.id_field!r}"
        self.base_overhead = REQUEST_OVERHEAD + PLAN_ID_LEN + len(lst.name.encode()) + sum(len(k) for k in _ATTR_KEYS)

    def too_long(self, line: int, offset: int, end: int, raw: bytes) -> Record:
        return Record(
            line,
            offset,
            end,
            raw,
            error=f"event of {end - offset} bytes is over Pub/Sub's 10 MB message limit",
            error_kind="oversized",
        )

    def finish(self, line: int, offset: int, end: int, raw: bytes, data: bytes, obj: dict) -> Record:
        if self.id_field:
            event_id = obj.get(self.id_field)
            if event_id is None or event_id == "":
                return Record(line, offset, end, raw, None, None, None, self.missing_id, "malformed")
            if type(event_id) is not str:
                event_id = json.dumps(event_id, separators=(",", ":"), ensure_ascii=False)
        else:
            event_id = derived_event_id(self.listener, self.identity, offset)
        event_time = normalize_time(obj.get(self.time_field)) if self.time_field else None
        key = None
        if self.key_field:
            key = obj.get(self.key_field)
            if key == "":
                key = None
            elif key is not None and type(key) is not str:
                key = json.dumps(key, separators=(",", ":"), ensure_ascii=False)
        rec = Record(line, offset, end, data, event_id, event_time, key)
        if not event_id.isascii() or len(event_id) > 256 or (key is not None and (len(key) > 256 or not key.isascii())):
            problem = _attribute_problem(event_id, key)
            if problem:
                return self.over(rec, raw, problem)
        if len(data) > MAX_REQUEST_BYTES - 64 * 1024:
            size = len(data) + self.base_overhead + 2 * MAX_ATTRIBUTE_VALUE + len(event_time or "") + 8
            size += len(event_id.encode("utf-8")) + len(key.encode("utf-8") if key else b"")
            if size > MAX_REQUEST_BYTES:
                return self.over(rec, raw, f"event of {len(data)} bytes is over Pub/Sub's 10 MB message limit")
        return rec

    @staticmethod
    def bad(rec: Record, raw: bytes, reason: str) -> Record:
        rec.data, rec.error, rec.error_kind = raw, reason, "malformed"
        rec.event_id = rec.event_time = rec.ordering_key = None
        return rec

    @staticmethod
    def over(rec: Record, raw: bytes, reason: str) -> Record:
        rec.data, rec.error, rec.error_kind = raw, reason, "oversized"
        return rec

    @staticmethod
    def decode(line: bytes) -> tuple[str | None, str | None]:
        try:
            return line.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            return None, f"invalid UTF-8 at byte {exc.start} of the line"


class _JsonParser(_Parser):
    def record(self, line_no: int, offset: int, end: int, raw: bytes) -> Record | None:
        data = raw[:-1] if raw.endswith(b"\r") else raw
        if offset == 0 and data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        if not data or data.isspace():
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Record(line_no, offset, end, raw, error=f"invalid UTF-8 at byte {exc.start}", error_kind="malformed")
        try:
            start = 0 if text[0] not in _JSON_WS else len(text) - len(text.lstrip(_JSON_WS))
            obj, stop = _scan_once(text, start)
            if stop != len(text) and not text[stop:].isspace():
                raise ValueError
        except (StopIteration, ValueError, RecursionError):
            return Record(line_no, offset, end, raw, error=_json_problem(text), error_kind="malformed")
        if type(obj) is not dict:
            return Record(
                line_no, offset, end, raw, error=f"not a JSON object ({type(obj).__name__})", error_kind="malformed"
            )
        return self.finish(line_no, offset, end, raw, data, obj)


class _CsvParser(_Parser):
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


def _json_problem(text: str) -> str:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"malformed JSON: {exc.msg} at column {exc.colno}"
    except (ValueError, RecursionError):
        pass
    return "malformed JSON"


def _attribute_problem(event_id: str, key: str | None) -> str | None:
    for what, value, limit in (("event_id", event_id, MAX_ATTRIBUTE_VALUE), ("ordering key", key, MAX_ORDERING_KEY)):
        if value is None:
            continue
        try:
            n = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            return f"{what} is not valid Unicode (lone surrogate)"
        if n > limit:
            return f"{what} is {n} bytes; Pub/Sub allows {limit}"
    return None


# --- scan ------------------------------------------------------------------------------------------


def scan_file(
    path: str, listener: ListenerSource, *, bad_line_limit: int = 1000, start_offset: int = 0, start_line: int = 0
) -> EventFileScan:
    """Stats of one log file (from start_offset, a line start; see iter_records) for inventory and
    plan. Never raises for bad content or an unreadable file."""
    scan = EventFileScan(path)
    reader = iter_records(path, listener, start_offset, start_line)
    min_key = max_key = None
    try:
        for rec in reader:
            scan.lines = rec.last_line
            if rec.error is None:
                scan.events += 1
                scan.event_bytes += len(rec.data)
                scan.digest.add(rec.event_id)  # type: ignore[arg-type]
                ts = rec.event_time
                if ts is not None:
                    k = time_key(ts)
                    if min_key is None or k < min_key:
                        min_key, scan.min_time = k, ts
                    if max_key is None or k > max_key:
                        max_key, scan.max_time = k, ts
                continue
            if rec.error_kind == "oversized":
                scan.oversized += 1
            else:
                scan.malformed += 1
            if len(scan.bad_lines) < bad_line_limit:
                scan.bad_lines.append((rec.line, rec.offset, rec.error))
    except SourceError as exc:
        scan.anomaly = exc.message
    if reader.anomaly and not scan.anomaly:
        scan.anomaly = reader.anomaly
    scan.decompressed_bytes = reader.bytes_read
    scan.crc32c = None if reader.crc32c is None else crc32c_b64(reader.crc32c)
    st = reader.stat
    if st is None:
        try:
            st = os.lstat(path)
        except OSError:
            st = None
    if st is not None:
        scan.size, scan.mtime_ns, scan.inode = st.st_size, st.st_mtime_ns, st.st_ino
    return scan
