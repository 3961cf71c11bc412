"""The shared token bucket, on a fake clock: no real sleeping, no timing thresholds."""

from __future__ import annotations

import threading

import pytest

from migrate.ratelimit import TokenBucket, Unlimited, limiter

MIB = 1024 * 1024


class FakeClock:
    """Time advances only when someone sleeps; a sleeper wakes at (its now + delay)."""

    def __init__(self) -> None:
        self.t = 0.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.t

    def sleep(self, delay: float) -> None:
        with self.lock:
            self.t += delay


def test_long_run_rate_holds_within_ten_percent():
    clock = FakeClock()
    bucket = TokenBucket(50 * MIB, clock=clock, sleep=clock.sleep)
    total = 0
    sizes = [MIB, 64 * 1024, 3 * MIB, 1, 700_000]
    for i in range(400):
        n = sizes[i % len(sizes)]
        bucket.consume(n)
        total += n
    rate = total / clock()
    assert rate == pytest.approx(50 * MIB, rel=0.10)
    assert rate <= 50 * MIB * 1.10


def test_many_threads_share_one_budget():
    """8 readers at once, clock frozen: the last one may only go on when all their bytes fit the rate."""
    clock = FakeClock()
    wakes: list[float] = []
    lock = threading.Lock()

    def sleep(delay: float) -> None:
        with lock:
            wakes.append(clock() + delay)

    bucket = TokenBucket(10 * MIB, clock=clock, sleep=sleep)
    per_thread = 20

    def reader() -> None:
        for _ in range(per_thread):
            bucket.consume(256 * 1024)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = 8 * per_thread * 256 * 1024
    assert bucket.consumed == total
    # without refills (frozen clock), the latest wake-up is when the shared budget allows the total
    assert max(wakes) == pytest.approx((total - bucket.burst) / bucket.rate, rel=0.10)


def test_idle_time_refills_only_up_to_the_burst():
    clock = FakeClock()
    slept: list[float] = []
    bucket = TokenBucket(MIB, burst=MIB, clock=clock, sleep=slept.append)
    clock.t = 3600.0  # an hour idle must not buy an hour of unthrottled bytes
    bucket.consume(MIB)
    assert slept == []
    bucket.consume(MIB)
    assert slept == [pytest.approx(1.0)]


def test_unlimited_never_waits():
    assert isinstance(limiter(0), Unlimited)
    assert limiter(0).consume(10**12) == 0.0
    assert isinstance(limiter(5 * MIB), TokenBucket)
    with pytest.raises(ValueError):
        TokenBucket(0)
