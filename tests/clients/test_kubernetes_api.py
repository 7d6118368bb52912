"""``KubernetesApi.call``: the one retry policy applied to the kubernetes client's calls, ``Retry-After`` in
seconds and as an HTTP date, the tries counted in the fake call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3 import HTTPHeaderDict

from clients.errors import ApiError, NotFound, RateLimited
from clients.kubernetes_api import KubernetesApi
from clients.retry import RetryPolicy

FAST = RetryPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.02, jitter=0.0, max_retry_after=2.0)


class Answer:
    """What ``_preload_content=False`` gives: the raw body in ``data``."""

    def __init__(self, body: Any) -> None:
        self.data = json.dumps(body).encode()


def refusal(status: int, headers: dict[str, str] | None = None, message: str = "refused") -> ApiException:
    error = ApiException(status=status, reason="Refused", body=json.dumps({"kind": "Status", "message": message}))
    error.headers = HTTPHeaderDict(headers or {})
    return error


class FakeCall:
    """A kubernetes API method: answers in order (the last repeats), counting the tries and their arguments."""

    def __init__(self, *answers: Answer | Exception) -> None:
        self.answers = list(answers)
        self.tries: list[dict[str, Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Answer:
        self.tries.append(kwargs)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def api() -> Iterator[KubernetesApi]:
    configuration = k8s.Configuration()
    configuration.host = "https://k8s.example:6443"
    kubernetes = KubernetesApi(k8s.ApiClient(configuration), request_timeout=7.0, retry=FAST)
    yield kubernetes
    kubernetes.close()


def http_date(delta: timedelta) -> str:
    return format_datetime(datetime.now(UTC) + delta, usegmt=True)


def test_a_call_returns_the_raw_json_with_a_timeout(api: KubernetesApi) -> None:
    call = FakeCall(Answer({"metadata": {"creationTimestamp": "2026-11-26T10:00:00Z"}}))
    assert api.call(call, "GET x") == {"metadata": {"creationTimestamp": "2026-11-26T10:00:00Z"}}
    assert call.tries == [{"_preload_content": False, "_request_timeout": (5.0, 7.0)}]


def test_5xx_is_retried_and_the_tries_are_bounded(api: KubernetesApi) -> None:
    call = FakeCall(refusal(503), Answer({"ok": 1}))
    assert api.call(call, "GET x") == {"ok": 1}
    assert len(call.tries) == 2
    call = FakeCall(refusal(503, message="down"))
    with pytest.raises(ApiError, match="GET x answered 503: down") as caught:
        api.call(call, "GET x")
    assert caught.value.status == 503
    assert len(call.tries) == FAST.attempts


def test_a_dropped_connection_is_retried(api: KubernetesApi) -> None:
    call = FakeCall(ConnectionResetError("reset"), Answer({"ok": 1}))
    assert api.call(call, "GET x") == {"ok": 1}
    assert len(call.tries) == 2


def test_404_is_not_found_at_once(api: KubernetesApi) -> None:
    call = FakeCall(refusal(404, message='statefulsets.apps "x" not found'))
    with pytest.raises(NotFound, match="not found"):
        api.call(call, "GET statefulset ns/x")
    assert len(call.tries) == 1


@pytest.mark.parametrize(
    "retry_after",
    [pytest.param("0", id="seconds"), pytest.param(http_date(timedelta(seconds=-30)), id="an HTTP date just past")],
)
def test_retry_after_within_the_cap_is_honoured(api: KubernetesApi, retry_after: str) -> None:
    call = FakeCall(refusal(429, {"Retry-After": retry_after}), Answer({"ok": 1}))
    assert api.call(call, "GET x") == {"ok": 1}
    assert len(call.tries) == 2


@pytest.mark.parametrize(
    "retry_after",
    [pytest.param("3600", id="seconds"), pytest.param(http_date(timedelta(hours=1)), id="an HTTP date an hour ahead")],
)
def test_retry_after_past_the_cap_is_rate_limited_at_once(api: KubernetesApi, retry_after: str) -> None:
    call = FakeCall(refusal(429, {"Retry-After": retry_after}, message="Too many requests"))
    with pytest.raises(RateLimited, match="Too many requests") as caught:
        api.call(call, "LIST pods ns")
    assert caught.value.retry_after > 3000
    assert caught.value.status == 429
    assert len(call.tries) == 1
