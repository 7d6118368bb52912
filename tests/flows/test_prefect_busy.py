"""The response hook that makes Prefect's client try a write again soon after the first busy answer."""

from __future__ import annotations

import httpx

from flows.prefect_busy import BUSY_RETRY_SOON, FIRST_RETRY_SECONDS

HOOK = BUSY_RETRY_SOON["event_hooks"]["response"][0]


def _response(status: int, request: httpx.Request, **headers: str) -> httpx.Response:
    response = httpx.Response(status, request=request, headers=headers)
    HOOK(response)
    return response


def test_only_the_first_busy_answer_of_a_request_is_given_a_short_wait() -> None:
    request = httpx.Request("PATCH", "http://prefect.example/api/variables/name/x")
    assert _response(503, request).headers["Retry-After"] == str(FIRST_RETRY_SECONDS)
    assert "Retry-After" not in _response(503, request).headers  # the same request again: Prefect's own backoff
    other = httpx.Request("PATCH", "http://prefect.example/api/variables/name/y")
    assert _response(503, other).headers["Retry-After"] == str(FIRST_RETRY_SECONDS)


def test_other_answers_and_the_servers_own_wait_are_left_alone() -> None:
    request = httpx.Request("POST", "http://prefect.example/api/artifacts/")
    assert _response(503, request, **{"Retry-After": "7"}).headers["Retry-After"] == "7"
    for status in (200, 429, 500, 502):
        assert "Retry-After" not in _response(status, httpx.Request("GET", "http://prefect.example/")).headers
