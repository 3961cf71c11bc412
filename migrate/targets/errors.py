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

The GCS client of the transfer (targets/gcs.py) raises `HttpError` and its subclasses; the Google
libraries (the Pub/Sub clients, the storage client of the admin calls) raise google.api_core's errors.
The classifier reads both, and looks at a library's exception classes only once that library is loaded.
"""

from __future__ import annotations

import http.client
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from migrate.errors import TargetError

RETRYABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})
PERMANENT_5XX = frozenset({501, 505})
_RETRYABLE_GRPC = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL", "UNKNOWN"}
)
_TRANSIENT_BUILTIN = (ConnectionError, TimeoutError, socket.timeout)


class HttpError(Exception):
    """An HTTP error status from the GCS JSON API, as the lean client (targets/gcs.py) raises it.

    Its own class rather than google.api_core's: that module pulls in gRPC and protobuf, a fifth of a
    second of start-up CPU for every command, and the transfer path never needs them. `code` is the HTTP
    status, as on google.api_core's errors, so the classifier reads both the same way.
    """

    code = 0

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.code = status

    def __str__(self) -> str:
        return f"{self.code} {self.message}"


class NotFound(HttpError):
    code = 404


class Forbidden(HttpError):
    code = 403


class PreconditionFailed(HttpError):
    """HTTP 412: a create-once write (ifGenerationMatch=0) found the object there."""

    code = 412


_BY_STATUS = {cls.code: cls for cls in (NotFound, Forbidden, PreconditionFailed)}


def from_http_status(status: int, message: str) -> HttpError:
    return _BY_STATUS.get(status, HttpError)(message, status)


# Exceptions of the Google libraries and their transports are looked up only once their module is loaded:
# an exception of a module nobody imported cannot exist, and importing them costs start-up time.
def _google_api():
    return sys.modules.get("google.api_core.exceptions")


def _library_transient() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    if (auth := sys.modules.get("google.auth.exceptions")) is not None:
        found.append(auth.TransportError)  # a token refresh that could not reach the token endpoint: a reset
    if (requests := sys.modules.get("requests")) is not None:
        found += [requests.ConnectionError, requests.Timeout]
    if (api := _google_api()) is not None:
        found.append(api.RetryError)
    if (u3 := sys.modules.get("urllib3.exceptions")) is not None:
        found += [u3.ProtocolError, u3.ReadTimeoutError, u3.NewConnectionError]
    return tuple(found)


# `except PRECONDITION_FAILED:` around a write with ifGenerationMatch through targets/gcs.py: the object is there
PRECONDITION_FAILED: tuple[type[BaseException], ...] = (PreconditionFailed,)


def is_target_failure(exc: BaseException) -> bool:
    """What a call to a target raises when it fails: an API error, or the network under it."""
    if isinstance(exc, (HttpError, OSError)):
        return True
    api = _google_api()
    return api is not None and isinstance(exc, api.GoogleAPIError)


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
    if isinstance(exc, (*_TRANSIENT_BUILTIN, *_library_transient())):
        return True
    if isinstance(exc, HttpError):
        return _retryable_status(exc.code)
    api = _google_api()
    if api is not None and isinstance(exc, api.GoogleAPICallError):
        grpc_code = getattr(exc, "grpc_status_code", None)
        if grpc_code is not None and getattr(grpc_code, "name", "") in _RETRYABLE_GRPC:
            return True
        return _retryable_status(http_status(exc))
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
    except Exception as exc:
        if not is_target_failure(exc):
            raise
        raise TargetError(f"{what}: {describe(exc)}", fix) from None
