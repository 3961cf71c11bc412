"""Include/exclude globs over '/'-separated relative paths.

`*` and `?` never cross '/', `**` matches any number of path segments (including none),
`[...]` is a character class. A pattern without '/' matches the file name in any directory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def glob_to_regex(pattern: str) -> str:
    if "/" not in pattern and pattern != "**":
        pattern = "**/" + pattern
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


class PathFilter:
    """Decides which relative paths are included, and which directories can be pruned."""

    def __init__(self, include: Sequence[str], exclude: Sequence[str]) -> None:
        self._include = re.compile("|".join(f"(?:{glob_to_regex(p)})" for p in include) or "(?!)", re.S)
        self._exclude = re.compile("|".join(f"(?:{glob_to_regex(p)})" for p in exclude) or "(?!)", re.S)
        # 'x/**' excludes the directory x itself: prune it without walking it
        dir_patterns = [p[:-3] for p in exclude if p.endswith("/**")]
        self._prune = re.compile("|".join(f"(?:{glob_to_regex(p)})" for p in dir_patterns) or "(?!)", re.S)
        self._everything = "**" in include and not exclude  # the default: no regex per file

    def wants(self, relpath: str) -> bool:
        if self._everything:
            return True
        return bool(self._include.fullmatch(relpath)) and not self._exclude.fullmatch(relpath)

    def prunes(self, reldir: str) -> bool:
        return bool(self._prune.fullmatch(reldir))
