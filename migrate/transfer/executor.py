"""A bounded worker pool whose completions come back to one thread through a queue.

The dispatching thread submits while `has_room()`, and handles completions from `next_done()`;
it alone touches the ledger. At most `max_in_flight` tasks exist at any time (running or
queued), so memory does not depend on the size of the plan: work is pulled from the ledger
as room frees up, never submitted all at once (dvc's bounded imap_unordered, in effect).
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Done:
    """One finished task: its tag, and either its result or the exception it raised."""

    tag: Any
    result: Any = None
    error: BaseException | None = None


class BoundedExecutor:
    def __init__(self, workers: int, *, max_in_flight: int | None = None, name: str = "migrate-worker") -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.max_in_flight = max_in_flight or workers * 2
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._done: queue.SimpleQueue[Done] = queue.SimpleQueue()
        self.in_flight = 0

    def has_room(self) -> bool:
        return self.in_flight < self.max_in_flight

    def submit(self, tag: Any, fn: Callable[..., Any], *args: Any) -> None:
        """Queue fn(*args); its outcome comes back from next_done() with this tag."""
        self.in_flight += 1
        future = self._pool.submit(fn, *args)
        future.add_done_callback(lambda f, tag=tag: self._done.put(_outcome(tag, f)))

    def next_done(self, timeout: float | None = None) -> Done | None:
        """The next completion, or None after timeout (or at once when nothing is in flight)."""
        if self.in_flight == 0:
            return None
        try:
            done = self._done.get(timeout=timeout)
        except queue.Empty:
            return None
        self.in_flight -= 1
        return done

    def shutdown(self, *, wait: bool = True) -> None:
        """wait=False drops queued tasks and returns at once (abort); running ones end on their own."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def __enter__(self) -> BoundedExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=exc[0] is None)


def _outcome(tag: Any, future: Future) -> Done:
    if future.cancelled():
        return Done(tag, error=RuntimeError("cancelled"))
    error = future.exception()
    return Done(tag, error=error) if error is not None else Done(tag, result=future.result())
