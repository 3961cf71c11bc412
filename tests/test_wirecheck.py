"""The wire-contract checker catches each rule it enforces (so a passing end-to-end test means something)."""

from __future__ import annotations

import json

from wirecheck import WireLog


def _req(log: WireLog, method: str, path: str, body: bytes = b"", **headers: str) -> None:
    rec = log.begin(method, path, {"Content-Length": str(len(body)), "User-Agent": "migrate/0", **headers})
    rec.feed(body)
    rec.done(200)


def _multipart(meta: dict) -> bytes:
    return (
        b"--x\r\nContent-Type: application/json\r\n\r\n" + json.dumps(meta).encode() + b"\r\n--x\r\n\r\ndata\r\n--x--"
    )


def test_each_rule_is_enforced():
    log = WireLog()
    _req(log, "POST", "/upload/storage/v1/b/bk/o?uploadType=multipart&ifGenerationMatch=0", _multipart({"name": "ok"}))
    _req(log, "POST", "/upload/storage/v1/b/bk/o?uploadType=multipart", _multipart({"name": "a", "crc32c": "x"}))
    _req(log, "POST", "/upload/storage/v1/b/bk/o?uploadType=resumable&name=r&ifGenerationMatch=0", b'{"name": "r"}')
    _req(
        log,
        "PUT",
        "/upload/storage/v1/b/bk/o?uploadType=resumable&name=r&upload_id=1",
        b"abcd",
        **{"Content-Range": "bytes 0-3/4"},
    )
    parts = [{"name": f".migrate-parts/p/1/{i:05d}"} for i in range(33)]
    for p in parts[:2]:
        meta = _multipart({"name": p["name"], "crc32c": "x", "storageClass": "STANDARD"})
        _req(log, "POST", "/upload/storage/v1/b/bk/o?uploadType=multipart&ifGenerationMatch=0", meta)
    doc = {"sourceObjects": parts, "destination": {"storageClass": "COLDLINE"}}
    _req(log, "POST", "/storage/v1/b/bk/o/big/compose?ifGenerationMatch=0", json.dumps(doc).encode())
    _req(log, "DELETE", "/storage/v1/b/bk/o/c%2Fobject")
    _req(log, "DELETE", "/storage/v1/b/bk/o/.migrate-parts%2Fp%2F1%2F00000")
    problems = log.violations()
    text = "\n".join(problems)
    assert "insert of gs://bk/ok: no crc32c" in text
    assert "insert of gs://bk/a: no ifGenerationMatch" in text
    assert "final chunk of the resumable upload of r: no CRC32C" in text
    assert "33 sources (at most 32)" in text
    assert "source .migrate-parts/p/1/00000 is STANDARD" in text
    assert "DELETE gs://bk/c/object: outside the scratch prefix" in text
    assert not [p for p in problems if ".migrate-parts%2F" in p or "bk/.migrate-parts/p/1/00000: outside" in p]


def test_a_conforming_exchange_passes():
    log = WireLog()
    _req(log, "POST", "/upload/storage/v1/b/bk/o?uploadType=multipart&ifGenerationMatch=0", _multipart({"crc32c": "x"}))
    _req(log, "POST", "/upload/storage/v1/b/bk/o?uploadType=resumable&name=r&ifGenerationMatch=7", b'{"name": "r"}')
    final = {"Content-Range": "bytes 4-7/8", "x-goog-hash": "crc32c=AAAAAA=="}
    _req(log, "PUT", "/upload/storage/v1/b/bk/o?uploadType=resumable&name=r&upload_id=1", b"abcd", **final)
    assert log.violations() == []


def test_other_tools_are_recorded_but_not_judged():
    log = WireLog()
    rec = log.begin("POST", "/upload/storage/v1/b/bk/o?uploadType=media&name=x", {"User-Agent": "rclone/v1.60"})
    rec.feed(b"data")
    assert log.violations() == [] and log.upload_bytes() == 4
