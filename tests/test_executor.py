"""The transfer's worker pool (transfer/executor.py): results and errors come back with their tags, never
more than max_in_flight at once, and an abort drops what was still queued."""

from __future__ import annotations

import threading

import pytest

from migrate.transfer.executor import CANCELLED, BoundedExecutor


def test_every_task_comes_back_once_with_its_tag_result_or_error():
    def work(n: int) -> int:
        if n % 5 == 0:
            raise ValueError(f"bad {n}")
        return n * n

    got: dict[int, object] = {}
    with BoundedExecutor(4, max_in_flight=6) as ex:
        pending = list(range(50))
        while pending or ex.in_flight:
            while pending and ex.has_room():
                n = pending.pop()
                ex.submit(n, work, n)
            assert ex.in_flight <= 6
            done = ex.next_done(timeout=5)
            assert done is not None and done.tag not in got
            got[done.tag] = done.error if done.error is not None else done.result
    assert len(got) == 50
    assert all(got[n] == n * n for n in range(50) if n % 5)
    assert all(isinstance(got[n], ValueError) and str(got[n]) == f"bad {n}" for n in range(0, 50, 5))
    assert ex.next_done(timeout=0) is None  # nothing in flight: no wait


def test_an_abort_drops_the_queued_tasks_and_lets_the_running_one_finish():
    release = threading.Event()
    started = threading.Event()

    def blocking() -> str:
        started.set()
        release.wait(10)
        return "finished"

    ex = BoundedExecutor(1, max_in_flight=4)
    ex.submit("running", blocking)
    assert started.wait(10)
    for tag in ("q1", "q2", "q3"):
        ex.submit(tag, blocking)
    ex.shutdown(wait=False)
    release.set()
    outcomes = {}
    while ex.in_flight:
        done = ex.next_done(timeout=10)
        assert done is not None
        outcomes[done.tag] = done.result if done.error is None else str(done.error)
    assert outcomes == {"running": "finished", "q1": CANCELLED, "q2": CANCELLED, "q3": CANCELLED}
    ex.shutdown(wait=True)
    assert not any(t.is_alive() for t in ex._threads)
    with pytest.raises(RuntimeError):
        ex.submit("late", blocking)
