"""The fault proxy forwards faithfully and injects faults at the configured rate."""

from __future__ import annotations

import base64
import http.client
import json
import os
import time
from collections import Counter

import google_crc32c
import pytest
from faultproxy import FaultProxy

from migrate import clients


def _request(proxy: FaultProxy, method: str, path: str, body=None, headers=None, timeout: float = 30):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=timeout)
    try:
        headers = headers or {}
        conn.request(method, path, body=body, headers=headers, encode_chunked="Transfer-Encoding" in headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@pytest.fixture
def through_proxy(emulators, monkeypatch):
    """Point STORAGE_EMULATOR_HOST at a proxy for the duration of a test."""

    def use(proxy: FaultProxy):
        monkeypatch.setenv(clients.STORAGE_EMULATOR_ENV, proxy.url)
        return clients.gcs_client(emulators.project)

    return use


def test_forwards_uploads_and_downloads_faithfully(emulators, bucket, through_proxy, gcs_client):
    payload = os.urandom(3 * 256 * 1024 + 123)  # several resumable chunks plus a tail
    with FaultProxy(emulators.gcs_direct, rate=0.0) as proxy:
        client = through_proxy(proxy)
        b = client.bucket(bucket)
        b.blob("small.txt").upload_from_string(b"hello proxy")
        big = b.blob("dir/big.bin", chunk_size=256 * 1024)  # resumable: chunks go to the Location URL
        big.upload_from_string(payload, checksum="crc32c")
        assert b.blob("small.txt").download_as_bytes() == b"hello proxy"
        assert b.blob("dir/big.bin").download_as_bytes() == payload
        names = sorted(blob.name for blob in client.list_blobs(bucket))
        assert proxy.injected == 0
        assert proxy.counts["forwarded"] == proxy.requests >= 6
    assert names == ["dir/big.bin", "small.txt"]
    # What the proxy forwarded is what is stored upstream, byte for byte.
    direct = gcs_client.bucket(bucket).get_blob("dir/big.bin")
    assert direct.size == len(payload)
    crc = google_crc32c.Checksum(payload).digest()
    assert direct.crc32c == base64.b64encode(crc).decode()


def test_forwards_chunked_request_bodies(emulators, bucket):
    parts = [os.urandom(70_000), os.urandom(5), os.urandom(130_000)]
    with FaultProxy(emulators.gcs_direct, rate=0.0) as proxy:
        status, _, body = _request(
            proxy,
            "POST",
            f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name=chunked.bin",
            body=iter(parts),
            headers={"Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked"},
        )
        assert status == 200, body
        assert json.loads(body)["size"] == str(sum(map(len, parts)))
        status, _, data = _request(proxy, "GET", f"/storage/v1/b/{bucket}/o/chunked.bin?alt=media")
    assert status == 200
    assert data == b"".join(parts)


def test_rewrites_upstream_location_headers(emulators, bucket):
    with FaultProxy(emulators.gcs_direct, rate=0.0) as proxy:
        status, headers, _ = _request(
            proxy,
            "POST",
            f"/upload/storage/v1/b/{bucket}/o?uploadType=resumable&name=r.bin",
            body=b"{}",
            headers={"Content-Type": "application/json"},
        )
    assert status == 200
    assert headers["Location"].startswith(proxy.url + "/")


def test_injects_statuses_at_the_configured_rate(emulators, bucket):
    n = 300
    with FaultProxy(emulators.gcs_direct, rate=0.25, faults=("429", "503"), seed=11) as proxy:
        seen = Counter(_request(proxy, "GET", f"/storage/v1/b/{bucket}")[0] for _ in range(n))
    assert seen[429] == proxy.counts["429"] > 0
    assert seen[503] == proxy.counts["503"] > 0
    assert seen[200] == proxy.counts["forwarded"] == n - proxy.injected
    # 0.25 * 300 = 75 expected; the bounds are about five standard deviations wide.
    assert 40 <= proxy.injected <= 110


def test_same_seed_same_decisions(emulators):
    def decisions(seed: int) -> list:
        proxy = FaultProxy(emulators.gcs_direct, rate=0.3, seed=seed)
        try:
            return [proxy.decide("GET", "/x") for _ in range(100)]
        finally:
            proxy._server.server_close()

    assert decisions(5) == decisions(5)
    assert decisions(5) != decisions(6)
    assert set(decisions(5)) == {None, "429", "503", "reset", "stall"}


def test_match_limits_faults_to_selected_requests(emulators, bucket):
    only_uploads = FaultProxy(
        emulators.gcs_direct, rate=1.0, faults=("503",), match=lambda method, path: method == "POST"
    )
    with only_uploads as proxy:
        assert _request(proxy, "GET", f"/storage/v1/b/{bucket}")[0] == 200
        assert _request(proxy, "POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name=m", body=b"x")[0] == 503
    assert proxy.counts == Counter({"forwarded": 1, "503": 1})


def test_reset_drops_the_connection(emulators, bucket):
    with (
        FaultProxy(emulators.gcs_direct, rate=1.0, faults=("reset",)) as proxy,
        pytest.raises((ConnectionError, http.client.HTTPException)),
    ):
        _request(proxy, "GET", f"/storage/v1/b/{bucket}")
    assert proxy.counts["reset"] == 1


def test_stall_times_the_client_out_after_the_upstream_did_the_work(emulators, bucket, gcs_client):
    with FaultProxy(emulators.gcs_direct, rate=1.0, faults=("stall",), stall_seconds=30) as proxy:
        with pytest.raises(OSError):  # a timeout (or the reset that ends the stall)
            _request(
                proxy,
                "POST",
                f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name=stalled.bin",
                body=b"arrived",
                timeout=1.0,
            )
        assert proxy.counts["stall"] == 1
        blob = None
        for _ in range(300):  # the upstream write may land just after the client gave up
            blob = gcs_client.bucket(bucket).get_blob("stalled.bin")
            if blob is not None:
                break
            time.sleep(0.1)
    assert blob is not None and blob.download_as_bytes() == b"arrived"


def test_upstream_down_looks_like_a_reset(emulators):
    from migrate.local.emulators import free_port

    with (
        FaultProxy(f"http://127.0.0.1:{free_port()}", rate=0.0) as proxy,
        pytest.raises((ConnectionError, http.client.HTTPException)),
    ):
        _request(proxy, "GET", "/storage/v1/b")
    assert proxy.counts["upstream_error"] == 1
