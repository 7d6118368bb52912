"""HTTP-level faults (5xx, 429 with Retry-After, dropped connections, slow answers), seeded.

Faults can be aimed at some clients (``HttpFaults.user_agents``, a regular expression on the ``User-Agent``): our
product's clients send ``fragalysis-cd/...``, while the emulated services' own traffic (the AWX playbook's
Kubernetes requests, a workflow's AWX trigger) sends its own, so that faults meant for our clients do not fail an
AWX job by accident, and faults meant for the playbook can fail one on purpose.

Behavioural faults (a failing build, an AWX job that fails, a crash-looping pod, ...) live in the scenario's
``faults`` section too, and each emulator reads them where the behaviour happens.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.requestlog import is_service_request
from sandbox.scenario import HttpFaults

FaultResponder = Callable[[int, str, dict[str, str]], Response]


class FaultMiddleware:
    """Applies the current ``HttpFaults`` of one service (read on every request, so run-time changes apply)."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Callable[[], HttpFaults],
        rng: random.Random,
        respond: FaultResponder,
    ) -> None:
        self.app = app
        self.settings = settings
        self.rng = rng
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_service_request(scope):
            await self.app(scope, receive, send)
            return
        faults = self.settings()
        if not _aimed_at(faults, scope):
            # a request the faults are not aimed at draws no random number, so it never shifts the seeded
            # sequence of faults that the aimed-at requests get
            await self.app(scope, receive, send)
            return
        if faults.slow_rate and self.rng.random() < faults.slow_rate:
            await asyncio.sleep(faults.slow_seconds)
        if faults.drop_rate and self.rng.random() < faults.drop_rate:
            await _drop(scope)
            return
        if faults.lose_answer_rate and self.rng.random() < faults.lose_answer_rate:
            # the service acts on the request, but its answer never arrives (a proxy reset, a timeout)
            await self.app(scope, receive, _swallow)
            await _drop(scope)
            return
        if faults.fail_next > 0:
            faults.fail_next -= 1
            await self.respond(faults.error_status, "sandbox fault: injected error", {})(scope, receive, send)
            return
        if faults.error_rate and self.rng.random() < faults.error_rate:
            await self.respond(faults.error_status, "sandbox fault: injected error", {})(scope, receive, send)
            return
        if faults.rate_limit_rate and self.rng.random() < faults.rate_limit_rate:
            headers = {"retry-after": str(faults.retry_after_seconds)}
            await self.respond(429, "sandbox fault: too many requests", headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _aimed_at(faults: HttpFaults, scope: Scope) -> bool:
    """Whether the faults apply to this request: its path matches ``paths`` and its ``User-Agent`` matches
    ``user_agents`` (each when set)."""
    if faults.paths and not re.search(faults.paths, scope["path"]):
        return False
    if faults.user_agents:
        agent = dict(scope["headers"]).get(b"user-agent", b"").decode("latin-1")
        return re.search(faults.user_agents, agent) is not None
    return True


async def _swallow(message: Message) -> None:
    """A ``send`` that loses every message."""


class ExposeTransport:
    """Outermost middleware: keeps uvicorn's transport in the scope so that a fault can drop the connection.

    ASGI has no "drop" message; uvicorn's ``send`` is a method of its request cycle (h11 and httptools
    protocols alike), which holds the transport.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_TRANSPORT] = getattr(getattr(send, "__self__", None), "transport", None)
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            # the client went away while we read its request (e.g. it timed out on a slow answer): nothing to
            # answer, and nothing worth a traceback in the server log
            return


_TRANSPORT = "sandbox.transport"


async def _drop(scope: Scope) -> None:
    """Close the connection without an answer, as a crashed proxy or a reset would."""
    transport = scope.get(_TRANSPORT)
    if transport is None:
        raise ConnectionAbortedError("sandbox fault: dropped connection")
    transport.abort()
    # let uvicorn see the connection lost, so that it does not try to answer 500 on it
    for _ in range(3):
        await asyncio.sleep(0)
