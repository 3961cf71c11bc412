"""The planner's fast name check agrees with migrate.names on awkward names (no emulator needed)."""

from __future__ import annotations

import pytest

from migrate.names import object_name, object_name_problem
from migrate.planning.diff import name_problem, object_or_null

PREFIXES = ["", "audio/", "a/b/", ".well-known/"]
RELPATHS = [
    "plain.ogg",
    "dir/sub/file.flac",
    "space and # hash.ogg",
    "question?.ogg",
    "ünïcödé 音楽.ogg",
    "100% [live].ogg",
    "emoji-🎵.ogg",
    "line\nbreak.ogg",
    "cr\rhere",
    "tab\there",
    "bell\x07",
    "del\x7f",
    "bad-\udcff-name.ogg",
    ".",
    "..",
    "a/../b",
    "a/./b",
    "a//b",
    "/abs",
    "trailing/",
    "",
    "..hidden",
    ".hidden",
    "acme-challenge/token",
    "x" * 255,
    "x" * 1030,
    "音" * 250,
    "音" * 342,
    "d/" * 200 + "f",
]


def _reference(prefix: str, relpath: str) -> tuple[str | None, str | None]:
    try:
        name = object_name(prefix, relpath)
    except ValueError as exc:
        return None, str(exc)
    return name, object_name_problem(name)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_fast_name_check_agrees_with_names_module(prefix):
    for rel in RELPATHS:
        name, problem = _reference(prefix, rel)
        assert object_or_null(prefix, rel) == name, (prefix, rel)
        assert name_problem(prefix, rel) == problem, (prefix, rel)
    # the list exercises both outcomes
    assert any(_reference(prefix, r)[1] is None for r in RELPATHS)
    assert any(_reference(prefix, r)[1] is not None for r in RELPATHS)
