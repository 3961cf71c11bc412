"""The bytes of a log: plain or gzip (concatenated members, salvage up to a corruption), and prefixes."""

from __future__ import annotations

import os
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import google_crc32c

from migrate.errors import SourceError
from migrate.hashing import crc32c_b64

GZIP_MAGIC = b"\x1f\x8b"
READ_CHUNK = 1 << 20


class Chunks:
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


def open_regular(path: str):
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
