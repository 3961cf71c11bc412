"""The one glob dialect of migrate: catalog include/exclude and listener paths alike.

`*` and `?` never cross '/', `**` as a whole segment matches any number of segments (including
none), `[...]` is a character class (`[!...]` negated), and a leading dot
is matched like any other character (hidden files are files). A catalog pattern without '/' matches
the file name in any directory. Listener paths are expanded on disk with the same matcher, so the
pattern that finds a log is the pattern its derived event ids are computed from (eventlog/paths.py).

wcmatch (GLOBSTAR, DOTGLOB) speaks the same dialect, but its regexes guard every character against
'.' and '..' segments: on 200,000 relative paths the include/exclude check took 6.3 s against 0.43 s
for this translation, and inventory runs it once per file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache

_NEVER = re.compile("(?!)")


def has_magic(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def glob_to_regex(pattern: str) -> str:
    """A regular expression (for fullmatch) that matches exactly the paths the pattern does."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                out.append(re.escape(ch))
                i += 1
            else:
                body = pattern[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j + 1
        else:
            out.append(re.escape(ch))
            i += 1
    return "".join(out)


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(glob_to_regex(pattern), re.S)


def matches(path: str, pattern: str) -> bool:
    """Whether a '/'-separated path matches a pattern."""
    return _compiled(pattern).fullmatch(path) is not None


def glob_base(pattern: str) -> str:
    """The directory part of a pattern before its first segment with a wildcard."""
    keep: list[str] = []
    for part in pattern.split("/")[:-1]:
        if has_magic(part):
            break
        keep.append(part)
    base = "/".join(keep)
    return base or ("/" if pattern.startswith("/") else ".")


def expand(pattern: str) -> Iterator[str]:
    """The files on disk that match a pattern (directories are walked, symlinked ones too, each once)."""
    base = glob_base(pattern)
    rx = _compiled(pattern)
    rest = pattern[len(base) :].lstrip("/") if base not in (".", "/") else pattern.lstrip("/")
    depth = None if "**" in pattern else rest.count("/")  # directories below base worth entering
    prefix = "" if base == "." and not pattern.startswith("./") else None
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(base, followlinks=True):
        try:
            st = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        level = 0 if root == base else os.path.relpath(root, base).count(os.sep) + 1
        if depth is not None and level >= depth:
            dirs[:] = []
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            if prefix is not None and path.startswith("./"):
                path = path[2:]
            if rx.fullmatch(path):
                yield path


def _compile(patterns: Sequence[str], *, anywhere: bool) -> re.Pattern[str]:
    if not patterns:
        return _NEVER
    if anywhere:  # a pattern without '/' matches the name in any directory
        patterns = [p if "/" in p or p == "**" else "**/" + p for p in patterns]
    return re.compile("|".join(f"(?:{glob_to_regex(p)})" for p in patterns), re.S)


class PathFilter:
    """Decides which relative paths are included, and which directories can be pruned."""

    def __init__(self, include: Sequence[str], exclude: Sequence[str]) -> None:
        self._include = _compile(include, anywhere=True)
        self._exclude = _compile(exclude, anywhere=True)
        # 'x/**' excludes the directory x itself: prune it without walking it (x keeps its own '/'s:
        # 'tmp/**' prunes tmp, not a/tmp, whose files it does not exclude)
        self._prune = _compile([p[:-3] for p in exclude if p.endswith("/**")], anywhere=False)
        self.wants_everything = "**" in include and not exclude  # the default: no regex per file

    def wants(self, relpath: str) -> bool:
        if self.wants_everything:
            return True
        return bool(self._include.fullmatch(relpath)) and not self._exclude.fullmatch(relpath)

    def prunes(self, reldir: str) -> bool:
        return bool(self._prune.fullmatch(reldir))
