"""The source file is still the inventoried one: fstat checks, and CRC32C of byte ranges."""

from __future__ import annotations

import os
import stat

import google_crc32c

from migrate.sources.filebody import SourceChanged
from migrate.transfer.tasks import Work


def check_stat(w: Work, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise SourceChanged("no longer a regular file")
    if st.st_size != w.size:
        raise SourceChanged(f"size changed since inventory ({w.size} -> {st.st_size} bytes)")
    if w.mtime_ns is not None and st.st_mtime_ns != w.mtime_ns:
        raise SourceChanged("modified since inventory (mtime changed)")
    if w.inode and st.st_ino != w.inode:
        raise SourceChanged("replaced since inventory (inode changed)")


def stat_source(w: Work) -> os.stat_result:
    try:
        st = os.stat(w.path)
    except FileNotFoundError:
        raise SourceChanged("deleted since inventory") from None
    check_stat(w, st)
    return st


def crc_of_range(path: str, offset: int, length: int) -> int:
    crc = 0
    with open(path, "rb", buffering=0) as fh:
        fh.seek(offset)
        remaining = length
        while remaining > 0:
            block = fh.read(min(1 << 20, remaining))
            if not block:
                raise SourceChanged("file shrank while reading")
            crc = google_crc32c.extend(crc, block)
            remaining -= len(block)
    return crc
