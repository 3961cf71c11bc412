"""Object writes per bucket, ramped up the way Google's request-rate guidelines ask.

https://cloud.google.com/storage/docs/request-rate: a bucket starts with an IO capacity of about 1,000
object writes per second (uploads, updates, deletes); above that, ramp up gradually, no faster than
doubling the rate over 20 minutes, so GCS has time to redistribute the load instead of answering with
latency and 429/503s. Every run starts at `start` writes/s per bucket and doubles every 20 minutes;
`transfer.ramp_up = false` turns the limit off. Clock and sleep are injectable for tests.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

DOUBLING_SECONDS = 20 * 60.0
BURST_SECONDS = 0.25  # writes may bunch up within a quarter of a second
# a write that must wait sleeps until the tick after its slot, never before the slot: the waiting
# threads wake in groups rather than one per slot, so a run held at the rate keeps the CPUs busy in
# short stretches instead of waking an idle machine for every single write (far less CPU per file)
TICK_SECONDS = 0.02


class WriteRamp:
    def __init__(
        self,
        start: float = 1000.0,
        *,
        doubling: float = DOUBLING_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if start <= 0:
            raise ValueError("start must be positive")
        self.start = float(start)
        self.doubling = doubling
        self._clock = clock
        self._sleep = sleep
        self._t0 = clock()
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()
        self.waited = 0.0

    def rate(self, now: float | None = None) -> float:
        """Writes per second allowed per bucket at `now`."""
        elapsed = max(0.0, (self._clock() if now is None else now) - self._t0)
        return self.start * 2.0 ** (elapsed / self.doubling)

    def acquire(self, bucket: str) -> float:
        """Wait for this bucket's next write slot; returns the time waited."""
        with self._lock:
            now = self._clock()
            slot = max(self._next.get(bucket, now - BURST_SECONDS), now - BURST_SECONDS)
            self._next[bucket] = slot + 1.0 / self.rate(now)
            wait = slot - now
        if wait > 0:
            wait = math.ceil(slot / TICK_SECONDS) * TICK_SECONDS - now
            self._sleep(wait)
            self.waited += wait  # a statistic; races lose a little, never correctness
            return wait
        return 0.0


def no_ramp(bucket: str) -> float:
    return 0.0


def write_limiter(enabled: bool, start: float) -> Callable[[str], float]:
    """The per-bucket write gate the copier calls before each object write."""
    return WriteRamp(start).acquire if enabled and start > 0 else no_ramp
