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


FAKE_KEY = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC-fake-Zq7d1fQz\\n-----END PRIVATE KEY-----\\n"
SECRET_ENV = {
    "MIGRATE_FAKE_TOKEN": "ya29.fake-access-token-Zq7d1fQz",
    "GCS_OAUTH_TOKEN": "Bearer fake-bearer-Zq7d1fQz",
    "AWS_SECRET_ACCESS_KEY": "fake-aws-secret-Zq7d1fQz",
}
FORBIDDEN = [
    "Authorization",
    "Bearer ",
    "ya29.",
    "access_token",
    "refresh_token",
    "id_token",
    "PRIVATE KEY",
    "private_key",
    "client_secret",
    "Zq7d1fQz",  # any of the fake secrets above, or the key file's body
]


def _artifacts(*dirs: Path) -> list[Path]:
    return sorted(p for d in dirs if d.exists() for p in d.rglob("*") if p.is_file())


def _ledger_text(path: Path) -> str:
    """Every text value stored in a SQLite ledger."""
    import sqlite3

    conn = sqlite3.connect(path)
    out = []
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            for row in conn.execute(f'SELECT * FROM "{t}"'):
                out.extend(str(v) for v in row if isinstance(v, (str, bytes)))
    finally:
        conn.close()
    return "\n".join(out)


@pytest.mark.slow
def test_no_secret_in_any_artifact_of_a_full_job(tmp_path, emulators, gcs_client):
    from relkit import mixed_estate

    sa = tmp_path / "sa-key.json"
    sa.write_text(
        json.dumps(
            {
                "type": "service_account",
                "private_key_id": "abcZq7d1fQz",
                "private_key": FAKE_KEY,
                "client_email": "migrate@test-project.iam.gserviceaccount.com",
                "token_uri": "https://oauth2.example.invalid/token",
            }
        )
    )
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(sa), **SECRET_ENV}
    est = mixed_estate(tmp_path, gcs_client, emulators.project, large_mib=(3,), transfer={"bandwidth_limit": "0"})
    outputs = []
    for argv in (
        ["inventory", "--config", est.config, "--hash"],
        ["plan", "--config", est.config, "--name", "sec"],
        ["preflight", "--config", est.config],
        ["run", "--config", est.config, "sec"],
        ["verify", "--config", est.config, "sec"],
        ["verify", "--config", est.config, "sec", "--json"],
        ["status", "--config", est.config],
    ):
        res = run_cli(*argv, env=env)
        assert_no_traceback(res)
        outputs.append(res)
    assert outputs[3].returncode == 0, str(outputs[3])
    # a failing job too: a missing bucket, so the error paths print
    text = est.config.read_text().replace(est.buckets[0], "missing-bucket-7x")
    est.config.write_text(text)
    res = run_cli("preflight", "--config", est.config, env=env)
    assert res.returncode == 1, str(res)
    outputs.append(res)
    outputs.append(run_cli("plan", "--config", est.config, "--name", "sec2", env=env))
    outputs.append(run_cli("run", "--config", est.config, "sec2", env=env))
    assert outputs[-1].returncode != 0, str(outputs[-1])
    files = _artifacts(est.root / ".migrate", est.plans)
    assert any(f.name.endswith(".verify.json") for f in files), files
    texts = {f"{r.args[:1]} output": r.output for r in outputs}
    for f in files:
        if f.suffix in (".sqlite", ".sqlite-wal", ".sqlite-shm") or "ledger" in f.name:
            continue
        texts[str(f)] = f.read_bytes().decode("utf-8", "replace")
    texts["ledger"] = _ledger_text(Path(est.ledger))
    for where, text in texts.items():
        for marker in FORBIDDEN:
            assert marker not in text, f"{marker!r} found in {where}"
        for value in SECRET_ENV.values():
            assert value not in text, f"secret env value found in {where}"
    # resumable upload session URLs are capabilities: only the ledger may keep them, never a printout
    for where, text in texts.items():
        if where != "ledger":
            assert "upload_id=" not in text, where
