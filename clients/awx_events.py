"""AWX's websocket as a wake-up call while following a job (docs/facts-awx-websocket.md).

AWX pushes ``jobs-status_changed`` messages to its UI over ``/websocket/`` (and ``jobs-summary`` once a job's
events are all stored); AWX 24 authenticates that handshake
as it does a REST request (``Authorization: Bearer <token>`` or Basic). A ``StatusWatch`` listens there for one
job's messages and sets an event on each, which wakes the follow's poll at once. The poll stays the source of
truth: a message is only a reason to read the job now. A websocket that is refused, absent (an older AWX, a proxy
that does not pass it) or dropped ends the watch with one debug log, and the follow polls as it always did.
"""

from __future__ import annotations

import json
import logging
import secrets
import ssl
import threading
from collections.abc import Mapping
from typing import Any

from websockets.sync.client import connect
from websockets.sync.connection import Connection

from clients.http import USER_AGENT

__all__ = ["StatusWatch", "websocket_url"]

logger = logging.getLogger(__name__)
_WIRE = logging.getLogger(f"{__name__}.wire")
# websockets logs every line of the handshake at DEBUG, the Authorization header (the token) among them: never
# let its logger reach DEBUG, whatever the root logger's level
_WIRE.setLevel(logging.INFO)

OPEN_TIMEOUT_SECONDS = 5.0
"""How long the handshake and AWX's ``accept`` may take before the watch gives up (the poll goes on meanwhile)."""


def websocket_url(base_url: str, path: str) -> str:
    """``ws://`` or ``wss://`` for the server at ``base_url`` (``https://awx.example.org``) and ``path``."""
    scheme, _, rest = base_url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{'wss' if scheme == 'https' else 'ws'}://{host}/{path.lstrip('/')}"


class StatusWatch:
    """Sets ``wake`` whenever AWX's websocket says the status of job ``job_id`` changed, or that its events are all
    stored (``jobs-summary``, which AWX sends when event processing has finished).

    Args:
        url: the websocket's URL (``websocket_url``).
        job_id: the job to watch.
        wake: the event to set on each of its status messages.
        authorization: the ``Authorization`` header value (the client's token or Basic credentials); never logged.
        verify: verify TLS (True), not (False), or the path of a CA bundle (for ``wss://``).
    """

    def __init__(
        self,
        url: str,
        job_id: int,
        wake: threading.Event,
        *,
        authorization: str | None,
        verify: bool | str = True,
    ) -> None:
        self.url = url
        self.job_id = job_id
        self.wake = wake
        self.subscribed = threading.Event()
        """Set once AWX has acknowledged the subscription (from then on no status message is missed)."""
        self._authorization = authorization
        self._verify = verify
        self._connection: Connection | None = None
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"awx-websocket-job-{job_id}", daemon=True)

    def __repr__(self) -> str:
        return f"StatusWatch(url={self.url!r}, job_id={self.job_id})"

    @property
    def live(self) -> bool:
        """Subscribed and still listening: every status change of the job wakes ``wake`` (until it drops)."""
        return self.subscribed.is_set() and self._thread.is_alive() and not self._closing.is_set()

    def start(self) -> StatusWatch:
        """Connect and listen in a background thread; returns at once."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop listening and close the connection (waits briefly for the thread)."""
        self._closing.set()
        connection = self._connection
        if connection is not None:
            connection.close()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        # the XRF check: AWX wants every message's ``xrftoken`` to equal the handshake's ``csrftoken`` cookie; a
        # client with a token has no login cookie, so it picks a value of its own and sends it both ways
        xrftoken = secrets.token_urlsafe(24)
        headers = {"Cookie": f"csrftoken={xrftoken}"}
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        try:
            with connect(
                self.url,
                additional_headers=headers,
                user_agent_header=USER_AGENT,
                open_timeout=OPEN_TIMEOUT_SECONDS,
                close_timeout=1.0,
                ssl=self._ssl(),
                proxy=None,
                logger=_WIRE,
            ) as connection:
                self._connection = connection
                if self._closing.is_set():
                    return
                accepted = _message(connection.recv(timeout=OPEN_TIMEOUT_SECONDS))
                if not accepted.get("accept"):
                    raise ConnectionError(f"AWX did not accept the websocket: {_brief(accepted)}")
                connection.send(json.dumps({"groups": {"jobs": ["status_changed", "summary"]}, "xrftoken": xrftoken}))
                for text in connection:
                    self._on(_message(text))
                if not self._closing.is_set():
                    raise ConnectionError(f"AWX closed the websocket ({connection.close_code})")
        except Exception as error:  # any failure means: poll alone, as before
            if not self._closing.is_set():
                logger.debug(
                    "AWX websocket %s unavailable (%s: %s); following job %s by polling alone",
                    self.url,
                    type(error).__name__,
                    error,
                    self.job_id,
                )

    def _on(self, message: dict[str, Any]) -> None:
        if "error" in message:
            raise ConnectionError(f"AWX refused the subscription: {_brief(message)}")
        if "groups_current" in message:
            # a change between the follow's last read and now came before we listened: read once more
            self.subscribed.set()
            self.wake.set()
        elif message.get("group_name") == "jobs" and message.get("unified_job_id") == self.job_id:
            self.wake.set()

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.url.startswith("wss://"):
            return None
        if isinstance(self._verify, str):
            return ssl.create_default_context(cafile=self._verify)
        context = ssl.create_default_context()
        if not self._verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _message(text: str | bytes) -> dict[str, Any]:
    data = json.loads(text)
    return data if isinstance(data, dict) else {}


def _brief(message: Mapping[str, Any]) -> str:
    return json.dumps(dict(message))[:200]
