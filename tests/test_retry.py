"""The retry classifier and policy: transient errors are retried with backoff and counted, the rest fail fast."""

from __future__ import annotations

import http.client

import pytest
from google.api_core import exceptions as gexc

from migrate.config import TransferConfig
from migrate.retry import call_with_retry, describe, is_retryable, policy, retrying
from migrate.targets import errors as target_errors

RETRIED = [
    gexc.from_http_status(408, "request timeout"),
    gexc.TooManyRequests("slow down"),
    gexc.InternalServerError("oops"),
    gexc.BadGateway("bad gateway"),
    gexc.ServiceUnavailable("unavailable"),
    gexc.GatewayTimeout("gateway timeout"),
    gexc.from_http_status(599, "odd 5xx"),
    gexc.DeadlineExceeded("grpc deadline"),
    ConnectionResetError("reset by peer"),
    TimeoutError("timed out"),
    ConnectionRefusedError("refused"),
    http.client.RemoteDisconnected("closed"),
    # what the transfer's own GCS client raises (targets/errors.py), classified by status like the above
    target_errors.from_http_status(408, "request timeout"),
    target_errors.from_http_status(429, "slow down"),
    target_errors.from_http_status(503, "unavailable"),
    target_errors.from_http_status(599, "odd 5xx"),
]
FAIL_FAST = [
    gexc.BadRequest("bad"),
    gexc.Unauthorized("who"),
    gexc.Forbidden("no"),
    gexc.NotFound("gone"),
    gexc.Conflict("exists"),
    gexc.PreconditionFailed("412"),
    gexc.MethodNotImplemented("emulator lacks it"),
    gexc.from_http_status(505, "http version"),
    ValueError("a bug, not weather"),
    target_errors.from_http_status(400, "bad"),
    target_errors.from_http_status(401, "who"),
    target_errors.from_http_status(403, "no"),
    target_errors.from_http_status(404, "gone"),
    target_errors.from_http_status(412, "there"),
    target_errors.from_http_status(501, "emulator lacks it"),
]


@pytest.mark.parametrize("exc", RETRIED, ids=lambda e: type(e).__name__)
def test_transient_errors_are_retried(exc):
    assert is_retryable(exc)


@pytest.mark.parametrize("exc", FAIL_FAST, ids=lambda e: type(e).__name__)
def test_permanent_errors_fail_fast(exc):
    assert not is_retryable(exc)


def test_the_lean_clients_errors_keep_their_status_and_kind():
    assert isinstance(target_errors.from_http_status(404, "x"), target_errors.NotFound)
    assert isinstance(target_errors.from_http_status(412, "x"), target_errors.PreconditionFailed)
    err = target_errors.from_http_status(418, "GET /b/x: teapot")
    assert type(err) is target_errors.HttpError and err.code == 418
    assert describe(err) == "HttpError: 418 GET /b/x: teapot"
    assert target_errors.is_target_failure(err) and not target_errors.is_target_failure(ValueError("bug"))


def _flaky(failures: list[BaseException]):
    calls = []

    def fn():
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    return fn, calls


def test_policy_retries_with_growing_capped_sleeps_and_counts_each_retry():
    cfg = TransferConfig(retry_initial_delay=1.0, retry_max_delay=4.0, retry_max_attempts=8)
    sleeps: list[float] = []
    seen: list[tuple[str, int]] = []
    fn, calls = _flaky([gexc.ServiceUnavailable("x") for _ in range(5)])
    out = retrying(cfg, lambda e, n: seen.append((type(e).__name__, n)), sleep=sleeps.append)(fn)
    assert out == "done" and len(calls) == 6
    assert seen == [("ServiceUnavailable", n) for n in range(1, 6)]
    assert all(0 <= s <= 4.0 for s in sleeps) and len(sleeps) == 5  # jittered, never above the cap


def test_policy_fails_fast_on_a_permanent_error_and_gives_up_after_max_attempts():
    cfg = TransferConfig(retry_initial_delay=0.0, retry_max_delay=0.0, retry_max_attempts=3)
    fn, calls = _flaky([gexc.NotFound("no bucket")])
    with pytest.raises(gexc.NotFound):
        retrying(cfg, sleep=lambda s: None)(fn)
    assert len(calls) == 1

    fn, calls = _flaky([gexc.ServiceUnavailable("down") for _ in range(10)])
    with pytest.raises(gexc.ServiceUnavailable):
        retrying(cfg, sleep=lambda s: None)(fn)
    assert len(calls) == 3


@pytest.mark.parametrize("entry", ["tenacity policy", "retrying", "call_with_retry"])
def test_the_fast_first_attempt_keeps_the_policy(entry):
    """call_with_retry (and retrying, its callable form) makes its first attempt outside tenacity: the same
    attempts, callbacks, waits and errors as the tenacity policy itself."""

    def run(failures, cfg, seen, sleeps):
        fn, calls = _flaky(failures)
        on_retry = lambda e, n: seen.append((type(e).__name__, n))  # noqa: E731
        if entry == "tenacity policy":
            return policy(cfg, on_retry, sleep=sleeps.append)(fn), calls
        if entry == "retrying":
            return retrying(cfg, on_retry, sleep=sleeps.append)(fn), calls
        return call_with_retry(fn, cfg, on_retry, sleep=sleeps.append), calls

    cfg = TransferConfig(retry_initial_delay=1.0, retry_max_delay=4.0, retry_max_attempts=4)
    seen: list[tuple[str, int]] = []
    sleeps: list[float] = []
    out, calls = run([gexc.ServiceUnavailable("x"), ConnectionResetError("y")], cfg, seen, sleeps)
    assert out == "done" and len(calls) == 3
    assert seen == [("ServiceUnavailable", 1), ("ConnectionResetError", 2)] and len(sleeps) == 2
    assert 0 <= sleeps[0] <= 1.0 and 0 <= sleeps[1] <= 2.0  # the backoff of attempts 1 and 2, not shifted
    seen.clear()
    with pytest.raises(gexc.ServiceUnavailable):
        run([gexc.ServiceUnavailable("down") for _ in range(10)], cfg, seen, sleeps)
    assert [n for _, n in seen] == [1, 2, 3]  # four attempts in all, three retries counted
    seen.clear()
    with pytest.raises(gexc.NotFound):
        run([gexc.NotFound("no bucket")], cfg, seen, sleeps)
    assert seen == []


def test_describe_is_one_line_with_the_status():
    text = describe(gexc.ServiceUnavailable("backend down\nsecond line"))
    assert "\n" not in text and "503" in text and "backend down" in text
