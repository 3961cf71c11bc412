"""What an error from Google (or the network under it) means: the one place that knows Google's exceptions.

`is_retryable` is the classifier `migrate.retry` backs off on. Retried: HTTP 408, 429, 5xx, gRPC
UNAVAILABLE/DEADLINE_EXCEEDED/RESOURCE_EXHAUSTED/ABORTED/INTERNAL/UNKNOWN, connection resets and
timeouts (google-auth's TransportError among them: a token refresh that failed on the network).
Everything else fails fast, and so do the two 5xx that say the server will never do it: 501 Not
Implemented and 505 HTTP Version Not Supported (an emulator answers 501 for IAM calls it lacks;
retrying that only adds backoff). Status codes: https://cloud.google.com/storage/docs/json_api/v1/status-codes
and https://cloud.google.com/storage/docs/retry-strategy.

Code outside targets/ names these errors through this module: `PRECONDITION_FAILED` (a create-once
write found an object: HTTP 412) and `as_target_error` (a failed call becomes a `TargetError`).
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import requests
import urllib3.exceptions as u3
from google.api_core import exceptions as gexc
from google.auth.exceptions import TransportError

from migrate.errors import TargetError

RETRYABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})
PERMANENT_5XX = frozenset({501, 505})
_RETRYABLE_GRPC = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL", "UNKNOWN"}
)
_TRANSIENT = (
    ConnectionError,
    TimeoutError,
    socket.timeout,
    TransportError,  # a token refresh that could not reach the token endpoint: a reset, not a denial
    requests.ConnectionError,
    requests.Timeout,
    gexc.RetryError,
)
_TRANSIENT_TRANSPORT = (u3.ProtocolError, u3.ReadTimeoutError, u3.NewConnectionError)

# `except PRECONDITION_FAILED:` around a write with ifGenerationMatch: the object is there (HTTP 412)
PRECONDITION_FAILED: tuple[type[BaseException], ...] = (gexc.PreconditionFailed,)
# what a call to a target raises when it fails: an API error, or the network under it
TARGET_FAILURES: tuple[type[BaseException], ...] = (gexc.GoogleAPIError, OSError)


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
    if isinstance(exc, _TRANSIENT):
        return True
    if isinstance(exc, gexc.GoogleAPICallError):
        grpc_code = getattr(exc, "grpc_status_code", None)
        if grpc_code is not None and getattr(grpc_code, "name", "") in _RETRYABLE_GRPC:
            return True
        return _retryable_status(http_status(exc))
    if isinstance(exc, _TRANSIENT_TRANSPORT):
        return True
    status = http_status(exc)
    if status is not None:
        return _retryable_status(status)
    return isinstance(exc, (http.client.RemoteDisconnected, http.client.IncompleteRead))


def describe(exc: BaseException) -> str:
    """A one-line description of an error, without tokens or headers."""
    status = http_status(exc)
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    msg = msg[:300]
    if status is not None and str(status) not in msg:
        return f"HTTP {status}: {msg}"
    return f"{type(exc).__name__}: {msg}"


@contextmanager
def as_target_error(what: str, fix: str) -> Iterator[None]:
    """Inside the block, a failed target call becomes TargetError(f"{what}: {describe(exc)}", fix)."""
    try:
        yield
    except TARGET_FAILURES as exc:
        raise TargetError(f"{what}: {describe(exc)}", fix) from None
