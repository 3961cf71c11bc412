"""CRC32C in the form GCS reports it, the CRC32C of a concatenation, and the order-independent event-id digest."""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import google_crc32c

READ_CHUNK = 1024 * 1024
_MASK64 = (1 << 64) - 1


def crc32c_b64(value: int) -> str:
    """An integer CRC32C as GCS's base64 of 4 big-endian bytes."""
    return binascii.b2a_base64(value.to_bytes(4, "big"), newline=False).decode("ascii")


def crc32c_of_file(path: str | Path, chunk: int = READ_CHUNK) -> tuple[str, int]:
    """(base64 crc32c, bytes read) of a file, streamed."""
    c = google_crc32c.Checksum()
    n = 0
    with open(path, "rb", buffering=0) as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            c.update(block)
            n += len(block)
    return crc32c_b64(int.from_bytes(c.digest(), "big")), n


def crc32c_of_bytes(data: bytes) -> str:
    return crc32c_b64(google_crc32c.value(data))


# --- CRC32C of a concatenation (composite objects) ---------------------------------------------

_CASTAGNOLI_REFLECTED = 0x82F63B78


def _gf2_times(mat: Sequence[int], vec: int) -> int:
    total = 0
    i = 0
    while vec:
        if vec & 1:
            total ^= mat[i]
        vec >>= 1
        i += 1
    return total


def _gf2_compose(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """The operator 'apply b, then a'."""
    return tuple(_gf2_times(a, col) for col in b)


@lru_cache(maxsize=64)
def _zeros_operator(nbytes: int) -> tuple[int, ...]:
    """The GF(2) operator that advances a CRC32C register over nbytes zero bytes."""
    op: tuple[int, ...] = (_CASTAGNOLI_REFLECTED, *(1 << n for n in range(31)))  # one zero bit
    for _ in range(3):  # 8 zero bits
        op = _gf2_compose(op, op)
    result: tuple[int, ...] = tuple(1 << n for n in range(32))  # identity
    while nbytes:
        if nbytes & 1:
            result = _gf2_compose(op, result)
        nbytes >>= 1
        if nbytes:
            op = _gf2_compose(op, op)
    return result


def crc32c_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC32C of A+B from crc(A), crc(B) and len(B) (as zlib's crc32_combine)."""
    if len2 == 0:
        return crc1
    return _gf2_times(_zeros_operator(len2), crc1) ^ crc2


def crc32c_concat(parts: Sequence[tuple[int, int]]) -> int:
    """CRC32C of the concatenation of parts given as (crc, length)."""
    total = 0
    for crc, length in parts:
        total = crc32c_combine(total, crc, length)
    return total


def id_hash(event_id: str) -> int:
    """Unsigned 64-bit hash of an event id."""
    return int.from_bytes(hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).digest(), "big")


def signed64(value: int) -> int:
    """An unsigned 64-bit value as SQLite's signed INTEGER."""
    return value - (1 << 64) if value >= 1 << 63 else value


class IdDigest:
    """Count plus an order-independent, multiplicity-aware hash of event ids.

    The hash is the sum of 64-bit blake2b values mod 2**64: equal multisets give equal
    digests whatever the order, and a duplicate or a missing id changes it.
    """

    __slots__ = ("count", "total")

    def __init__(self, count: int = 0, total: int = 0) -> None:
        self.count = count
        self.total = total

    def add(self, event_id: str) -> None:
        self.count += 1
        self.total = (self.total + id_hash(event_id)) & _MASK64

    def add_hash(self, h: int) -> None:
        self.count += 1
        self.total = (self.total + (h & _MASK64)) & _MASK64

    def merge(self, other: IdDigest) -> None:
        self.count += other.count
        self.total = (self.total + other.total) & _MASK64

    @property
    def hex(self) -> str:
        return f"{self.total:016x}"

    @classmethod
    def from_hex(cls, count: int, hex_total: str | None) -> IdDigest:
        return cls(count, int(hex_total, 16) if hex_total else 0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdDigest) and (self.count, self.total) == (other.count, other.total)

    def __repr__(self) -> str:
        return f"IdDigest(count={self.count}, hex={self.hex})"
