"""Walk a catalog tree: os.scandir by descriptor, stable order, globs, symlink policy, anomalies.

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
from migrate.names import SAFE_NAME_CHARS, display_name, name_head_ok, object_name_problem
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
    """Yield every included file, skipped symlink and anomaly under source.root in a stable order (directories
    by name, each directory's entries in the order it lists them)."""
    for entries in walk_dirs(source, stats):
        yield from entries


def walk_dirs(source: CatalogSource, stats: WalkStats | None = None) -> Iterator[list[Entry]]:
    """walk(), one directory's entries at a time (no per-entry generator step for a caller that batches)."""
    for abs_dir, rows, entries in walk_rows(source, stats):
        yield _with_entries(abs_dir, rows, entries)


def walk_rows(
    source: CatalogSource, stats: WalkStats | None = None
) -> Iterator[tuple[bytes, list[tuple[str, int, int, int]], list[Entry]]]:
    """The walk as scan_rows() gives it, a directory at a time: (absolute dir, plain file rows, other entries)."""
    stats = stats if stats is not None else WalkStats()
    flt = PathFilter(source.include, source.exclude)
    root = os.fsencode(os.path.abspath(source.root))
    visited: set[tuple[int, int]] = set()
    try:
        st = os.stat(root)
        visited.add((st.st_dev, st.st_ino))
    except OSError:
        pass
    # stack of (absolute dir, relative dir) as bytes; children pushed in reverse for name order
    stack: list[tuple[bytes, bytes]] = [(root, b"")]
    while stack:
        abs_dir, rel_dir = stack.pop()
        rows: list[tuple[str, int, int, int]] = []
        entries = scan_rows(source, abs_dir, rel_dir, stack, stats, flt, visited, rows)
        if rows or entries:
            yield abs_dir, rows, entries


def scan_dir(
    source: CatalogSource,
    abs_dir: bytes,
    rel_dir: bytes,
    stack: list[tuple[bytes, bytes]],
    stats: WalkStats,
    flt: PathFilter | None = None,
    visited: set[tuple[int, int]] | None = None,
) -> list[Entry]:
    """One directory of walk(): its entries; its subdirectories are pushed onto `stack` (in reverse)."""
    rows: list[tuple[str, int, int, int]] = []
    return _with_entries(abs_dir, rows, scan_rows(source, abs_dir, rel_dir, stack, stats, flt, visited, rows))


def _with_entries(abs_dir: bytes, rows: list[tuple[str, int, int, int]], entries: list[Entry]) -> list[Entry]:
    """scan_rows()' plain file rows as Entry objects, followed by its other entries."""
    if not rows:
        return entries
    head = _join(abs_dir, b"")
    cut = rows[0][0].rfind("/") + 1  # one directory: every row has the same relative head
    out = [Entry(rel, "file", head + rel[cut:].encode("utf-8"), size, mtime, ino) for rel, size, mtime, ino in rows]
    out.extend(entries)
    return out


def scan_rows(
    source: CatalogSource,
    abs_dir: bytes,
    rel_dir: bytes,
    stack: list[tuple[bytes, bytes]],
    stats: WalkStats,
    flt: PathFilter | None,
    visited: set[tuple[int, int]] | None,
    rows: list[tuple[str, int, int, int]],
) -> list[Entry]:
    """One directory: each plain file (a regular file with a good object name, every name wanted, links not
    followed) appended to `rows` as (relpath, size, mtime_ns, inode); every other file, symlink and anomaly
    returned as an Entry; subdirectories pushed onto `stack` in reverse name order.

    Files come in the directory's own order: the ledger keeps them by name (its primary key), and sorting
    a million names here cost a tenth of the walk. The directory is read by descriptor, so each stat looks
    up one name in it rather than the whole path (os.scandir(fd) gives names as str, surrogate-escaped)."""
    flt = flt if flt is not None else PathFilter(source.include, source.exclude)
    visited = visited if visited is not None else set()
    stats.dirs += 1
    try:
        fd = os.open(abs_dir, _DIR_FLAGS)
    except OSError as exc:
        return [_anomaly(rel_dir or b".", abs_dir, f"directory cannot be read: {exc.strerror}")]
    try:
        try:
            with os.scandir(fd) as it:
                entries = list(it)
        except OSError as exc:
            return [_anomaly(rel_dir or b".", abs_dir, f"directory cannot be read: {exc.strerror}")]
        out: list[Entry] = []
        subdirs: list[tuple[bytes, bytes]] = []
        head = rel_dir + b"/" if rel_dir else b""
        # The common case (a regular file, links not followed, every name wanted, a name that is certainly
        # a good object name) takes the shortest path: a million-file tree is a million of these.
        fast = not source.follow_symlinks and flt.wants_everything
        try:
            text_head = head.decode("utf-8")
        except UnicodeDecodeError:
            fast = False
            text_head = ""
        name_head = source.prefix + text_head
        fast = fast and name_head_ok(name_head)
        room = SAFE_NAME_CHARS - len(name_head)
        add = rows.append
        for entry in entries:
            if fast and entry.is_file(follow_symlinks=False):
                name = entry.name  # not printable if it was not UTF-8 (lone surrogates)
                if len(name) <= room and name.isprintable() and (name_head or name[0] != "."):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        pass  # the general path below says what is wrong
                    else:
                        add((text_head + name, st.st_size, st.st_mtime_ns, st.st_ino))
                        continue
            _general(source, entry, abs_dir, head, flt, visited, stats, out, subdirs)
    finally:
        os.close(fd)
    subdirs.sort(reverse=True)
    stack.extend(subdirs)
    return out


def _general(
    source: CatalogSource,
    entry: os.DirEntry,
    abs_dir: bytes,
    head: bytes,
    flt: PathFilter,
    visited: set[tuple[int, int]],
    stats: WalkStats,
    out: list[Entry],
    subdirs: list[tuple[bytes, bytes]],
) -> None:
    """One directory entry, whatever it is: appended to `out` (file, symlink, anomaly) or `subdirs`."""
    raw = os.fsencode(entry.name)
    rel = head + raw
    path = _join(abs_dir, raw)
    try:
        # a regular file (the common case) is known from the directory entry alone: no more probes
        regular = not source.follow_symlinks and entry.is_file(follow_symlinks=False)
        is_link = not regular and entry.is_symlink()
        is_dir = not regular and entry.is_dir(follow_symlinks=source.follow_symlinks)
    except OSError as exc:
        out.append(_anomaly(rel, path, f"cannot stat: {exc.strerror}"))
        return
    try:
        text: str | None = rel.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if is_link and not source.follow_symlinks:
        # a directory symlink is recorded whatever the globs say: what lies behind it is unknown
        to_dir = os.path.isdir(path)  # False for a loop or a dangling link
        if to_dir or text is None or flt.wants(text):
            what = "symlink to a directory not followed" if to_dir else "symlink not followed"
            out.append(Entry(display_name(rel), "symlink", path, reason=what))
        else:
            stats.excluded += 1
        return
    if is_dir:
        if text is not None and flt.prunes(text):
            stats.excluded += 1
            return
        if source.follow_symlinks:
            try:
                dst = os.stat(path)
            except OSError as exc:
                out.append(_anomaly(rel, path, f"cannot follow symlink: {exc.strerror}"))
                return
            key = (dst.st_dev, dst.st_ino)
            if key in visited:
                out.append(_anomaly(rel, path, "symlink loop: directory already visited"))
                return
            visited.add(key)
        subdirs.append((path, rel))
        return
    if text is not None and not flt.wants(text):
        stats.excluded += 1
        return
    if text is None:
        out.append(_anomaly(rel, path, "name is not valid UTF-8; rename the file"))
        return
    try:
        st = entry.stat(follow_symlinks=source.follow_symlinks)
    except OSError as exc:
        out.append(_anomaly(rel, path, f"cannot stat: {exc.strerror}"))
        return
    if not stat.S_ISREG(st.st_mode):
        out.append(_anomaly(rel, path, f"not a regular file ({_kind(st.st_mode)})", st))
        return
    problem = object_name_problem(source.prefix + text)
    if problem:
        out.append(_anomaly(rel, path, problem, st))
        return
    out.append(Entry(text, "file", path, st.st_size, st.st_mtime_ns, st.st_ino))


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


def _join(abs_dir: bytes, name: bytes) -> bytes:
    return abs_dir + name if abs_dir.endswith(b"/") else abs_dir + b"/" + name


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
