"""Retries and corruption against GCS: token-refresh failures, damaged uploads, the retry budget, the
write-rate ramp."""

from __future__ import annotations

import random
from pathlib import Path
from urllib.parse import unquote

import pipeline
import pytest
from faultproxy import FaultProxy
from files import write_tree
from google.auth.exceptions import RefreshError, TransportError

from migrate.config import TransferConfig, load_config
from migrate.hashing import crc32c_of_file
from migrate.preflight import PROBE_PREFIX
from migrate.retry import is_retryable, retrying
from migrate.targets.gcs import Gcs
from migrate.transfer import objects as objects_stage
from migrate.transfer.ramp import DOUBLING_SECONDS, WriteRamp, no_ramp, write_limiter
from migrate.transfer.run import RunOptions, run_plan


def _plan(config: Path):
    cfg = load_config(config)
    return cfg, pipeline.plan_path(cfg, "w1")


def test_a_failed_token_refresh_is_retried_like_a_reset():
    assert is_retryable(TransportError("Failed to retrieve http://metadata/token: connection reset"))
    assert not is_retryable(RefreshError("invalid_grant: account disabled"))  # a denial is not transient
    calls, retried = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise TransportError("token endpoint unreachable")
        return "ok"

    cfg = TransferConfig(retry_initial_delay=0.0, retry_max_delay=0.0)
    assert retrying(cfg, lambda exc, n: retried.append(exc), sleep=lambda s: None)(flaky) == "ok"
    assert len(retried) == 1 and isinstance(retried[0], TransportError)


def test_retry_budget_is_minutes_like_gcloud_and_configurable(write_config, tmp_path):
    # https://cloud.google.com/storage/docs/retry-strategy: gcloud storage backs off from 1 s to 32 s for
    # up to 32 retries; the client libraries retry for several minutes
    d = TransferConfig()
    assert d.retry_deadline >= 600 and d.retry_max_attempts >= 20 and d.retry_max_delay >= 30
    tree = write_tree(tmp_path / "t", {"a": b"a"})
    cfg = load_config(
        write_config(
            catalog=[{"name": "c", "root": str(tree), "bucket": "bkt"}],
            transfer={"retry_deadline": 1800, "retry_max_attempts": 50, "ramp_up": False, "ramp_start_writes": 500},
        )
    )
    t = cfg.transfer
    assert (t.retry_deadline, t.retry_max_attempts, t.ramp_up, t.ramp_start_writes) == (1800, 50, False, 500)


def test_write_ramp_starts_at_a_thousand_per_bucket_and_doubles_every_twenty_minutes():
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)

    ramp = WriteRamp(1000, clock=lambda: now[0], sleep=sleep)
    assert ramp.rate(0) == 1000
    assert ramp.rate(DOUBLING_SECONDS) == pytest.approx(2000)
    assert ramp.rate(2 * DOUBLING_SECONDS) == pytest.approx(4000)
    for _ in range(2000):  # 2,000 writes at once into one bucket: the second thousand waits its turn
        ramp.acquire("a")
    assert max(slept) == pytest.approx(2000 / 1000 - 0.25 - 0.001, abs=0.01)
    assert ramp.acquire("b") == 0.0  # each bucket has its own capacity
    now[0] = 2 * DOUBLING_SECONDS + 100  # forty minutes on: four times the rate
    slept.clear()
    for _ in range(4000):
        ramp.acquire("c")
    assert max(slept) == pytest.approx(4000 / ramp.rate() - 0.25, abs=0.01)
    assert write_limiter(False, 1000) is no_ramp


def _preflight_probe(request) -> bool:
    """A write of preflight's probe object (its name in the path, or in a multipart upload's metadata)."""
    return PROBE_PREFIX in unquote(request.path) or PROBE_PREFIX.encode() in bytes(request.head)


def test_every_object_write_passes_the_ramp(tmp_path, write_config, bucket, monkeypatch, wire):
    gates: list[str] = []

    def recording(enabled: bool, start: float):
        assert enabled and start == 1000.0  # the defaults
        return lambda b: gates.append(b) or 0.0

    monkeypatch.setattr(objects_stage, "write_limiter", recording)
    rng = random.Random(3)
    tree = write_tree(tmp_path / "tree", {f"f{i}.bin": rng.randbytes(2000) for i in range(12)})
    tree = write_tree(tree, {"big.bin": rng.randbytes(1536 * 1024)})
    cfg, plan = _plan(
        write_config(
            catalog=[{"name": "cat", "root": str(tree), "bucket": bucket, "prefix": "c/"}],
            transfer={"large_file_threshold": "512KiB", "chunk_size": "256KiB"},
        )
    )
    assert run_plan(cfg, plan).status == "ok"
    ours = [r for r in wire.snapshot() if r.headers.get("user-agent", "").startswith("migrate/")]
    writes = [r for r in ours if r.method in ("POST", "DELETE") and "/o" in r.path and not _preflight_probe(r)]
    assert len(gates) >= len(writes) > 12 and set(gates) == {bucket}
    composes = wire.composes()  # fake-gcs-server's buckets allow composite uploads: compose deletes the parts
    assert len(composes) == 1 and composes[0].json_body()["deleteSourceObjects"] is True


def test_damaged_upload_stored_by_a_lenient_server_is_replaced_without_a_delete(
    tmp_path, write_config, bucket, emulators, wire, gcs_client, monkeypatch
):
    """fake-gcs-server stores bytes whose CRC32C differs from the one sent; the copy notices from the
    response and replaces exactly that generation (ifGenerationMatch=<it>), which the least-privilege role
    allows: it may create but not delete outside the scratch prefix."""
    data = random.Random(8).randbytes(60_000)
    tree = write_tree(tmp_path / "tree", {"a.bin": data})
    cfg, plan = _plan(write_config(catalog=[{"name": "cat", "root": str(tree), "bucket": bucket, "prefix": "c/"}]))
    hits: list[str] = []

    def first_insert(method: str, path: str) -> bool:
        if method == "POST" and "uploadType=multipart" in path and not hits:
            hits.append(path)
            return True
        return False

    with FaultProxy(emulators.gcs, rate=1.0, faults=("corrupt",), match=first_insert) as corrupter:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", corrupter.url)
        summary = run_plan(cfg, plan, options=RunOptions(skip_preflight=True))  # the first insert is the copy's
    assert hits
    assert summary.status == "ok", summary.objects.failures
    assert summary.objects.corrupt_resent == 1
    inserts = [r for r in wire.snapshot() if r.method == "POST" and r.param("uploadType") == "multipart"]
    assert [r.param("ifGenerationMatch") for r in inserts][0] == "0"
    replaced = inserts[1].param("ifGenerationMatch")
    assert replaced.isdigit() and int(replaced) > 0  # the damaged generation, and only it
    assert not [r for r in wire.snapshot() if r.method == "DELETE"]
    info = Gcs(gcs_client).get(bucket, "c/a.bin")
    assert info.crc32c == crc32c_of_file(tree / "a.bin")[0] and info.generation != int(replaced)
