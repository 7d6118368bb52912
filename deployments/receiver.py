"""The GitHub webhook receiver: verifies each delivery and posts it to Prefect as events (``github_events.py``).

Prefect's open-source server has no inbound webhooks (FACTS.md), so this small HTTP server stands in front of it:
GitHub POSTs to ``<url>github``; the receiver checks ``X-Hub-Signature-256`` against the GitHub block's webhook
secret, turns ``push`` and ``workflow_run`` deliveries into events and posts them to ``POST {api_url}/events``.

Answers (GitHub shows them on the hook's "Recent Deliveries"):

- 202: verified and posted to Prefect (the body lists the event ids);
- 200: verified and deliberately ignored (ping, a deleted ref, an unconfigured repository, an unused event type,
  a sha that is not 40 hex digits or an oversized or unprintable ref: ``github_events.py`` says why it can deploy
  nothing); the log line gives the reason;
- 400: not a well-formed delivery (bad JSON or form, missing headers or fields); 401: unsigned or wrongly signed;
  413: the body is over ``max_body_bytes``; 415: a content type GitHub does not send;
- 502: Prefect did not take the events. GitHub does not redeliver by itself: the poller catches up, or redeliver
  from the hook's page (the same delivery id, so the same event id, de-duplicated by Prefect).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from blocks import StackTarget
from deployments.github_events import (
    PayloadError,
    UnsupportedContentType,
    decode_payload,
    signature_matches,
    translate,
)

logger = logging.getLogger(__name__)

PATH = "/github"
MAX_HEADER = 128
"""The longest X-GitHub-Event / X-GitHub-Delivery taken (GitHub's are an event name and a GUID)."""
MAX_BODY_BYTES = 25 * 1024 * 1024
"""GitHub caps webhook payloads at 25 MB."""
PREFECT_TIMEOUT = httpx.Timeout(8.0, connect=3.0)
"""GitHub waits 10 s for an answer: Prefect must answer well within that."""


class ReceiverConfigError(ValueError):
    """The receiver cannot start with the targets given (no webhook secret, or several different ones)."""


class _TooLarge(Exception):
    pass


def webhook_secret(targets: Mapping[str, StackTarget]) -> str:
    """The one webhook secret of the targets' GitHub blocks.

    Raises ``ReceiverConfigError`` when no target's GitHub block has one, or when two differ (the receiver has one
    URL, so every repository's hook must be signed with the same secret).
    """
    secrets = {
        name: target.github.webhook_secret.get_secret_value()
        for name, target in targets.items()
        if target.github.webhook_secret is not None and target.github.webhook_secret.get_secret_value()
    }
    if not secrets:
        raise ReceiverConfigError(
            "no webhook secret: set webhook_secret on the GitHub block of at least one target "
            f"({', '.join(targets) or 'no targets given'}); the receiver refuses unsigned deliveries"
        )
    if len(set(secrets.values())) > 1:
        raise ReceiverConfigError(
            f"the targets' GitHub blocks have different webhook secrets ({', '.join(sorted(secrets))}): "
            "one receiver verifies one secret; give every repository's hook the same one"
        )
    return next(iter(secrets.values()))


def auth_header(auth_string: str) -> str:
    """The ``Authorization`` value Prefect's own client sends for ``PREFECT_API_AUTH_STRING`` (HTTP Basic)."""
    return "Basic " + base64.b64encode(auth_string.encode("utf-8")).decode("ascii")


class Receiver:
    """GitHub webhooks in, Prefect events out, served by uvicorn in a background thread.

    Args:
        targets: the ``StackTarget`` blocks by block name; they give the routing (``fragalysis.environment``) and
            the webhook secret (their GitHub blocks' ``webhook_secret``, which must be set and agree).
        api_url: the Prefect API, e.g. ``http://127.0.0.1:4200/api`` (``PREFECT_API_URL``).
        auth_string: the server's ``PREFECT_API_AUTH_STRING``, sent as Prefect's client does; None: no auth.
        host: the address to bind; loopback unless told otherwise (put a TLS proxy in front for GitHub).
        port: the port; 0 picks a free one (read ``url`` after ``start``).
        max_body_bytes: a longer body is refused with 413.

    Raises:
        ReceiverConfigError: no webhook secret, or two different ones.
    """

    def __init__(
        self,
        targets: Mapping[str, StackTarget],
        *,
        api_url: str,
        auth_string: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._secret = webhook_secret(targets)
        self.targets = dict(targets)
        self.events_url = api_url.rstrip("/") + "/events"
        self._headers = {"Authorization": auth_header(auth_string)} if auth_string else {}
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._error: BaseException | None = None
        self._http: httpx.AsyncClient | None = None
        self._url: str | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The receiver's root URL, e.g. ``http://127.0.0.1:PORT/``; GitHub posts to ``<url>github``."""
        if self._url is None:
            raise RuntimeError("the receiver has not started")
        return self._url

    def start(self, timeout: float = 30.0) -> str:
        """Bind, serve in a background thread, and return the URL once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the receiver is already running")
        self._error = None
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._socket = socket.create_server((self.host, self.port), family=family)
        bound_port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self._app(),
            log_level="warning",
            access_log=False,  # each delivery is logged below, with its id and outcome
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._serve, args=(self._server, self._socket), name="webhook-receiver", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                error = self._error
                self.stop()
                raise RuntimeError(f"the webhook receiver failed to start: {error}") from error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the webhook receiver did not start within {timeout} s")
            time.sleep(0.01)
        host = f"[{self.host}]" if family == socket.AF_INET6 else self.host
        self._url = f"http://{host}:{bound_port}/"
        logger.info("webhook receiver at %s%s posting to %s", self._url, PATH.lstrip("/"), self.events_url)
        return self._url

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (deliveries in progress get a moment to finish) and release the port."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._server = None
        self._url = None

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            asyncio.run(self._main(server, sock))
        except BaseException as error:  # reported by start()
            self._error = error

    async def _main(self, server: uvicorn.Server, sock: socket.socket) -> None:
        # one client for the receiver's life, made on the loop that uses it
        async with httpx.AsyncClient(timeout=PREFECT_TIMEOUT, headers=self._headers) as http:
            self._http = http
            try:
                await server.serve(sockets=[sock])
            finally:
                self._http = None

    # ------------------------------------------------------------ HTTP

    def _app(self) -> Starlette:
        return Starlette(routes=[Route(PATH, self._deliver, methods=["POST"])])

    async def _deliver(self, request: Request) -> Response:
        delivery = request.headers.get("x-github-delivery", "")
        event = request.headers.get("x-github-event", "")
        return await self._answer(request, delivery, event)

    async def _answer(self, request: Request, delivery: str, event: str) -> Response:
        def outcome(status: int, text: str, **extra: Any) -> Response:
            level = logging.INFO if status < 400 else logging.WARNING
            shown = delivery[:MAX_HEADER]  # the headers are anyone's until the signature is checked: cut them
            logger.log(level, "delivery %s (%s): %s %s", shown or "-", event[:MAX_HEADER] or "-", status, text)
            return JSONResponse({"delivery": shown, "outcome": text, **extra}, status_code=status)

        try:
            body = await self._read_body(request)
        except _TooLarge:
            return outcome(413, f"the body is over {self.max_body_bytes} bytes")
        except ClientDisconnect:
            return outcome(400, "the client went away before sending the body")
        if not signature_matches(self._secret, body, request.headers.get("x-hub-signature-256")):
            return outcome(401, "missing or wrong X-Hub-Signature-256")
        if not delivery or not event:
            return outcome(400, "X-GitHub-Event and X-GitHub-Delivery are required")
        if len(delivery) > MAX_HEADER or len(event) > MAX_HEADER:
            return outcome(400, f"X-GitHub-Event and X-GitHub-Delivery have at most {MAX_HEADER} characters")
        try:
            payload = decode_payload(body, request.headers.get("content-type"))
            translation = translate(event, delivery, payload, self.targets, occurred=datetime.now(UTC))
        except UnsupportedContentType as error:
            return outcome(415, str(error))
        except PayloadError as error:
            return outcome(400, str(error))
        if translation.ignored is not None:
            return outcome(200, f"ignored: {translation.ignored}")
        failure = await self._post(translation.events)
        if failure is not None:
            return outcome(502, f"Prefect did not take the events: {failure}")
        ids = [e["id"] for e in translation.events]
        routes = ", ".join(str(e["resource"].get("fragalysis.environment", "-")) for e in translation.events)
        return outcome(202, f"posted {len(ids)} event(s), environment {routes}", events=ids)

    async def _read_body(self, request: Request) -> bytes:
        # Content-Length first, so an announced oversize body is refused unread; without one (chunked), count
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _TooLarge
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    async def _post(self, events: list[dict[str, Any]]) -> str | None:
        """POST the events to Prefect; None when it took them, else what went wrong (never the auth header)."""
        if self._http is None:
            return "the receiver is stopping"
        try:
            response = await self._http.post(self.events_url, json=events)
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}"
        if response.status_code >= 300:
            return f"POST {self.events_url} answered {response.status_code}: {response.text[:300]}"
        return None


__all__ = ["MAX_BODY_BYTES", "PATH", "Receiver", "ReceiverConfigError", "auth_header", "webhook_secret"]
