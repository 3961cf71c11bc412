"""Global rate limits across every worker of a Dask cluster: K leases, each throttled at rate/K.

A distributed Semaphore on the scheduler grants at most K leases at a time. A task holds one
lease for as long as it moves bytes (or publishes events) and throttles itself with a token
bucket of rate/K that starts empty, so the sum over all lease holders never exceeds the rate,
however many hosts share it. K is the number of task slots (threads) of the cluster when the run
starts: with every slot busy, every lease is in use and the cluster runs at the cap.

A lease of a worker that dies comes back when the scheduler's lease timeout expires
(distributed.scheduler.locks.lease-timeout, 30 s by default); meanwhile the cluster runs a
little under the cap, never over it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from migrate.ratelimit import TokenBucket


@dataclass(frozen=True)
class Lease:
    """What a task needs to take its share of one global limit (picklable, sent with the task)."""

    name: str  # the Semaphore's name on the scheduler
    rate: float  # the global rate (bytes/s or events/s); 0 = unlimited
    leases: int  # K

    @property
    def share(self) -> float:
        return self.rate / max(1, self.leases)


def lease_for(kind: str, plan_id: str, rate: float, leases: int) -> Lease | None:
    """The lease a run's tasks share for one limit, or None when the limit is off."""
    if not rate or rate <= 0:
        return None
    return Lease(f"migrate-{kind}-{plan_id}-{leases}", float(rate), max(1, leases))


def empty_bucket(rate: float) -> TokenBucket:
    """A token bucket for rate that starts with no tokens: a fresh lease brings no burst with it."""
    bucket = TokenBucket(rate)
    bucket.consume(int(bucket.burst))  # exactly the burst: the bucket is at zero and nothing sleeps
    return bucket


@contextlib.contextmanager
def held(lease: Lease | None) -> Iterator[Callable[[int], object] | None]:
    """Inside a Dask task: hold one of the K leases; yields a throttle of rate/K (None = unlimited)."""
    if lease is None:
        yield None
        return
    sem = _semaphore(lease)
    sem.acquire()
    try:
        yield empty_bucket(lease.share).consume
    finally:
        sem.release()


_semaphores: dict[str, object] = {}
_lock = threading.Lock()


def _semaphore(lease: Lease):
    """One Semaphore object per lease name and worker process (each keeps a lease-refresh timer running)."""
    from distributed import Semaphore

    with _lock:
        sem = _semaphores.get(lease.name)
        if sem is None:
            sem = _semaphores[lease.name] = Semaphore(max_leases=lease.leases, name=lease.name)
        return sem
