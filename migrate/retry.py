"""One retry policy for GCS and Pub/Sub: an explicit classifier plus tenacity.

Retried: HTTP 408, 429, 5xx, gRPC UNAVAILABLE/DEADLINE_EXCEEDED/RESOURCE_EXHAUSTED/ABORTED/
INTERNAL, connection resets and timeouts (google-auth's TransportError among them: a token
refresh that failed on the network). Everything else fails fast, and so do the two 5xx that
say the server will never do it: 501 Not Implemented and 505 HTTP Version Not Supported (an
emulator answers 501 for IAM calls it lacks; retrying that only adds backoff).
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from migrate.config import TransferConfig

if TYPE_CHECKING:  # imported where a retry happens: most runs never need it, and it costs start-up time
    import tenacity

T = TypeVar("T")

RETRYABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})
PERMANENT_5XX = frozenset({501, 505})
_RETRYABLE_GRPC = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL", "UNKNOWN"}
)


def http_status(exc: BaseException) -> int | None:
    for attr in ("code", "status_code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def _retryable_status(status: int | None) -> bool:
    if status is None:
        return False
    return status in RETRYABLE_HTTP or (500 <= status < 600 and status not in PERMANENT_5XX)


def is_retryable(exc: BaseException) -> bool:
    """The classifier. True means: transient, back off and try again."""
    try:
        import requests
    except ImportError:  # pragma: no cover
        requests = None  # type: ignore[assignment]
    from google.api_core import exceptions as gexc

    if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
        return True
    from google.auth.exceptions import TransportError

    if isinstance(exc, TransportError):
        return True  # a token refresh that could not reach the token endpoint: a reset, not a denial
    if requests is not None and isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    if isinstance(exc, gexc.RetryError):
        return True
    if isinstance(exc, gexc.GoogleAPICallError):
        grpc_code = getattr(exc, "grpc_status_code", None)
        if grpc_code is not None and getattr(grpc_code, "name", "") in _RETRYABLE_GRPC:
            return True
        return _retryable_status(http_status(exc))
    try:
        import urllib3.exceptions as u3

        if isinstance(exc, (u3.ProtocolError, u3.ReadTimeoutError, u3.NewConnectionError)):
            return True
    except ImportError:  # pragma: no cover
        pass
    status = http_status(exc)
    if status is not None:
        return _retryable_status(status)
    # http.client.RemoteDisconnected, IncompleteRead and friends
    import http.client

    return isinstance(exc, (http.client.RemoteDisconnected, http.client.IncompleteRead))


def retrying(
    cfg: TransferConfig,
    on_retry: Callable[[BaseException, int], None] | None = None,
    *,
    sleep: Callable[[float], None] | None = None,
) -> tenacity.Retrying:
    """A tenacity.Retrying with the shared classifier, exponential backoff, jitter and a cap.

    on_retry(exc, attempt) is called before each sleep; callers count retries in the ledger.
    """
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
    """retrying(cfg, on_retry, sleep=sleep)(fn), with the first attempt made before any tenacity object exists.

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

    r = retrying(cfg, on_retry, sleep=sleep)
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


def describe(exc: BaseException) -> str:
    """A one-line description of an error, without tokens or headers."""
    status = http_status(exc)
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    msg = msg[:300]
    if status is not None and str(status) not in msg:
        return f"HTTP {status}: {msg}"
    return f"{type(exc).__name__}: {msg}"
