"""migrate.targets.gcs against fake-gcs-server: conditional creates, compose, listing, aborted bodies."""

from __future__ import annotations

import os
import random
import threading

import google_crc32c
import pytest

from migrate.hashing import crc32c_b64, crc32c_combine, crc32c_concat, crc32c_of_bytes
from migrate.sources.filebody import FileBody, SourceChanged
from migrate.targets.errors import NotFound, PreconditionFailed
from migrate.targets.gcs import MTIME_KEY, PARTS_PREFIX, PLAN_KEY, Gcs, content_type, object_metadata
from migrate.targets.gcs_listing import list_pages


@pytest.fixture
def gcs(gcs_client) -> Gcs:
    return Gcs(gcs_client, timeout=30)


def _body(path, offset=0, length=None, final_check=None, sent=None):
    length = os.path.getsize(path) - offset if length is None else length
    return FileBody(
        str(path),
        offset,
        length,
        throttle=lambda n: None,
        on_bytes=(sent.append if sent is not None else (lambda n: None)),
        abort=threading.Event(),
        final_check=final_check,
        chunk=64 * 1024,
    )


def test_crc32c_combine_matches_the_crc_of_the_concatenation():
    rng = random.Random(5)
    for _ in range(40):
        a = rng.randbytes(rng.randint(0, 3000))
        b = rng.randbytes(rng.randint(0, 3000))
        assert crc32c_combine(google_crc32c.value(a), google_crc32c.value(b), len(b)) == google_crc32c.value(a + b)
    parts = [rng.randbytes(rng.randint(0, 5000)) for _ in range(9)]
    whole = crc32c_concat([(google_crc32c.value(p), len(p)) for p in parts])
    assert whole == google_crc32c.value(b"".join(parts))


def test_insert_is_create_once_and_412_names_the_existing_object(gcs, bucket):
    meta = object_metadata(1_700_000_000_123_456_789, "plan-x")
    info = gcs.insert(bucket, "a/b c#?.ogg", b"hello", content_type=content_type("x.ogg"), metadata=meta)
    assert (info.size, info.crc32c) == (5, crc32c_of_bytes(b"hello"))
    with pytest.raises(PreconditionFailed):
        gcs.insert(bucket, "a/b c#?.ogg", b"other", content_type="audio/ogg")
    got = gcs.get(bucket, "a/b c#?.ogg")
    assert got == info  # unchanged: same generation
    assert gcs.get(bucket, "missing") is None


def test_metadata_and_content_type_are_stored(gcs, gcs_client, bucket):
    meta = object_metadata(1_700_000_001 * 10**9, "p1")
    gcs.insert(bucket, "t.flac", b"x", content_type=content_type("t.flac"), metadata=meta)
    blob = gcs_client.bucket(bucket).get_blob("t.flac")
    assert blob.content_type == "audio/flac"
    assert blob.metadata == {MTIME_KEY: "1700000001", PLAN_KEY: "p1"}


def test_replacing_needs_the_current_generation(gcs, bucket):
    first = gcs.insert(bucket, "r", b"one", content_type="text/plain")
    second = gcs.insert(bucket, "r", b"two", content_type="text/plain", if_generation_match=first.generation)
    assert second.generation != first.generation
    with pytest.raises(PreconditionFailed):
        gcs.insert(bucket, "r", b"three", content_type="text/plain", if_generation_match=first.generation)


def test_a_streamed_body_that_fails_its_final_check_creates_nothing(gcs, bucket, tmp_path):
    path = tmp_path / "f.bin"
    data = os.urandom(300 * 1024)
    path.write_bytes(data)
    sent: list[int] = []

    def refuse(crc: int) -> None:
        assert crc == google_crc32c.value(data)  # the check sees the CRC32C of every byte read
        raise SourceChanged("changed")

    with pytest.raises(SourceChanged):
        gcs.insert(bucket, "aborted", _body(path, final_check=refuse, sent=sent), content_type="x/y")
    assert gcs.get(bucket, "aborted") is None
    assert sum(sent) < len(data)  # the last block was withheld

    body = _body(path, sent=sent)
    info = gcs.insert(bucket, "streamed", body, content_type="x/y")
    assert (info.size, info.crc32c) == (len(data), crc32c_b64(google_crc32c.value(data)))
    assert body.crc == google_crc32c.value(data)


def test_a_file_shorter_than_planned_aborts_the_body(gcs, bucket, tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(b"x" * 1000)
    with pytest.raises(SourceChanged):
        gcs.insert(bucket, "short", _body(path, length=5000), content_type="x/y")
    assert gcs.get(bucket, "short") is None


def test_compose_of_parts_has_the_crc_of_the_whole(gcs, bucket, tmp_path):
    data = os.urandom(700 * 1024)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    size = 256 * 1024
    parts = []
    for i, off in enumerate(range(0, len(data), size)):
        body = _body(path, off, min(size, len(data) - off))
        info = gcs.insert(bucket, f"{PARTS_PREFIX}p/1/{i:05d}", body, content_type="x/y")
        parts.append((info, body.crc, body.length))
    whole = crc32c_b64(crc32c_concat([(crc, n) for _, crc, n in parts]))
    info = gcs.compose(bucket, "big.bin", [p for p, _, _ in parts], content_type="x/y", metadata={"k": "v"})
    assert (info.size, info.crc32c) == (len(data), whole)
    assert whole == crc32c_of_bytes(data)


def test_list_pages_pages_and_hides_composite_parts(gcs, gcs_client, bucket):
    for i in range(7):
        gcs.insert(bucket, f"d/{i}", bytes([i]) * i, content_type="x/y")
    gcs.insert(bucket, f"{PARTS_PREFIX}plan/3/00000", b"part", content_type="x/y")
    paged = list(gcs.list(bucket, "d/", page_size=3))
    assert [o.name for o in paged] == [f"d/{i}" for i in range(7)]
    pages = list(list_pages(Gcs(gcs_client), bucket, page_size=3))
    assert len(pages) >= 3  # 8 objects at 3 a page; the part is dropped from its page, not the listing
    rows = [r for page in pages for r in page]
    assert [r[0] for r in rows] == [f"d/{i}" for i in range(7)]
    assert rows[3][1:3] == (3, crc32c_of_bytes(bytes([3]) * 3))
    assert gcs.delete(bucket, f"{PARTS_PREFIX}plan/3/00000") is True
    assert gcs.delete(bucket, f"{PARTS_PREFIX}plan/3/00000") is False


def test_missing_bucket_is_a_404_that_is_not_retried(gcs):
    from migrate.retry import is_retryable

    with pytest.raises(NotFound) as err:
        gcs.insert("no-such-bucket-here", "x", b"x", content_type="x/y")
    assert not is_retryable(err.value)


def test_a_file_gone_before_streaming_is_a_source_change_not_a_network_error(gcs, bucket, tmp_path):
    path = tmp_path / "gone.bin"
    path.write_bytes(b"x" * 1000)
    body = _body(path)
    path.unlink()
    with pytest.raises(SourceChanged, match="deleted"):
        gcs.insert(bucket, "gone", body, content_type="x/y")
    assert gcs.get(bucket, "gone") is None


def test_list_pages_retries_each_page_and_resumes_from_its_token(emulators, gcs_client, bucket, monkeypatch):
    from faultproxy import FaultProxy

    from migrate import clients
    from migrate.config import TransferConfig

    gcs = Gcs(gcs_client)
    for i in range(10):
        gcs.insert(bucket, f"r/{i:02d}", b"x", content_type="x/y")
    cfg = TransferConfig(retry_initial_delay=0.01, retry_max_delay=0.05, retry_max_attempts=20)
    retried: list[str] = []
    # about a third of the listing requests fail (503 or reset): each failure costs one retry of its page
    with FaultProxy(emulators.gcs, rate=0.35, faults=("503", "reset"), seed=7) as proxy:
        monkeypatch.setenv(clients.STORAGE_EMULATOR_ENV, proxy.url)
        client = clients.gcs_client(emulators.project)
        api = Gcs(client)
        pages = list(list_pages(api, bucket, "r/", cfg=cfg, page_size=2, on_retry=lambda e, n: retried.append(n)))
        injected = proxy.injected
    assert [r[0] for page in pages for r in page] == [f"r/{i:02d}" for i in range(10)]
    assert injected > 0 and len(retried) == injected  # every injected fault was retried, and counted


def test_list_pages_names_a_missing_bucket_and_the_fix(gcs_client):
    from migrate.errors import TargetError

    with pytest.raises(TargetError) as err:
        list(list_pages(Gcs(gcs_client), "no-such-bucket-for-listing"))
    assert "gs://no-such-bucket-for-listing not found" in err.value.one_line()
    assert "create the bucket" in err.value.one_line()
