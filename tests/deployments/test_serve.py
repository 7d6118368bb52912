"""``fragalysis-cd serve --sandbox --state-dir DIR`` as a user runs it: two pushes with ``python -m sandbox push`` and
nothing else end in a Completed staging run and a production run waiting for approval; five quick commits, as
webhooks, make two deploys (the first and the newest) and three superseded; SIGTERM stops everything it started (no
process left, every port free). It runs with ``PREFECT_SERVER_API_AUTH_STRING`` set: the API refuses a request
without it, and everything serve starts (runner, flow runs, receiver) sends it."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
FINAL = {"Completed", "Failed", "Crashed", "Cancelled"}
AUTH_STRING = "admin:serve-test-auth-string"
"""The server's ``PREFECT_SERVER_API_AUTH_STRING``; Prefect's clients send it as HTTP Basic credentials."""
AUTHORIZED = {"Authorization": "Basic " + base64.b64encode(AUTH_STRING.encode()).decode()}


def prefect_api(api: str) -> httpx.Client:
    """A client of serve's Prefect API, sending the auth string."""
    return httpx.Client(base_url=api, headers=AUTHORIZED, timeout=10)


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
    env["PREFECT_SERVER_API_AUTH_STRING"] = AUTH_STRING
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
    with prefect_api(api) as client:
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
    # the blocks hold secrets: without the auth string the API refuses, as it does a wrong one
    refused = httpx.post(f"{api}/block_documents/filter", json={"include_secrets": True}, timeout=10)
    assert refused.status_code == 401
    wrong = {"Authorization": "Basic " + base64.b64encode(b"admin:guess").decode()}
    assert httpx.post(f"{api}/block_documents/filter", json={}, headers=wrong, timeout=10).status_code == 401
    with prefect_api(api) as client:
        names = {d["name"] for d in client.post("/block_documents/filter", json={}).raise_for_status().json()}
        settings = client.get("/admin/settings").raise_for_status().json()
    assert {"staging", "production", "sandbox-github"} <= names
    # the deployment events are part of the delivery history: kept 90 days, not Prefect's default 7
    assert settings["server"]["events"]["retention_period"] == "P90D"

    sha = push(serve.state, "xchem/fragalysis-frontend", "staging")
    staging = serve.wait_for(lambda: state_of(api, "deploy-to-staging/staging", *FINAL), "the staging run", 240)
    assert staging["state"]["name"] == "Completed", staging["state"]
    assert staging["parameters"] == {
        "target": "staging",
        "source": "frontend",
        "sha": sha,
        "requested_at": staging["parameters"]["requested_at"],
    }

    five_quick_commits(serve, api, endpoints)

    push(serve.state, "xchem/fragalysis-stack", "refs/tags/1.0.3")
    production = serve.wait_for(
        lambda: state_of(api, "deploy-to-production/production", "Suspended", *FINAL), "the production run", 240
    )
    assert production["state"]["name"] == "Suspended", "it waits for an approval"
    assert production["parameters"] == {
        "target": "production",
        "tag": "1.0.3",
        "requested_at": production["parameters"]["requested_at"],
    }
    assert len(runs(api, "deploy-to-staging/staging")) == 6, "the tag started no staging deploy"

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


def quick_push(endpoints: dict[str, Any], message: str) -> str:
    """A frontend staging commit through the sandbox's control endpoint (what ``python -m sandbox push`` calls), fast
    enough for five in a row."""
    body = {"repository": "xchem/fragalysis-frontend", "ref": "staging", "sha": None, "message": message}
    response = httpx.post(f"{endpoints['github']['url']}/_sandbox/push", json=body, timeout=10)
    return str(response.raise_for_status().json()["sha"])


def task_runs(api: str, flow_run_id: str) -> list[dict[str, Any]]:
    with prefect_api(api) as client:
        body = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
        return list(client.post("/task_runs/filter", json=body).raise_for_status().json())


def error_logs(api: str, flow_run_id: str) -> list[str]:
    """The run's log lines at ERROR or above."""
    with prefect_api(api) as client:
        body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}, "level": {"ge_": 40}}}
        return [log["message"] for log in client.post("/logs/filter", json=body).raise_for_status().json()]


def awx_jobs(endpoints: dict[str, Any]) -> list[dict[str, Any]]:
    awx = endpoints["awx"]
    headers = {"Authorization": f"Bearer {awx['token']}"}
    url = f"{awx['url']}{awx['api_path']}jobs/"
    return list(httpx.get(url, headers=headers, timeout=10).raise_for_status().json()["results"])


def five_quick_commits(serve: Served, api: str, endpoints: dict[str, Any]) -> None:
    """Five quick staging commits, as webhooks: two deploys (the first, already running, and the newest commit) and
    three Cancelled "superseded" having done nothing. The automations may create the runs of deliveries a few ms apart
    in another order than the pushes: the newest is the newest push (``requested_at``), whatever the creation order."""
    jobs_before = len(awx_jobs(endpoints))
    known = {run["id"] for run in runs(api, "deploy-to-staging/staging")}

    def new_runs(count: int) -> list[dict[str, Any]] | None:
        time.sleep(0.2)
        found = [run for run in runs(api, "deploy-to-staging/staging") if run["id"] not in known]
        return sorted(found, key=lambda run: run["parameters"]["requested_at"]) if len(found) >= count else None

    shas = [quick_push(endpoints, "change 1")]
    (first,) = serve.wait_for(lambda: new_runs(1), "the first commit's run", 120)

    def building() -> bool:
        time.sleep(0.2)
        return any(task["name"].startswith("build stack") for task in task_runs(api, first["id"]))

    serve.wait_for(building, "the first deploy to hold staging (its stack build)", 120)
    shas += [quick_push(endpoints, f"change {n}") for n in range(2, 6)]
    ordered = serve.wait_for(lambda: new_runs(5), "a run for each commit", 120)
    assert [run["parameters"]["sha"] for run in ordered] == shas, "one run per commit, requested in push order"

    def ended() -> list[dict[str, Any]] | None:
        found = new_runs(5)
        return found if found and all(run["state"]["name"] in FINAL for run in found) else None

    final = serve.wait_for(ended, "the five runs to end", 300)
    states = [run["state"] for run in final]
    assert states[0]["name"] == "Completed", states[0]
    assert states[4]["name"] == "Completed", f"the newest commit is deployed: {states[4]}"
    for index in (1, 2, 3):
        assert states[index]["name"] == "Cancelled", states[index]
        later = {
            f"superseded by frontend@{final[n]['parameters']['sha'][:7]} (flow run {final[n]['id']})"
            for n in range(index + 1, 5)
        }
        assert states[index]["message"] in later, states[index]["message"]
        assert task_runs(api, final[index]["id"]) == [], "a superseded deploy does nothing"
        assert error_logs(api, final[index]["id"]) == [], "ending superseded is no error"
    assert len(awx_jobs(endpoints)) == jobs_before + 2, "two launches"
