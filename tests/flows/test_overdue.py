"""The overdue automation on a real ``prefect server start`` (the test harness runs no proactive triggers): a deploy
stuck in a pending AWX job fires it while it still runs, and it notifies with the run's facts; a run resumed after a
suspension gets a fresh window, and a suspended or finished one none."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from blocks import Budgets
from deployments.automations import ensure_overdue_automation, overdue_automation_name, overdue_events
from deployments.prefect_server import LocalPrefectServer
from deployments.sandbox_target import sandbox_target
from sandbox.runtime import Sandbox
from tests.conftest import free_port, wait_for
from tests.flows.conftest import SPEED, scenario
from tests.flows.test_notify import facts, target, webhook

ROOT = Path(__file__).resolve().parents[2]
STAGING_VC = "Staging Fragalysis Stack (Version Change)"
STAGES = {"starting", "source build", "stack build", "image", "AWX job"}


@pytest.fixture
def real_server(tmp_path: Path, prefect_home: Callable[[Path], Path]) -> Iterator[LocalPrefectServer]:
    server = LocalPrefectServer(prefect_home(tmp_path / "prefect-home"), port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def talking_to(server: LocalPrefectServer) -> Iterator[None]:
    """This process's Prefect client talks to ``server`` (whatever test server the session runs)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server.api_url, PREFECT_UI_URL: server.ui_url}):
        yield


def post_event(server: LocalPrefectServer, name: str, run: UUID, deployment: UUID) -> str:
    """A flow-run state event of a run of ``deployment``, as the server itself emits them; its id."""
    event_id = str(uuid4())
    event = {
        "id": event_id,
        "occurred": datetime.now(UTC).isoformat(),
        "event": f"prefect.flow-run.{name}",
        "resource": {"prefect.resource.id": f"prefect.flow-run.{run}", "prefect.state-name": name},
        "related": [{"prefect.resource.id": f"prefect.deployment.{deployment}", "prefect.resource.role": "deployment"}],
        "payload": {},
    }
    httpx.post(f"{server.api_url}/events", json=[event], timeout=10).raise_for_status()
    return event_id


def overdue_runs(automation_id: UUID) -> list[str]:
    return [event.payload["triggering_labels"]["prefect.resource.id"] for event in overdue_events(automation_id)]


class Windows:
    """Runs of a deployment that does not exist, told through the state events the server emits for flow runs: one
    resumed after a suspension, one left suspended, one finished. Only the resumed one may fire, from its resume."""

    def __init__(self, server: LocalPrefectServer) -> None:
        self.server = server
        self.deployment = uuid4()
        self.resumed, self.suspended, self.finished = uuid4(), uuid4(), uuid4()
        self.resume = ""
        quick = target(budgets=Budgets(total=10.0))
        self.automation_id = ensure_overdue_automation(self.deployment, quick)
        assert ensure_overdue_automation(self.deployment, quick) == self.automation_id, "updated in place"
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            assert len(client.read_automations_by_name(overdue_automation_name(self.deployment))) == 1

    def tell(self) -> None:
        for run in (self.resumed, self.suspended, self.finished):
            post_event(self.server, "Running", run, self.deployment)
        time.sleep(1.0)
        post_event(self.server, "Suspended", self.resumed, self.deployment)
        post_event(self.server, "Suspended", self.suspended, self.deployment)
        post_event(self.server, "Completed", self.finished, self.deployment)
        time.sleep(2.0)
        self.resume = post_event(self.server, "Running", self.resumed, self.deployment)

    def check(self) -> None:
        fired = wait_for(lambda: overdue_runs(self.automation_id), "the overdue automation to fire", deadline=90)
        # the other runs' windows opened before the resumed run's and ended first: had they fired, they would have
        assert fired == [f"prefect.flow-run.{self.resumed}"]
        (event,) = overdue_events(self.automation_id)
        assert event.payload["triggering_event"]["id"] == self.resume, "the window ran from the resume"
        assert event.resource["prefect.resource.name"] == overdue_automation_name(self.deployment)


@contextmanager
def served_staging(name: str, server: LocalPrefectServer) -> Iterator[str]:
    """The staging flow served as deployment ``deploy-to-staging/<name>``, polling every second."""
    code = (
        "import sys; from prefect import serve; from flows.staging import deploy_to_staging; "
        "serve(deploy_to_staging.to_deployment(name=sys.argv[1]), limit=2)"
    )
    env = {**os.environ, **server.environment(), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", code, name],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield f"deploy-to-staging/{name}"
    finally:
        # the run is still waiting for its AWX job: stop it with the process that runs it
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_deploy_stuck_past_its_budget_is_announced_while_it_runs_and_approval_waits_do_not_count(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path, receiver: tuple[str, list[Any]], real_server
):
    """A staging deploy whose AWX job stays pending, with a total budget of 12 s: the automation fires while the
    run still runs, posts its event and notifies with the run's facts. Meanwhile (one server start is most of this
    test's time), state events of other runs show how windows open and close (``Windows``)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    url, received = receiver
    sb = make_sandbox(scenario(), speed=SPEED, faults={"awx_jobs": [{"template": STAGING_VC, "outcome": "pending"}]})
    sb.write_state(tmp_path)
    # the whole deploy may take 12 s; the pending AWX job is waited for far longer than that
    budgets = Budgets(wait_factor=6.0).scaled(SPEED).model_copy(update={"total": 12.0, "awx_start": 60.0})
    with talking_to(real_server):
        block = webhook(url, "overdue-hook")
        stuck = sandbox_target(sb.endpoints(tmp_path.resolve()), budgets=budgets).model_copy(
            update={"notification_block": block, "notify_on": ["overdue"]}
        )
        stuck.save("staging-stuck", overwrite=True)
        sha = sb.push("xchem/fragalysis-frontend", "staging", message="this one hangs")
        windows = Windows(real_server)

        with served_staging("overdue", real_server) as full_name:

            def deployment() -> Any:
                with get_client(sync_client=True) as client:
                    try:
                        return client.read_deployment_by_name(full_name)
                    except Exception:
                        return None

            deployment_id = wait_for(deployment, f"{full_name} to be served", deadline=120).id
            automation_id = ensure_overdue_automation(deployment_id, stuck)
            run = run_deployment(
                full_name, parameters={"source": "frontend", "sha": sha, "target": "staging-stuck"}, timeout=0
            )
            windows.tell()  # while the served deploy starts

            wait_for(lambda: received, "the overdue notification", deadline=150)
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(run.id).state
            assert state is not None
            assert state.is_running(), f"it fired before the run ended, not {state.name}"
            fired = wait_for(lambda: overdue_runs(automation_id), "the prefect.automation.triggered event")
            assert fired == [f"prefect.flow-run.{run.id}"]

            def stage() -> str | None:
                with get_client(sync_client=True) as client:
                    found = client.read_flow_run(run.id).labels.get("fragalysis.stage")
                return found if found == "AWX job" else None

            wait_for(stage, "the run to wait for its AWX job", deadline=120)
            windows.check()
            # while it is served: stopping serve cancels its runs, and a cancelled deploy cancels its AWX job
            assert [job["status"] for job in sb.call(sb.awx.jobs)] == ["pending"]

    (message,) = [json.loads(body) for _, body in received]
    assert message["subject"] == f"[fragalysis] staging deploy OVERDUE: frontend@{sha[:7]}"
    body = message["body"]
    assert body.startswith("staging deploy still running past its total budget (12.0 s at speed 200 = ")
    lines = facts(body)
    assert lines["environment"] == "staging"
    assert lines["change"] == f"commit {sha}"
    assert lines["stage"] in STAGES, lines
    digest = sb.call(sb.registry.resolve, "xchem/fragalysis-stack:latest")
    if lines["stage"] == "AWX job":
        assert lines["digest"] == digest
    else:
        assert lines["digest"] == "not read yet"
    assert lines["run"] == f"{real_server.ui_url}/runs/flow-run/{run.id}"
