"""A catalog file read for upload: a byte range streamed as a request body, hashed and throttled as read.

The source-side half of an upload. The target (migrate.targets.gcs) frames the body (`head` and
`tail`) and sends it; the reader here hashes what it reads, reports progress, and withholds its last
block until `final_check` passed, so a file that changed while it was read aborts the request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import google_crc32c

READ_CHUNK = 1024 * 1024


class SourceChanged(Exception):
    """The file on disk is not the file the inventory saw (size, mtime, inode or content)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SourceReadError(Exception):
    """A file could not be read while streaming it (not an OSError, so no layer takes it for a network error)."""


class Aborted(Exception):
    """The run was aborted (second Ctrl-C) while this request was streaming."""


class FileBody:
    """[offset, offset+length) of a file as a request body, hashed and throttled as it is read.

    Iterating reopens the file (a re-sent request streams it again). The last block is handed
    to the connection only after `final_check(crc)` passed; if that raises (or the file is
    shorter than expected, or `abort` is set), the request dies mid-body and GCS creates nothing.
    After a complete iteration `crc` holds the CRC32C (int) of the bytes read.
    """

    def __init__(
        self,
        path: str,
        offset: int,
        length: int,
        *,
        throttle: Callable[[int], object],
        on_bytes: Callable[[int], None],
        abort: threading.Event,
        final_check: Callable[[int], None] | None = None,
        chunk: int = READ_CHUNK,
    ) -> None:
        self.path = path
        self.offset = offset
        self.length = length
        self.throttle = throttle
        self.on_bytes = on_bytes
        self.abort = abort
        self.final_check = final_check
        self.chunk = chunk
        self.head = b""
        self.tail = b""
        self.crc: int | None = None
        self.sent = 0  # file bytes handed to the connection by the latest iteration

    def __len__(self) -> int:
        return len(self.head) + self.length + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        self.crc = None
        self.sent = 0
        yield self.head
        crc = 0
        withheld = b""
        try:
            fh = open(self.path, "rb", buffering=0)  # noqa: SIM115 (closed below; reads need the OSError mapping)
        except FileNotFoundError:
            raise SourceChanged("deleted since inventory") from None
        except OSError as exc:
            raise SourceReadError(f"cannot read {self.path}: {exc.strerror}") from None
        with fh:
            if self.offset:
                fh.seek(self.offset)
            remaining = self.length
            while remaining > 0:
                if self.abort.is_set():
                    raise Aborted("run aborted")
                try:
                    block = fh.read(min(self.chunk, remaining))
                except OSError as exc:
                    raise SourceReadError(f"cannot read {self.path}: {exc.strerror}") from None
                if not block:
                    raise SourceChanged(f"file shrank while reading: {self.length - remaining} of {self.length} bytes")
                remaining -= len(block)
                crc = google_crc32c.extend(crc, block)
                self.throttle(len(block))
                if withheld:
                    yield withheld
                    self._sent(len(withheld))
                withheld = block
        if self.final_check is not None:
            self.final_check(crc)
        self.crc = crc
        if withheld:
            yield withheld
            self._sent(len(withheld))
        yield self.tail

    def _sent(self, n: int) -> None:
        self.sent += n
        self.on_bytes(n)
