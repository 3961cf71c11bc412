"""Greedy, order-preserving batching: a pure function of the ordered stream, so it can run twice.

A batch closes when adding the next file would pass max_files or max_bytes, or when the group key
(the source: one bucket and prefix per batch) changes. A file larger than max_bytes gets a batch of
its own. The planner runs it once to count batches for the summary and once to write the manifest;
both passes give the same numbers because the input order is fixed by SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class BatchStats:
    batches: int = 0
    largest_files: int = 0
    largest_bytes: int = 0
    oversized: int = 0  # files over max_bytes, each alone in its batch


def assign_batches(
    rows: Iterable[T],
    *,
    size: Callable[[T], int],
    key: Callable[[T], Any] = lambda _row: None,
    max_files: int,
    max_bytes: int,
) -> Iterator[tuple[int, T]]:
    """Yield (batch number, row) for each row; batch numbers start at 1 and increase by one."""
    batch = 0
    files = 0
    nbytes = 0
    current_key: Any = object()
    for row in rows:
        n = size(row)
        k = key(row)
        if files == 0 or k != current_key or files >= max_files or nbytes + n > max_bytes:
            batch += 1
            files = 0
            nbytes = 0
            current_key = k
        files += 1
        nbytes += n
        yield batch, row


def batch_stats(
    rows: Iterable[T],
    *,
    size: Callable[[T], int],
    key: Callable[[T], Any] = lambda _row: None,
    max_files: int,
    max_bytes: int,
) -> BatchStats:
    """Count batches without keeping them: memory is one batch's counters."""
    stats = BatchStats()
    last = 0
    files = 0
    nbytes = 0
    for batch, row in assign_batches(rows, size=size, key=key, max_files=max_files, max_bytes=max_bytes):
        n = size(row)
        if batch != last:
            last = batch
            files = 0
            nbytes = 0
        files += 1
        nbytes += n
        if n > max_bytes:
            stats.oversized += 1
        stats.largest_files = max(stats.largest_files, files)
        stats.largest_bytes = max(stats.largest_bytes, nbytes)
    stats.batches = last
    return stats
