"""Walk a catalog tree: os.scandir, stable order, globs, symlink policy, anomalies.

Streaming: one directory's entries are held at a time (plus the stack of pending
directories). Names are handled as bytes so names that are not UTF-8 become anomalies
instead of crashes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from migrate.config import CatalogSource
from migrate.names import display_name, object_name_problem
from migrate.sources.globs import PathFilter


@dataclass(slots=True)
class Entry:
    relpath: str  # '/'-separated; for anomalies, a printable form
    kind: str  # 'file' | 'symlink' | 'anomaly'
    path: bytes  # absolute path, bytes
    size: int = 0
    mtime_ns: int = 0
    inode: int = 0
    reason: str | None = None


@dataclass(slots=True)
class WalkStats:
    excluded: int = 0
    dirs: int = 0


def walk(source: CatalogSource, stats: WalkStats | None = None) -> Iterator[Entry]:
    """Yield every included file, skipped symlink and anomaly under source.root in a stable order."""
    stats = stats if stats is not None else WalkStats()
    flt = PathFilter(source.include, source.exclude)
    root = os.fsencode(os.path.abspath(source.root))
    visited: set[tuple[int, int]] = set()
    try:
        st = os.stat(root)
        visited.add((st.st_dev, st.st_ino))
    except OSError:
        pass
    # stack of (absolute dir, relative dir) as bytes; children pushed in reverse for sorted order
    stack: list[tuple[bytes, bytes]] = [(root, b"")]
    while stack:
        abs_dir, rel_dir = stack.pop()
        yield from scan_dir(source, abs_dir, rel_dir, stack, stats, flt, visited)


def scan_dir(
    source: CatalogSource,
    abs_dir: bytes,
    rel_dir: bytes,
    stack: list[tuple[bytes, bytes]],
    stats: WalkStats,
    flt: PathFilter | None = None,
    visited: set[tuple[int, int]] | None = None,
) -> Iterator[Entry]:
    """One directory of walk(): yield its entries, push its subdirectories onto `stack` (in reverse)."""
    flt = flt if flt is not None else PathFilter(source.include, source.exclude)
    visited = visited if visited is not None else set()
    stats.dirs += 1
    try:
        with os.scandir(abs_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield _anomaly(rel_dir or b".", abs_dir, f"directory cannot be read: {exc.strerror}")
        return
    subdirs: list[tuple[bytes, bytes]] = []
    head = rel_dir + b"/" if rel_dir else b""
    plain = not source.follow_symlinks
    for entry in entries:
        rel = head + entry.name
        try:
            # a regular file (the common case) is known from the directory entry alone: no more probes
            regular = plain and entry.is_file(follow_symlinks=False)
            is_link = not regular and entry.is_symlink()
            is_dir = not regular and entry.is_dir(follow_symlinks=source.follow_symlinks)
        except OSError as exc:
            yield _anomaly(rel, entry.path, f"cannot stat: {exc.strerror}")
            continue
        try:
            text: str | None = rel.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if is_link and not source.follow_symlinks:
            # a directory symlink is recorded whatever the globs say: what lies behind it is unknown
            to_dir = os.path.isdir(entry.path)  # False for a loop or a dangling link
            if to_dir or text is None or flt.wants(text):
                what = "symlink to a directory not followed" if to_dir else "symlink not followed"
                yield Entry(display_name(rel), "symlink", entry.path, reason=what)
            else:
                stats.excluded += 1
            continue
        if is_dir:
            if text is not None and flt.prunes(text):
                stats.excluded += 1
                continue
            if source.follow_symlinks:
                try:
                    dst = os.stat(entry.path)
                except OSError as exc:
                    yield _anomaly(rel, entry.path, f"cannot follow symlink: {exc.strerror}")
                    continue
                key = (dst.st_dev, dst.st_ino)
                if key in visited:
                    yield _anomaly(rel, entry.path, "symlink loop: directory already visited")
                    continue
                visited.add(key)
            subdirs.append((entry.path, rel))
            continue
        if text is not None and not flt.wants(text):
            stats.excluded += 1
            continue
        if text is None:
            yield _anomaly(rel, entry.path, "name is not valid UTF-8; rename the file")
            continue
        try:
            st = entry.stat(follow_symlinks=source.follow_symlinks)
        except OSError as exc:
            yield _anomaly(rel, entry.path, f"cannot stat: {exc.strerror}")
            continue
        if not stat.S_ISREG(st.st_mode):
            yield _anomaly(rel, entry.path, f"not a regular file ({_kind(st.st_mode)})", st)
            continue
        problem = object_name_problem(source.prefix + text)
        if problem:
            yield _anomaly(rel, entry.path, problem, st)
            continue
        yield Entry(text, "file", entry.path, st.st_size, st.st_mtime_ns, st.st_ino)
    stack.extend(reversed(subdirs))


def _anomaly(rel: bytes, path: bytes, reason: str, st: os.stat_result | None = None) -> Entry:
    e = Entry(display_name(rel), "anomaly", path, reason=reason)
    if st is not None:
        e.size, e.mtime_ns, e.inode = st.st_size, st.st_mtime_ns, st.st_ino
    return e


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"
