"""A Prefect client for the pipeline's own writes that tries a write again 0.1 s after the server was busy, not 2 s.

Prefect's server on SQLite answers 503 when a write meets another's lock ("database is locked"); the lock is gone in
milliseconds, but Prefect's client waits ``2 ** n`` seconds before each try again (2, 4, 8, 16, 32) unless the answer
says how long (``Retry-After``). A deploy's writes come in bursts (at the hand-off to the AWX job: the launch claim,
on the critical path, beside the task runs' states, the roll-out's progress artifact and the stage labels), and a
claim that met a lock made the deploy 2 s longer in about one run in two at speed 200 (benchmarks/README.md,
"Overhead"). ``BUSY_RETRY_SOON`` is httpx settings for ``get_client``: a response hook gives the first 503 of a
request without a ``Retry-After`` one of ``FIRST_RETRY_SECONDS``, so that Prefect's own retry loop tries once more
soon; a lock that lasts gets Prefect's backoff from then on (4, 8, 16, 32 s), as before. ``client()`` is a client
with those settings, one per process and API.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any

import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.settings import PREFECT_API_URL

FIRST_RETRY_SECONDS = 0.1
_SOONER = "fragalysis_cd.busy_retry_soon"


def _retry_soon(response: httpx.Response) -> None:
    request = response.request
    if response.status_code != 503 or "Retry-After" in response.headers or request.extensions.get(_SOONER):
        return
    request.extensions[_SOONER] = True  # Prefect sends the same request again: its next 503 keeps Prefect's wait
    response.headers["Retry-After"] = str(FIRST_RETRY_SECONDS)


BUSY_RETRY_SOON: dict[str, Any] = {"event_hooks": {"response": [_retry_soon]}, "timeout": 30.0}
"""``httpx_settings`` for ``prefect.client.orchestration.get_client``: a client of its own, not the run's (which is
closed when the run ends)."""

_clients: dict[str | None, SyncPrefectClient] = {}
_lock = threading.Lock()


def client() -> SyncPrefectClient:
    """This process's client with ``BUSY_RETRY_SOON`` for the API in force, opened once and kept (making one takes
    about 40 ms, on the way to the AWX launch; httpx's client is safe to share between threads)."""
    api = PREFECT_API_URL.value()
    with _lock:
        found = _clients.get(api)
        if found is None:
            found = _clients[api] = get_client(sync_client=True, httpx_settings=BUSY_RETRY_SOON)
            found.__enter__()
        return found


@atexit.register
def close() -> None:
    """Close the clients (at the process's exit, after the last labels: ``flows.progress`` registers its flush later,
    so it runs first; and before whoever runs flows in-process stops the Prefect server they talk to)."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for found in clients:
        found.__exit__(None, None, None)
