"""``fragalysis-cd serve --sandbox --state-dir DIR`` as a user runs it: two pushes with ``python -m sandbox push`` and
nothing else end in a Completed staging run and a production run waiting for approval; SIGTERM stops everything it
started (no process left, every port free)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
FINAL = {"Completed", "Failed", "Crashed", "Cancelled"}


def children() -> dict[int, int]:
    """Every process's parent, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    return parents


def descendants(pid: int) -> dict[int, str]:
    """The descendants of ``pid`` by pid, with their start time (to tell a reused pid apart)."""
    parents = children()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {p: s for p in found if (s := start_time(p)) is not None}


def start_time(pid: int) -> str | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def port_is_free(url: str) -> bool:
    """Nothing listens there: a server's bind (SO_REUSEADDR, as they all do, so TIME_WAIT does not count) works."""
    host, _, port = httpx.URL(url).netloc.decode().rpartition(":")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
        except OSError:
            return False
    return True


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    state: Path
    log: Path

    def wait_for(self, check: Callable[[], Any], what: str, deadline: float) -> Any:
        """``wait_for`` that shows serve's output when it times out."""
        try:
            return wait_for(check, what, deadline)
        except AssertionError as error:
            raise AssertionError(f"{error}; serve's output ends:\n{self.log.read_text()[-4000:]}") from None


@pytest.fixture
def serve(tmp_path: Path, prefect_home: Callable[[Path], Path]) -> Iterator[Served]:
    """``fragalysis-cd serve --sandbox`` in the background (stopped at the end if the test has not)."""
    state = tmp_path / "state"
    log = (tmp_path / "serve.log").open("wb")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    command = [
        str(Path(sys.executable).with_name("fragalysis-cd")),
        "serve",
        "--sandbox",
        "--state-dir",
        str(state),
        "--home",
        str(prefect_home(tmp_path / "prefect-home")),
        "--port",
        str(free_port()),
        "--receiver-port",
        "0",
        "--speed",
        "200",
    ]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield Served(process, state, tmp_path / "serve.log")
    finally:
        if process.poll() is None:
            left = descendants(process.pid)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
            for pid, started in left.items():
                if start_time(pid) == started:
                    os.kill(pid, signal.SIGKILL)
        log.close()


def push(state: Path, repository: str, ref: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "push", repository, ref, "--state-dir", str(state)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return str(json.loads(result.stdout)["sha"])


def runs(api: str, deployment: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=api, timeout=10) as client:
        deployment_id = client.get(f"/deployments/name/{deployment}").raise_for_status().json()["id"]
        body = {"deployments": {"id": {"any_": [deployment_id]}}}
        return list(client.post("/flow_runs/filter", json=body).raise_for_status().json())


def state_of(api: str, deployment: str, *names: str) -> dict[str, Any] | None:
    found = runs(api, deployment)
    return found[0] if len(found) == 1 and found[0]["state"]["name"] in names else None


def test_serve_sandbox_pushes_deploy_and_sigterm_stops_everything(serve: Served):
    endpoints_file = serve.state / "endpoints.json"

    def ready() -> dict[str, Any] | None:
        assert serve.process.poll() is None, f"serve exited: {serve.log.read_text()[-4000:]}"
        if not endpoints_file.is_file():
            return None
        endpoints = json.loads(endpoints_file.read_text())
        return endpoints if "receiver" in endpoints else None

    endpoints = serve.wait_for(ready, "serve to write endpoints.json with its receiver", deadline=300)
    api = endpoints["prefect"]["api_url"]

    sha = push(serve.state, "xchem/fragalysis-frontend", "staging")
    staging = serve.wait_for(lambda: state_of(api, "deploy-to-staging/staging", *FINAL), "the staging run", 240)
    assert staging["state"]["name"] == "Completed", staging["state"]
    assert staging["parameters"] == {"target": "staging", "source": "frontend", "sha": sha}

    push(serve.state, "xchem/fragalysis-stack", "refs/tags/1.0.3")
    production = serve.wait_for(
        lambda: state_of(api, "deploy-to-production/production", "Suspended", *FINAL), "the production run", 240
    )
    assert production["state"]["name"] == "Suspended", "it waits for an approval"
    assert production["parameters"] == {"target": "production", "tag": "1.0.3"}
    assert len(runs(api, "deploy-to-staging/staging")) == 1, "the tag started no staging deploy"

    started = descendants(serve.process.pid)
    assert len(started) >= 2, "the Prefect server and the serving process at least"
    services = ("github", "awx", "registry", "kubernetes")
    urls = [api, endpoints["receiver"]["url"], *(endpoints[service]["url"] for service in services)]
    serve.process.send_signal(signal.SIGTERM)
    assert serve.process.wait(90) == 0
    left = [pid for pid, started_at in started.items() if start_time(pid) == started_at]
    assert not left, f"processes left behind: {left}"
    busy = [url for url in urls if not port_is_free(url)]
    assert not busy, f"ports still taken: {busy}"
