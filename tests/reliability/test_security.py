"""Security: object names never escape their prefix; no secret reaches an artifact or an error message."""

from __future__ import annotations

import json
import os
import posixpath
import random
from pathlib import Path

import pytest
from relkit import assert_no_traceback, estate_config, run_cli

from migrate.names import object_name, object_name_problem

PREFIXES = ["", "audio/", "audio", "a/b/c/", "x"]
# Pieces a hostile or unlucky file name is made of.
ATOMS = [
    "a",
    "track.ogg",
    ".",
    "..",
    "...",
    "..a",
    "a..",
    "",
    "/",
    "//",
    "\\",
    "..\\..",
    "%2e%2e",
    "%2F",
    "~",
    " ",
    "\n",
    "\r",
    "\x00",
    "\x7f",
    "ü",
    "音楽",
    "\u202e",
    "\ufeff",
    ".well-known",
    "acme-challenge",
    "#",
    "?",
    "*",
    "[",
    "]",
]


def _escapes(prefix: str, name: str) -> str | None:
    """Why `name` is outside `prefix` (as GCS, a browser or a sync tool would resolve it), else None."""
    want = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    if not name.startswith(want):
        return f"does not start with {want!r}"
    rest = name[len(want) :]
    if rest.startswith("/") or not rest:
        return "empty or absolute remainder"
    segs = rest.split("/")
    if any(s in ("", ".", "..") for s in segs):
        return f"has an empty, '.' or '..' segment: {segs}"
    norm = posixpath.normpath("/" + name)[1:]
    if want and not (norm + "/").startswith(want):
        return f"normalises to {norm!r}"
    return None


def _nasty_relpaths(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = [rng.choice(ATOMS) for _ in range(rng.randint(1, 6))]
        sep = rng.choice(["", "/", "/", "/"])
        out.append(sep.join(parts))
    out += ["..", "../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a/.", "a/./b", ".../x", "a/..\\..\\b"]
    return out


@pytest.mark.parametrize("prefix", PREFIXES)
def test_object_name_never_escapes_its_prefix(prefix):
    accepted = refused = 0
    for rel in _nasty_relpaths(3000, seed=PREFIXES.index(prefix) + 1):
        try:
            name = object_name(prefix, rel)
        except ValueError as exc:
            assert "escape" in str(exc)
            refused += 1
            continue
        accepted += 1
        why = _escapes(prefix, name)
        assert why is None, (prefix, rel, name, why)
    assert accepted > 100 and refused > 100  # the generator really exercised both sides


def test_names_gcs_would_reject_are_flagged():
    for rel in ["a\nb", "a\rb", "x" * 1100, "ctl\x01.ogg", "del\x7f.ogg"]:
        assert object_name_problem(object_name("audio/", rel)) is not None, rel
    assert object_name_problem(object_name("audio/", "ünï 音楽 #?[1].ogg")) is None


@pytest.fixture
def nasty_tree(tmp_path: Path) -> Path:
    """Legal-on-disk names that look like path tricks, and a directory link pointing outside the root."""
    tree = tmp_path / "tree"
    names = [
        "...",
        "..hidden.ogg",
        "a..b.ogg",
        "%2e%2e%2fetc.ogg",
        "..\\..\\win.ogg",
        "~root.ogg",
        " leading space.ogg",
        "trailing dot.",
        "\u202eevil.ogg",
        "sub/.../x.ogg",
        "sub/..x/y.ogg",
    ]
    for n in names:
        p = tree / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"OggS " + n.encode())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.ogg").write_bytes(b"not for the bucket")
    os.symlink(outside, tree / "up")
    os.symlink("../outside/secret.ogg", tree / "secret-link.ogg")
    return tree


def test_plan_objects_stay_under_the_prefix(tmp_path, nasty_tree, emulators, bucket):
    cfg = estate_config(
        tmp_path,
        bucket=bucket,
        topic="plays-t",
        csv_topic="skips-t",
        tree=nasty_tree,
        jsonl_glob=str(tmp_path / "none" / "*.jsonl"),
        csv_glob=str(tmp_path / "none" / "*.csv"),
    )
    assert run_cli("inventory", "--config", cfg, "--hash").returncode == 0
    res = run_cli("plan", "--config", cfg, "--name", "nasty", "--json")
    assert res.returncode == 0, str(res)
    assert_no_traceback(res)
    manifest = tmp_path / "plans" / "nasty.manifest.jsonl"
    objects = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    objects = [o for o in objects if o["kind"] == "object"]
    assert len(objects) == 11  # every legal name is planned; the links are not followed
    for o in objects:
        assert _escapes("audio/", o["object"]) is None, o
        assert o["object"] == "audio/" + o["relpath"]
        assert Path(o["path"]).resolve().is_relative_to(nasty_tree.resolve()), o
    assert not any("secret" in o["object"] for o in objects)
