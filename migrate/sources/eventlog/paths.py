"""Which files a listener reads, and the identity of a file and an event that derived ids rest on."""

from __future__ import annotations

import hashlib
import os

from migrate.config import ListenerSource
from migrate.sources import globs
from migrate.sources.eventlog.records import MAX_ATTRIBUTE_VALUE


def expand_paths(listener: ListenerSource) -> list[str]:
    """Every file matching any of the listener's patterns, sorted and de-duplicated."""
    found: set[str] = set()
    for pattern in listener.paths:
        if not globs.has_magic(pattern):
            if os.path.lexists(pattern):
                found.add(pattern)
            continue
        for p in globs.expand(pattern):
            if not os.path.isdir(p):
                found.add(p)
    return sorted(found)


def file_identity(path: str, listener: ListenerSource) -> str:
    """The file's path relative to the base of the first pattern that matches it (else its name).

    "Matches" in the dialect expand_paths found it with (sources/globs.py): `*` never crosses '/'.
    """
    for pattern in listener.paths:
        if path == pattern or (globs.has_magic(pattern) and globs.matches(path, pattern)):
            base = globs.glob_base(pattern)
            rel = os.path.relpath(path, base)
            if not rel.startswith(".."):
                return rel.replace(os.sep, "/")
    return os.path.basename(path)


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
