"""The one retry policy: its decisions table-tested, ``Retry-After`` in seconds and as an HTTP date, and the
tries of ``RetryPolicy.call`` counted."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from clients.errors import ApiError, ClientError
from clients.retry import Retry, RetryPolicy, requested_wait, retry_after

POLICY = RetryPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.02, jitter=0.0, max_retry_after=60.0)
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        (format_datetime(datetime(2026, 11, 26, 12, 1, 30, tzinfo=UTC), usegmt=True), 90.0),
        ("Thu, 26 Nov 2026 12:00:45 GMT", 45.0),
        ("Thu, 26 Nov 2026 11:00:00 GMT", 0.0),  # a date in the past: go now
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(value: str | None, seconds: float | None) -> None:
    assert retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    ("status", "headers", "wait"),
    [
        (429, {"Retry-After": "7"}, 7.0),
        (503, {"retry-after": "2"}, 2.0),
        (403, {"Retry-After": "30"}, 30.0),  # GitHub's secondary rate limit
        (500, {"Retry-After": "7"}, None),  # read on 403, 429 and 503 only
        (429, {}, None),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "0"}, 1.0),  # a reset in the past: 0 + 1 s
        (403, {"x-ratelimit-remaining": "5", "x-ratelimit-reset": "0"}, None),  # a plain 403: not a rate limit
        (503, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "0"}, None),
    ],
)
def test_requested_wait(status: int, headers: dict[str, str], wait: float | None) -> None:
    # httpx.Headers: case-insensitive, as the clients get them (urllib3's HTTPHeaderDict for Kubernetes)
    assert requested_wait(status, httpx.Headers(headers)) == wait


def test_a_rate_limit_reset_in_the_future_is_waited_for_from_now() -> None:
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 3000)}
    wait = requested_wait(429, headers)
    assert wait is not None
    assert 2900 < wait <= 3001


@pytest.mark.parametrize(
    ("status", "idempotent", "wait", "retried"),
    [
        (None, True, None, True),  # no answer: a GET is sent again
        (None, False, None, False),  # no answer: a launch may have happened; never sent again here
        (503, True, None, True),
        (502, True, None, True),
        (408, True, None, True),
        (425, True, None, True),
        (503, False, 5.0, False),  # a 503 may follow work done, Retry-After or not
        (500, False, None, False),
        (429, False, None, True),  # 429: the server did not act
        (429, True, 3.0, True),
        (403, False, 3.0, True),  # GitHub's rate limit: it did not act
        (403, True, None, False),  # a plain 403
        (404, True, None, False),
        (400, True, None, False),
    ],
)
def test_should_retry(status: int | None, idempotent: bool, wait: float | None, retried: bool) -> None:
    assert POLICY.should_retry(status, idempotent=idempotent, wait=wait) is retried


def test_waits_too_long_and_delay() -> None:
    assert not POLICY.waits_too_long(None)
    assert not POLICY.waits_too_long(60.0)
    assert POLICY.waits_too_long(60.5)
    assert POLICY.delay(1, 4.0) == 4.0  # the server's word
    assert POLICY.delay(1) == 0.01  # else the backoff, doubling to its cap
    assert POLICY.delay(2) == 0.02
    assert POLICY.delay(5) == 0.02


def test_backoff_jitter_stays_within_its_fraction() -> None:
    policy = RetryPolicy(backoff_initial=1.0, backoff_max=8.0, jitter=0.5)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        assert base <= policy.backoff(attempt) <= base * 1.5


def test_call_tries_until_success() -> None:
    tries: list[int] = []

    def send() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise Retry(ApiError("busy", status=503))
        return "ok"

    assert POLICY.call(send) == "ok"
    assert len(tries) == 3


def test_call_raises_the_last_error_when_the_tries_run_out() -> None:
    tries: list[int] = []

    def send() -> str:
        tries.append(1)
        raise Retry(ApiError(f"busy {len(tries)}", status=503))

    with pytest.raises(ApiError, match="busy 3") as caught:
        POLICY.call(send)
    assert not isinstance(caught.value, Retry)
    assert len(tries) == POLICY.attempts


def test_call_raises_other_errors_at_once() -> None:
    tries: list[int] = []

    def send() -> str:
        tries.append(1)
        raise ClientError("refused")

    with pytest.raises(ClientError, match="refused"):
        POLICY.call(send)
    assert len(tries) == 1


def test_call_waits_what_the_server_asked_for() -> None:
    tries: list[float] = []

    def send() -> str:
        tries.append(time.monotonic())
        if len(tries) == 1:
            raise Retry(ApiError("slow down", status=429), wait=0.2)
        return "ok"

    assert POLICY.call(send) == "ok"
    assert tries[1] - tries[0] >= 0.2  # a lower bound only: the wait really happened
