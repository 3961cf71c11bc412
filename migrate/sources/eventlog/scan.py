"""The scan: one log file's counts, id digest, time range and bad lines, for inventory and plan."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from migrate.config import ListenerSource
from migrate.errors import SourceError
from migrate.hashing import IdDigest, crc32c_b64
from migrate.sources.eventlog.reader import iter_records
from migrate.sources.eventlog.times import time_key


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
