"""A strict ``httpx.MockTransport`` handler for client unit tests: it answers only the routes a test declares,
fails the test on any other request, and counts what it served (to show that retries are bounded)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

Answer = httpx.Response | Exception | Callable[[httpx.Request], "httpx.Response | Exception"]


def reply(status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    """A JSON response (``body`` None: no content)."""
    if body is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


class Routes:
    """Routes keyed by (method, path). Each route has a queue of answers; the last one repeats.

    An answer is a response, an exception to raise (a dropped connection: ``httpx.ReadError``), or a callable
    taking the request. Requests are recorded in ``requests``.
    """

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[httpx.Request] = []
        self.counts: Counter[tuple[str, str]] = Counter()

    def add(self, method: str, path: str, *answers: Answer) -> Routes:
        self._routes[(method.upper(), path)] = list(answers)
        return self

    def count(self, method: str, path: str) -> int:
        return self.counts[(method.upper(), path)]

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method.upper() and r.url.path == path]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        key = (request.method, request.url.path)
        self.requests.append(request)
        self.counts[key] += 1
        if key not in self._routes:
            pytest.fail(f"unexpected request {request.method} {request.url}")
        answers = self._routes[key]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if callable(answer) and not isinstance(answer, httpx.Response | Exception):
            answer = answer(request)
        if isinstance(answer, Exception):
            raise answer
        # a fresh copy: a response object is consumed once, and the last answer repeats
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None
