"""verify building blocks without emulators: --deep parsing and sampling, listing roots, the problem listing."""

from __future__ import annotations

import sqlite3

import pytest

from migrate.errors import UsageError
from migrate.verification.deep import Sampler, parse_deep, sample_size
from migrate.verification.objects import listing_roots
from migrate.verification.problems import ProblemLines


@pytest.mark.parametrize(("spec", "want"), [("20", (20, None)), ("5%", (None, 5.0)), (" 100 % ", (None, 100.0))])
def test_parse_deep_accepts_counts_and_shares(spec, want):
    assert parse_deep(spec) == want


@pytest.mark.parametrize("spec", ["0", "0%", "150%", "2.5", "lots", "-3", ""])
def test_parse_deep_rejects_the_rest_with_the_fix(spec):
    with pytest.raises(UsageError) as info:
        parse_deep(spec)
    assert "--deep" in info.value.message and "5%" in info.value.fix


def test_sample_size_rounds_shares_up_and_caps_counts():
    assert sample_size("5%", 41) == 3
    assert sample_size("5%", 0) == 0
    assert sample_size("100", 7) == 7
    assert sample_size("3", 7) == 3


def test_listing_roots_lists_each_bucket_prefix_once():
    pairs = [("b", "audio/"), ("b", "audio/x/"), ("b", "art/"), ("c", ""), ("c", "deep/"), ("b", "audio/")]
    assert listing_roots(pairs) == [("b", "art/"), ("b", "audio/"), ("c", "")]


def _candidates(n: int) -> list[tuple]:
    return [("bkt", f"obj-{i:03d}", i, "AAAAAA==", "AAAAAA==", i + 1) for i in range(n)]


def test_deep_sample_depends_on_seed_not_on_listing_order():
    def pick(seed: int, order: list[tuple]) -> list[str]:
        conn = sqlite3.connect(":memory:")
        s = Sampler(conn, seed)
        for c in order:
            s(c)
        return sorted(c[1] for c in s.pick(5))

    cands = _candidates(60)
    forward = pick(7, cands)
    assert len(forward) == 5
    assert pick(7, list(reversed(cands))) == forward
    assert pick(8, cands) != forward


def test_problem_listing_is_sorted_one_line_per_problem_and_matches_are_optional(tmp_path):
    conn = sqlite3.connect(":memory:")
    lines = ProblemLines(conn)
    lines.add("-", "gs://b/z")
    lines.add("+", "gs://b/a")
    lines.add("=", "gs://b/m")  # dropped: matches not asked for
    lines.add("*", "gs://b/new\nline")
    lines.add("+", "event://plays/e1")
    lines.add("+", "gs://b/a")  # the same problem twice is one line
    out = tmp_path / "x.verify.txt"
    assert lines.write(out) == 4
    assert out.read_text().splitlines() == ["+ event://plays/e1", "+ gs://b/a", "* gs://b/new\\nline", "- gs://b/z"]
    assert lines.counts() == {"+": 2, "*": 1, "-": 1, "!": 0}

    with_matches = ProblemLines(conn, include_matches=True)
    with_matches.add("=", "gs://b/m")
    with_matches.add("=", "gs://b/k")
    with_matches.replace("*", "gs://b/m")  # found by --deep after the listing matched it
    assert with_matches.write(out) == 2
    assert out.read_text().splitlines() == ["= gs://b/k", "* gs://b/m"]
