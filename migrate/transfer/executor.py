"""A bounded worker pool whose completions come back to one thread through a queue.

The dispatching thread submits while `has_room()`, and handles completions from `next_done()`;
it alone touches the ledger. At most `max_in_flight` tasks exist at any time (running or
queued), so memory does not depend on the size of the plan: work is pulled from the ledger
as room frees up, never submitted all at once (dvc's bounded imap_unordered, in effect).

Plain threads on two SimpleQueues rather than concurrent.futures: a small file is one task, and a
Future per task (its Condition, RLock, done-callback list, the pool's idle semaphore) cost about
as much CPU as the rest of the dispatching thread's work per file.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CANCELLED = "cancelled"


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
        self.name = name
        self._tasks: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[Done] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.in_flight = 0

    def has_room(self) -> bool:
        return self.in_flight < self.max_in_flight

    def submit(self, tag: Any, fn: Callable[..., Any], *args: Any) -> None:
        """Queue fn(*args); its outcome comes back from next_done() with this tag."""
        if self._closed:
            raise RuntimeError("cannot submit to an executor that was shut down")
        self.in_flight += 1
        if len(self._threads) < self.workers and len(self._threads) < self.in_flight:
            t = threading.Thread(target=self._work, name=f"{self.name}_{len(self._threads)}")
            self._threads.append(t)
            t.start()
        self._tasks.put((tag, fn, args))

    def _work(self) -> None:
        tasks, done = self._tasks, self._done
        while True:
            item = tasks.get()
            if item is None:
                return
            done.put(_run(*item))
            item = None  # no task outlives its completion while this thread waits for the next

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
        if not self._closed:
            self._closed = True
            if not wait:
                self._drop_queued()
            for _ in self._threads:
                self._tasks.put(None)
        if wait:
            for t in self._threads:
                t.join()

    def _drop_queued(self) -> None:
        while True:
            try:
                item = self._tasks.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._done.put(Done(item[0], error=RuntimeError(CANCELLED)))

    def __enter__(self) -> BoundedExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=exc[0] is None)


def _run(tag: Any, fn: Callable[..., Any], args: tuple) -> Done:
    try:
        return Done(tag, fn(*args))
    except BaseException as exc:  # the dispatcher decides what an error means
        return Done(tag, error=exc)
