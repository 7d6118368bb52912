"""A log of the requests each emulator served, for tests and benchmarks (what was written, how many calls)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTROL_PREFIX = "/_sandbox/"


def is_service_request(scope: Scope) -> bool:
    """An HTTP request to the emulated service: neither a control request (``/_sandbox/``), which faults and the
    request log leave alone, nor a non-HTTP scope."""
    return scope["type"] == "http" and not scope["path"].startswith(CONTROL_PREFIX)


@dataclass(frozen=True)
class RequestRecord:
    service: str
    method: str
    path: str
    query: str
    status: int
    """0 when the connection was dropped before an answer."""
    started: datetime
    duration: float
    user_agent: str

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started"] = self.started.isoformat()
        return data


class RequestLog:
    """Thread-safe: written on the sandbox's loop, read from tests in other threads."""

    def __init__(self) -> None:
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def records(self, service: str | None = None, *, since: datetime | None = None) -> list[RequestRecord]:
        with self._lock:
            records: Iterable[RequestRecord] = list(self._records)
        return [
            r for r in records if (service is None or r.service == service) and (since is None or r.started >= since)
        ]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


class RequestLogMiddleware:
    """Records method, path, status and time of every non-control request (never headers or bodies)."""

    def __init__(self, app: ASGIApp, service: str, log: RequestLog) -> None:
        self.app = app
        self.service = service
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_service_request(scope):
            await self.app(scope, receive, send)
            return
        started = datetime.now(UTC)
        t0 = time.monotonic()
        status = 0
        headers = dict(scope.get("headers") or [])
        logged = False

        def record() -> None:
            nonlocal logged
            if not logged:
                logged = True
                self.log.add(
                    RequestRecord(
                        service=self.service,
                        method=scope["method"],
                        path=scope["path"],
                        query=scope.get("query_string", b"").decode("latin-1"),
                        status=status,
                        started=started,
                        duration=time.monotonic() - t0,
                        user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
                    )
                )

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # logged before the answer's last bytes go out: a client that has its answer finds it in the log
                record()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            record()  # no answer (a dropped connection), or one that failed half-way
