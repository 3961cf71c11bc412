"""One retry policy for GCS and Pub/Sub: the one classifier plus tenacity.

What is retried is decided by `migrate.targets.errors.is_retryable` (the only code that knows
Google's exceptions): HTTP 408, 429, 5xx but 501 and 505, the retryable gRPC codes, connection
resets and timeouts. This module adds the policy: backoff with jitter, a cap, a budget.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from migrate.config import TransferConfig
from migrate.targets.errors import describe, is_retryable

__all__ = [
    "call_with_retry",
    "describe",
    "is_retryable",
    "policy",
    "retrying",
]  # describe, is_retryable: targets/errors.py

if TYPE_CHECKING:  # imported where a retry happens: most runs never need it, and it costs start-up time
    import tenacity

T = TypeVar("T")


def retrying(
    cfg: TransferConfig,
    on_retry: Callable[[BaseException, int], None] | None = None,
    *,
    sleep: Callable[[float], None] | None = None,
) -> Callable[[Callable[[], T]], T]:
    """The policy as a callable: retrying(cfg, on_retry)(fn) is call_with_retry(fn, cfg, on_retry).

    on_retry(exc, attempt) is called before each sleep; callers count retries in the ledger.
    """
    return lambda fn: call_with_retry(fn, cfg, on_retry, sleep=sleep)


def policy(
    cfg: TransferConfig,
    on_retry: Callable[[BaseException, int], None] | None = None,
    *,
    sleep: Callable[[float], None] | None = None,
) -> tenacity.Retrying:
    """The tenacity.Retrying behind both: the shared classifier, exponential backoff with jitter, a cap on
    each wait, a cap on attempts and a deadline. Imported on first use: tenacity loads asyncio, about a
    tenth of a second of CPU that a command whose calls all succeed at once never needs."""
    import tenacity

    def _before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            on_retry(state.outcome.exception(), state.attempt_number)

    kwargs = {}
    if sleep is not None:
        kwargs["sleep"] = sleep
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_retryable),
        wait=tenacity.wait_random_exponential(multiplier=cfg.retry_initial_delay, max=cfg.retry_max_delay),
        stop=tenacity.stop_after_attempt(cfg.retry_max_attempts) | tenacity.stop_after_delay(cfg.retry_deadline),
        before_sleep=_before_sleep,
        reraise=True,
        **kwargs,
    )


def call_with_retry(
    fn: Callable[[], T], cfg: TransferConfig, on_retry=None, *, sleep: Callable[[float], None] | None = None
) -> T:
    """policy(cfg, on_retry, sleep=sleep)(fn), with the first attempt made before any tenacity object exists.

    Most calls succeed at once, and tenacity's per-call bookkeeping (a Retrying, a call state, its
    iteration actions) was about a fifth of the CPU of a small upload. A first attempt that fails
    with an error the classifier retries continues in tenacity exactly as Retrying.__call__ would
    have (same attempt numbers, waits, stops, callbacks, and the deadline counted from the first
    attempt); any other error is raised as tenacity (reraise=True) would raise it.
    """
    started = time.monotonic()
    try:
        return fn()
    except BaseException as exc:
        if not is_retryable(exc):
            raise
        first = sys.exc_info()
    import tenacity

    r = policy(cfg, on_retry, sleep=sleep)
    r.begin()
    state = tenacity.RetryCallState(retry_object=r, fn=fn, args=(), kwargs={})
    state.start_time = started
    state.set_exception(first)  # type: ignore[arg-type]
    while True:
        do = r.iter(retry_state=state)
        if isinstance(do, tenacity.DoAttempt):
            try:
                result = fn()
            except BaseException:
                state.set_exception(sys.exc_info())  # type: ignore[arg-type]
            else:
                state.set_result(result)
        elif isinstance(do, tenacity.DoSleep):
            state.prepare_for_next_attempt()
            r.sleep(do)
        else:
            return do  # type: ignore[no-any-return]
