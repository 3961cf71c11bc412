"""Property: the planner's fast name check (SQL functions) agrees with migrate.names on any name."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

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


# characters that matter to the rules: separators, dots, controls, CR/LF, DEL, a lone surrogate (an
# undecodable byte), multi-byte UTF-8, and the acme-challenge prefix's letters
ALPHABET = st.sampled_from(
    list("/./-_ #?%[]aAcehlnw~") + ["\n", "\r", "\t", "\x00", "\x07", "\x7f", "\udcff", "ü", "音", "🎵"]
)
SEGMENTS = st.one_of(
    st.sampled_from(["", ".", "..", ".well-known", "acme-challenge", "x" * 300, "音" * 120]),
    st.text(ALPHABET, max_size=12),
)
RELPATH = st.one_of(st.text(ALPHABET, max_size=40), st.lists(SEGMENTS, min_size=1, max_size=12).map("/".join))
PREFIX = st.one_of(st.sampled_from(PREFIXES), st.text(ALPHABET, max_size=12))


def _reference(prefix: str, relpath: str) -> tuple[str | None, str | None]:
    try:
        name = object_name(prefix, relpath)
    except ValueError as exc:
        return None, str(exc)
    return name, object_name_problem(name)


def _with_listed_examples(test):
    for prefix in PREFIXES:
        for rel in RELPATHS:
            test = example(prefix, rel)(test)
    return test


@settings(max_examples=400, deadline=None)  # no timing threshold: this machine is shared
@given(PREFIX, RELPATH)
@_with_listed_examples
def test_fast_name_check_agrees_with_names_module(prefix: str, rel: str) -> None:
    name, problem = _reference(prefix, rel)
    assert object_or_null(prefix, rel) == name
    assert name_problem(prefix, rel) == problem


def test_the_listed_names_exercise_both_outcomes() -> None:
    outcomes = {_reference(p, r)[1] is None for p in PREFIXES for r in RELPATHS}
    assert outcomes == {True, False}
