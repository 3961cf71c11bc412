"""One glob dialect (sources/globs.py) for catalog include/exclude, listener paths and their expansion."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from migrate.config import ListenerSource
from migrate.sources.eventlog import derived_event_id, expand_paths, file_identity
from migrate.sources.globs import PathFilter, expand, matches


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("logs/a.jsonl", "logs/*.jsonl", True),
        ("logs/eu/a.jsonl", "logs/*.jsonl", False),  # `*` never crosses '/'
        ("logs/a.jsonl", "logs/**/*.jsonl", True),  # `**` matches no segment too
        ("logs/eu/x/a.jsonl", "logs/**/*.jsonl", True),
        ("logs/a1.jsonl", "logs/a?.jsonl", True),
        ("logs/a/.jsonl", "logs/a?.jsonl", False),  # `?` never matches '/'
        ("logs/b.jsonl", "logs/[ab].jsonl", True),
        ("logs/c.jsonl", "logs/[!ab].jsonl", True),
        ("logs/.hidden.jsonl", "logs/*.jsonl", True),  # a leading dot is an ordinary character
    ],
)
def test_the_dialect(path: str, pattern: str, expected: bool) -> None:
    assert matches(path, pattern) is expected


def test_catalog_filter_uses_the_same_dialect() -> None:
    flt = PathFilter(include=["*.ogg", "art/**"], exclude=["tmp/**", "*/draft-*"])
    assert flt.wants("a.ogg") and flt.wants("x/y/b.ogg") and flt.wants(".c.ogg")  # no '/': any directory
    assert flt.wants("art/covers/1.png") and not flt.wants("x/art/1.png")
    assert not flt.wants("tmp/a.ogg") and not flt.wants("x/draft-1.ogg") and flt.wants("x/y/draft-1.ogg")
    # a pruned directory is one whose files are all excluded: tmp, not x/tmp (x/tmp/a.ogg is wanted)
    assert flt.prunes("tmp") and not flt.prunes("x/tmp") and flt.wants("x/tmp/a.ogg")
    assert PathFilter(["**"], ["**/cache/**"]).prunes("a/b/cache")


def test_file_identity_comes_from_the_pattern_that_found_the_file(tmp_path: Path) -> None:
    """fnmatch's `*` crosses '/', so `logs/*.jsonl` used to claim logs/eu/x/a.jsonl (found by the second
    pattern) and derive its event ids from the wrong base: ids changed with the order of the patterns."""
    deep = tmp_path / "logs" / "eu" / "x" / "a.jsonl"
    top = tmp_path / "logs" / "b.jsonl"
    for p in (deep, top):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("{}\n")
    patterns = (f"{tmp_path}/logs/*.jsonl", f"{tmp_path}/logs/eu/**/*.jsonl")
    listener = ListenerSource(name="plays", paths=patterns, topic="t")
    assert expand_paths(listener) == sorted([str(deep), str(top)])
    assert file_identity(str(deep), listener) == "x/a.jsonl"
    assert file_identity(str(top), listener) == "b.jsonl"
    reordered = ListenerSource(name="plays", paths=patterns[::-1], topic="t")
    assert file_identity(str(deep), reordered) == "x/a.jsonl"
    assert derived_event_id("plays", file_identity(str(deep), listener), 0) == derived_event_id(
        "plays", file_identity(str(deep), reordered), 0
    )


def test_expansion_on_disk_is_the_same_matcher(tmp_path: Path) -> None:
    """expand() yields exactly the files under the pattern's base that matches() accepts, symlinked
    directories followed once (a loop ends), directories never."""
    files = ["a.jsonl", ".hidden.jsonl", "b.txt", "eu/c.jsonl", "eu/x/d.jsonl", "eu/x/y/e.jsonl"]
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}\n")
    (tmp_path / "eu" / "x" / "loop").symlink_to(tmp_path / "eu")
    (tmp_path / "dir.jsonl").mkdir()
    for pattern, expected in [
        ("*.jsonl", {"a.jsonl", ".hidden.jsonl"}),
        ("*/*.jsonl", {"eu/c.jsonl"}),
        ("eu/**/*.jsonl", {"eu/c.jsonl", "eu/x/d.jsonl", "eu/x/y/e.jsonl"}),  # eu/x/loop is eu again
        ("eu/x/[de].jsonl", {"eu/x/d.jsonl"}),
    ]:
        full = f"{tmp_path}/{pattern}"
        found = {os.path.relpath(p, tmp_path) for p in expand(full)}
        assert found == expected, pattern
        assert all(matches(f"{tmp_path}/{rel}", full) for rel in found)
