"""`--deep N` / `--deep 5%`: re-download a seeded random sample of present objects and re-hash the bytes.

Listing compares the CRC32C that GCS *stores as metadata* with the manifest. That cannot show bytes
that no longer match their own metadata (storage-level corruption, a backend bug, an object written
around the API) or a wrong hash recorded by the uploader. Deep mode streams the stored bytes
(raw, no decompressive transcoding, generation pinned to the one listed), computes CRC32C and compares
it with the expected hash (the manifest's, else the listed one).

Selection is by a seeded hash of (bucket, name), not by position: the same seed picks the same
objects whatever the listing order, and memory holds only the work in flight (candidates wait in a
TEMP table; the sample is read back with ORDER BY key LIMIT n).
"""

from __future__ import annotations

import hashlib
import math
import re
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import google_crc32c

from migrate.config import TransferConfig
from migrate.errors import UsageError
from migrate.hashing import crc32c_b64, signed64
from migrate.progress import Event, Reporter, null_reporter
from migrate.retry import describe, retrying
from migrate.verification.model import DeepResult
from migrate.verification.objects import Candidate
from migrate.verification.problems import DIFFERS, ERROR, ProblemLines, object_path

_SPEC = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")
BATCH = 5000
MAX_WORKERS = 8


def parse_deep(spec: str) -> tuple[int | None, float | None]:
    """'20' -> (20, None); '5%' -> (None, 5.0). Raises UsageError otherwise."""
    m = _SPEC.match(str(spec))
    if m and not m.group(2) and "." not in m.group(1) and int(m.group(1)) > 0:
        return int(m.group(1)), None
    if m and m.group(2) and 0 < float(m.group(1)) <= 100:
        return None, float(m.group(1))
    raise UsageError(f"--deep {spec!r} is not a sample size", "use a count like --deep 50 or a share like --deep 5%")


def sample_size(spec: str, candidates: int) -> int:
    count, pct = parse_deep(spec)
    if count is not None:
        return min(count, candidates)
    return min(candidates, math.ceil(candidates * (pct or 0) / 100))


class Sampler:
    """Collects deep candidates in a TEMP table keyed by a seeded hash; `pick(n)` yields the sample."""

    def __init__(self, conn: sqlite3.Connection, seed: int) -> None:
        self.conn = conn
        self.seed = seed
        self.count = 0
        self._buf: list[tuple] = []
        conn.executescript(
            "DROP TABLE IF EXISTS temp.verify_deep;"
            "CREATE TEMP TABLE verify_deep(key INTEGER NOT NULL, bucket TEXT NOT NULL, name TEXT NOT NULL,"
            " size INTEGER NOT NULL, crc32c TEXT, listed_crc32c TEXT, generation INTEGER,"
            " PRIMARY KEY(key, bucket, name)) WITHOUT ROWID;"
        )

    def key(self, bucket: str, name: str) -> int:
        h = hashlib.blake2b(f"{self.seed}\0{bucket}\0{name}".encode("utf-8", "surrogateescape"), digest_size=8)
        return signed64(int.from_bytes(h.digest(), "big"))

    def __call__(self, cand: Candidate) -> None:
        bucket, name = cand[0], cand[1]
        self._buf.append((self.key(bucket, name), *cand))
        self.count += 1
        if len(self._buf) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self.conn.executemany("INSERT OR IGNORE INTO temp.verify_deep VALUES(?,?,?,?,?,?,?)", self._buf)
            self._buf.clear()

    def pick(self, n: int) -> Iterator[Candidate]:
        self.flush()
        cur = self.conn.execute(
            "SELECT bucket, name, size, crc32c, listed_crc32c, generation FROM temp.verify_deep"
            " ORDER BY key, bucket, name LIMIT ?",
            (n,),
        )
        while rows := cur.fetchmany(256):
            for r in rows:
                yield (r[0], r[1], r[2], r[3], r[4], r[5])


class _CrcSink:
    """A write-only file object that hashes what the download streams into it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._crc = google_crc32c.Checksum()
        self.n = 0

    def write(self, data: bytes) -> int:
        self._crc.update(data)
        self.n += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def value(self) -> str:
        return crc32c_b64(int.from_bytes(self._crc.digest(), "big"))


def rehash(
    client, bucket: str, name: str, generation: int | None, cfg: TransferConfig, on_retry=None
) -> tuple[str, int]:
    """Stream the stored bytes of one object generation and return (base64 CRC32C, bytes)."""
    blob = client.bucket(bucket).blob(name, generation=generation)
    sink = _CrcSink()

    def attempt() -> tuple[str, int]:
        sink.reset()  # a retried download starts over
        blob.download_to_file(sink, raw_download=True, checksum=None, retry=None)
        return sink.value(), sink.n

    return retrying(cfg, on_retry)(attempt)


def run_deep(
    client,
    sampler: Sampler,
    result: DeepResult,
    lines: ProblemLines,
    cfg: TransferConfig,
    *,
    show: int,
    report: Reporter = null_reporter,
    on_retry: Callable[[BaseException, int], None] | None = None,
) -> None:
    result.candidates = sampler.count
    n = sample_size(result.spec, sampler.count)
    report(Event("phase", name=f"deep check: re-hashing {n} of {sampler.count} objects"))
    if n == 0:
        return
    workers = max(1, min(MAX_WORKERS, cfg.workers, n))

    def one(cand: Candidate) -> tuple[Candidate, str | None, int, str | None]:
        bucket, name, _size, _crc, _lcrc, gen = cand
        try:
            actual, nbytes = rehash(client, bucket, name, gen, cfg, on_retry)
            return cand, actual, nbytes, None
        except Exception as exc:  # every failure is reported as a `!` line, never raised
            return cand, None, 0, describe(exc)

    def settle(fut: Future) -> None:
        (bucket, name, _size, crc, lcrc, _gen), actual, nbytes, err = fut.result()
        path = object_path(bucket, name)
        result.sampled += 1
        result.bytes += nbytes
        if err is not None:
            result.errors += 1
            if len(result.error_names) < show:
                result.error_names.append(f"{path} ({err})")
            lines.replace(ERROR, path)
            return
        expected = crc or lcrc
        if actual == expected:
            result.ok += 1
            return
        result.corrupt += 1
        stale_meta = lcrc is not None and actual != lcrc
        result.metadata_mismatch += int(stale_meta)
        if len(result.corrupt_names) < show:
            detail = f"bytes hash to {actual}, expected {expected}"
            if stale_meta:
                detail += f"; listing metadata says {lcrc}"
            result.corrupt_names.append(f"{path} ({detail})")
        lines.replace(DIFFERS, path)
        report(Event("object_failed", name=path, data={"error": "deep re-hash mismatch"}))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify-deep") as pool:
        pending: set[Future] = set()
        for cand in sampler.pick(n):
            pending.add(pool.submit(one, cand))
            if len(pending) >= workers * 2:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    settle(fut)
        for fut in pending:
            settle(fut)
    lines.flush()
