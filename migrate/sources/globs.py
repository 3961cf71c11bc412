"""The one glob dialect of migrate: catalog include/exclude and listener paths alike (wcmatch).

`*` and `?` never cross '/', `**` as a whole segment matches any number of segments (including
none), `[...]` is a character class (`[!...]` negated), and a leading dot is matched like any other
character (hidden files are files). A catalog pattern without '/' matches the file name in any
directory. Listener paths are expanded on disk with the same rules, so the pattern that finds a
log is the pattern its derived event ids are computed from (see eventlog/paths.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from wcmatch import glob as wcglob

# GLOBSTAR: `**` spans segments; DOTGLOB: `*` matches a leading dot; FOLLOW: `**` descends into
# symlinked directories when expanding on disk.
FLAGS = wcglob.GLOBSTAR | wcglob.DOTGLOB | wcglob.FOLLOW
_NEVER = re.compile("(?!)")


def has_magic(pattern: str) -> bool:
    return bool(wcglob.is_magic(pattern, flags=FLAGS))


def matches(path: str, pattern: str) -> bool:
    """Whether a '/'-separated path matches a pattern."""
    return bool(wcglob.globmatch(path, pattern, flags=FLAGS))


def expand(pattern: str) -> Iterator[str]:
    """The paths on disk that match a pattern (files and directories)."""
    return wcglob.iglob(pattern, flags=FLAGS)


def _compile(patterns: Sequence[str], *, anywhere: bool) -> re.Pattern[str]:
    if not patterns:
        return _NEVER
    if anywhere:  # a pattern without '/' matches the name in any directory
        patterns = [p if "/" in p or p == "**" else "**/" + p for p in patterns]
    regexes, _ = wcglob.translate(list(patterns), flags=FLAGS)
    return re.compile("|".join(f"(?:{r})" for r in regexes))


class PathFilter:
    """Decides which relative paths are included, and which directories can be pruned."""

    def __init__(self, include: Sequence[str], exclude: Sequence[str]) -> None:
        self._include = _compile(include, anywhere=True)
        self._exclude = _compile(exclude, anywhere=True)
        # 'x/**' excludes the directory x itself: prune it without walking it (x keeps its own '/'s:
        # 'tmp/**' prunes tmp, not a/tmp, whose files it does not exclude)
        self._prune = _compile([p[:-3] for p in exclude if p.endswith("/**")], anywhere=False)
        self._everything = "**" in include and not exclude  # the default: no regex per file

    def wants(self, relpath: str) -> bool:
        if self._everything:
            return True
        return bool(self._include.fullmatch(relpath)) and not self._exclude.fullmatch(relpath)

    def prunes(self, reldir: str) -> bool:
        return bool(self._prune.fullmatch(reldir))
