"""AWX's websocket, ``/websocket/``: the channel through which AWX pushes job status changes to its UI.

Follows docs/facts-awx-websocket.md (AWX 24's ``awx/main/consumers.py`` ``EventConsumer`` behind django-ansible-base's
``DrfAuthMiddlewareStack``):

- the handshake is authenticated like a REST request (a login session cookie, ``Authorization: Bearer <token>`` or
  Basic); without valid credentials it is refused (HTTP 403, channels' ``WebsocketDenier``);
- once accepted the server says ``{"accept": true, "user": <id>}`` and keeps the ``csrftoken`` cookie of the
  handshake; every message the client sends must carry that value as ``xrftoken``, else the answer is
  ``{"error": "access denied to channel"}``;
- ``{"groups": {"jobs": ["status_changed"]}, "xrftoken": ...}`` replaces the connection's subscriptions and is
  answered with ``groups_current``/``groups_left``/``groups_joined``;
- every job status change is pushed to group ``jobs-status_changed`` as ``UnifiedJob._websocket_emit_status`` builds
  it (``unified_job_id``, ``status``, ``type``, ``group_name``, ``unified_job_template_id``, plus
  ``instance_group_name`` when waiting and ``finished`` when successful, failed or canceled).

``jobs-summary`` (``group_name``, ``unified_job_id``, ``final_counter``) is pushed when a job's events are all stored
(``event_processing_finished``), as AWX's callback receiver does on a job's EOF. Job events (``job_events-<id>``) may
be subscribed to but are not pushed (see README).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable
from typing import Any

from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket, WebSocketDisconnect

from sandbox.awx.models import Job, JobStatus

PATH = "/websocket/"
SESSION_COOKIE = "awx_sessionid"
"""AWX's ``SESSION_COOKIE_NAME`` (sent to clients in ``X-API-Session-Cookie-Name``)."""
XRF_DENIED = {"error": "access denied to channel"}
FINISHED_STATUSES = (JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELED)
"""The statuses whose message carries ``finished`` (AWX leaves it out for ``error``)."""
_CLOSE = object()


def status_message(job: Job) -> dict[str, Any]:
    """The ``jobs-status_changed`` message for the job's current status, as AWX builds it."""
    data: dict[str, Any] = {"unified_job_id": job.id, "status": str(job.status)}
    if job.status == JobStatus.WAITING:
        data["instance_group_name"] = "default"
    elif job.status in FINISHED_STATUSES and job.finished is not None:
        data["finished"] = job.finished.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    data["type"] = "job"
    data["group_name"] = "jobs"
    data["unified_job_template_id"] = job.template.id
    return data


class _Connection:
    """One accepted websocket: its subscriptions, the ``csrftoken`` of its handshake, and its outgoing queue."""

    def __init__(self, websocket: WebSocket, csrftoken: str | None) -> None:
        self.websocket = websocket
        self.csrftoken = csrftoken
        self.groups: set[str] = set()
        self.outbox: asyncio.Queue[object] = asyncio.Queue()

    def send(self, message: dict[str, Any]) -> None:
        self.outbox.put_nowait(json.dumps(message))

    async def pump(self) -> None:
        """Send what is queued, in order (one writer, so that acknowledgements and pushes never interleave)."""
        while True:
            item = await self.outbox.get()
            if item is _CLOSE:
                await self.websocket.close(1001)
                return
            await self.websocket.send_text(str(item))


class AwxWebsocket:
    """The ``/websocket/`` endpoint and its groups.

    Args:
        user_id: the user the handshake authenticates as (None when it does not), from its cookies and headers.
    """

    def __init__(self, user_id: Callable[[HTTPConnection], int | None]) -> None:
        self._user_id = user_id
        self._connections: set[_Connection] = set()

    def publish(self, group: str, message: dict[str, Any]) -> None:
        """Push ``message`` to every connection subscribed to ``group`` (on the sandbox's loop)."""
        for connection in list(self._connections):
            if group in connection.groups:
                connection.send(message)

    def status_changed(self, job: Job) -> None:
        """Push the job's new status to ``jobs-status_changed``."""
        self.publish("jobs-status_changed", status_message(job))

    @property
    def connections(self) -> int:
        """How many websockets are open."""
        return len(self._connections)

    def events_processed(self, job: Job) -> None:
        """Push ``jobs-summary``: the callback receiver has stored every event of the job (its EOF)."""
        self.publish("jobs-summary", {"group_name": "jobs", "unified_job_id": job.id, "final_counter": len(job.events)})

    def close_all(self) -> None:
        for connection in list(self._connections):
            connection.outbox.put_nowait(_CLOSE)

    async def endpoint(self, websocket: WebSocket) -> None:
        user = self._user_id(websocket)
        if user is None:
            # closing before accepting refuses the handshake with HTTP 403 (channels' WebsocketDenier)
            await websocket.close()
            return
        await websocket.accept()
        connection = _Connection(websocket, websocket.cookies.get("csrftoken"))
        self._connections.add(connection)
        connection.send({"accept": True, "user": user})
        pump = asyncio.create_task(connection.pump())
        try:
            while True:
                text = await websocket.receive_text()
                try:
                    data = json.loads(text)
                except ValueError:
                    break  # AsyncJsonWebsocketConsumer raises on a frame that is not JSON: the connection ends
                if isinstance(data, dict):
                    self._receive(connection, data)
        except WebSocketDisconnect:
            pass
        finally:
            self._connections.discard(connection)
            if not pump.done():
                # let what is queued go out before the connection ends
                with contextlib.suppress(Exception):
                    connection.outbox.put_nowait(_CLOSE)
                    await asyncio.wait_for(pump, timeout=1.0)
            pump.cancel()

    def _receive(self, connection: _Connection, data: dict[str, Any]) -> None:
        """``EventConsumer.receive_json``: the XRF check, then a new set of groups replacing the old one."""
        xrftoken = data.get("xrftoken")
        if (
            not xrftoken
            or connection.csrftoken is None
            or not secrets.compare_digest(str(xrftoken), connection.csrftoken)
        ):
            connection.send(XRF_DENIED)
            return
        if "groups" not in data:
            return
        groups = data["groups"]
        if not isinstance(groups, dict):
            connection.send(XRF_DENIED)
            return
        wanted: set[str] = set()
        for group, names in groups.items():
            if not isinstance(names, list):
                connection.send(XRF_DENIED)  # "groups must be a list"
                return
            wanted.update(f"{group}-{name}" for name in names)
        left = connection.groups - wanted
        joined = wanted - connection.groups
        connection.groups = wanted
        connection.send(
            {"groups_current": sorted(wanted), "groups_left": sorted(left), "groups_joined": sorted(joined)}
        )
