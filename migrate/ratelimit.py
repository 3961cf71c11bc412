"""A token bucket shared by every worker: `--bwlimit 50MiB/s` caps the sum of their reads.

Workers call `consume(n)` after reading n bytes. The bucket goes into debt instead of making
a large read wait for a full bucket, and the reader that caused the debt sleeps it off, so
the long-run rate is exact whatever the read size and however many threads share it.
Clock and sleep are injectable, so tests check the rate without real sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Allow `rate` bytes per second on average, with bursts of at most `burst` bytes."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (use unlimited() for no limit)")
        self.rate = float(rate)
        # a quarter of a second of traffic: smooth enough for a progress display, big enough for 1 MiB reads
        self.burst = float(burst if burst is not None else max(rate / 4, 64 * 1024))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._last = clock()
        self.consumed = 0

    def consume(self, n: int) -> float:
        """Take n bytes' worth of tokens, sleeping while the bucket is in debt. Returns the time slept."""
        if n <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            self.consumed += n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


class Unlimited:
    """The bucket used without --bwlimit: counts, never waits."""

    rate = 0.0

    def __init__(self) -> None:
        self.consumed = 0

    def consume(self, n: int) -> float:
        self.consumed += n  # only a statistic; races lose counts, never correctness
        return 0.0


def limiter(rate: float) -> TokenBucket | Unlimited:
    """A TokenBucket for a positive rate (bytes/s), else Unlimited."""
    return TokenBucket(rate) if rate and rate > 0 else Unlimited()
