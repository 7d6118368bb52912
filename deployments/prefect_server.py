"""A local Prefect server for the demo: project-local ``PREFECT_HOME`` and its embedded SQLite database.

When ``PREFECT_SERVER_API_AUTH_STRING`` is set, the server requires it (Prefect's own check: HTTP Basic on every API
path but ``/health`` and ``/ready``), and ``environment()`` hands it to every client process as
``PREFECT_API_AUTH_STRING``: the blocks' secrets are readable by anyone who reaches an open API (FACTS.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import httpx

SERVER_AUTH = "PREFECT_SERVER_API_AUTH_STRING"
"""The server requires this (HTTP Basic) when it is set."""
CLIENT_AUTH = "PREFECT_API_AUTH_STRING"
"""What Prefect's clients send."""
RETENTION, RETENTION_ALIAS = "PREFECT_SERVER_EVENTS_RETENTION_PERIOD", "PREFECT_EVENTS_RETENTION_PERIOD"
EVENT_RETENTION = timedelta(days=90)
CLIENT_LOGGERS = "clients.github,clients.awx"
"""The clients' loggers whose lines go into a run's logs (``PREFECT_LOGGING_EXTRA_LOGGERS``)."""


def event_retention(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Keep events at least ``EVENT_RETENTION`` (Prefect's default is 7 days): the ``fragalysis.deployment.*`` events
    are part of the delivery history. A longer ``PREFECT_SERVER_EVENTS_RETENTION_PERIOD`` is left as it is, and so is
    one Prefect cannot read (it says so itself)."""
    from pydantic import TypeAdapter, ValidationError

    given = environ.get(RETENTION) or environ.get(RETENTION_ALIAS)
    if given:
        try:
            if TypeAdapter(timedelta).validate_python(given) >= EVENT_RETENTION:
                return {}
        except ValidationError:
            return {}
    return {RETENTION: f"P{EVENT_RETENTION.days}D"}


class LocalPrefectServer:
    """``prefect server start`` in its own process group, reused when one already answers on the port."""

    def __init__(self, home: Path, *, host: str = "127.0.0.1", port: int = 4200) -> None:
        self.home = home
        self.host = host
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environment(self) -> dict[str, str]:
        """What a client process needs to talk to this server (and to keep its state in the project), with the
        server's ``PREFECT_SERVER_API_AUTH_STRING`` as the client's ``PREFECT_API_AUTH_STRING`` when it is set."""
        auth = os.environ.get(SERVER_AUTH)
        return {
            **({CLIENT_AUTH: auth} if auth else {}),
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_UI_URL": self.ui_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # what the GitHub and AWX clients say beyond their requests (a build dispatched again, a launch found
            # after a lost answer) goes into the run's logs; clients.http's line per request does not
            "PREFECT_LOGGING_EXTRA_LOGGERS": os.environ.get(
                "PREFECT_LOGGING_EXTRA_LOGGERS", "clients.github,clients.awx"
            ),
        }

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout: float = 90.0) -> bool:
        """Start the server unless one already answers; returns True when this call started it."""
        if self.healthy():
            return False
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.home / "server.log"
        prefect = Path(sys.executable).with_name("prefect")
        with log.open("ab") as output:  # the server writes to its own copy of the file
            self.process = subprocess.Popen(
                [str(prefect), "server", "start", "--host", self.host, "--port", str(self.port)],
                env={**os.environ, **self.environment(), **event_retention()},
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return True
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited with {self.process.returncode}: see {log}")
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"prefect server did not answer within {timeout:.0f} s: see {log}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # the server runs uvicorn in child processes: signal the whole group
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
