"""Approval through a served deployment: the waiting run is suspended (it holds no process and not its environment),
superseded by a newer tag, approved or rejected through the API; on a real Prefect server, no decision in time ends it
Cancelled."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from blocks import StackTarget
from sandbox.runtime import Sandbox
from tests.flows.conftest import SPEED, deployment_events, scenario, target_name
from tests.flows.served import ENDED, ROOT, served, state_of
from tests.flows.served import start as start_run
from tests.flows.test_notify import messages, webhook

pytestmark = pytest.mark.prefect

PRODUCTION = "flows.production:deploy_to_production"
STACK = "xchem/fragalysis-stack"


def start(full_name: str, target: StackTarget, tag: str) -> UUID:
    return start_run(full_name, tag=tag, target=target_name(target))


def test_a_served_run_is_suspended_for_approval_holds_nothing_and_a_newer_tag_supersedes_it(
    make_sandbox: Callable[..., Sandbox], deploy_target, receiver
):
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL

    url, received = receiver
    sb = make_sandbox(scenario(), speed=SPEED)
    block = webhook(url, f"approval-{uuid4().hex[:8]}")
    target = deploy_target(
        sb, environment="production", label="production-served", notification_block=block, notify_on=["superseded"]
    )
    assert target.asks_approval, "production asks for approval by default"
    sb.push(STACK, "refs/tags/1.0.3", message="Release 1.0.3")

    with served(PRODUCTION, "served-approval", str(PREFECT_API_URL.value())) as full_name:
        oldest = start(full_name, target, "1.0.3")
        state_of(oldest, "Suspended")
        # production holds one deploy at a time: a newer run gets the environment because the suspended one gave
        # it back, and ends the older one's wait (it has no process to notice)
        second = start(full_name, target, "1.0.3")
        assert state_of(second, "Suspended").is_paused()
        superseded = state_of(oldest, *ENDED)
        assert not sb.call(sb.awx.jobs), "nothing is launched before a decision"

        resume_flow_run(second, run_input={"decision": "reject", "who": "bob", "comment": "not this one"})
        rejected = state_of(second, *ENDED, deadline=240)
        first = start(full_name, target, "1.0.3")
        asked = state_of(first, "Suspended")
        # the image changes under the tag while the first question is open: that answer was about another digest
        repushed = sb.call(sb.registry.push_image, STACK, ["1.0.3"])
        resume_flow_run(first, run_input={"decision": "approve", "who": "ana", "comment": "release notes read"})
        again = state_of(first, "Suspended", "Completed", "Failed", "Crashed", deadline=240, other_than=asked)
        assert again.is_paused(), "a new digest asks again"
        assert again.state_details.pause_key != asked.state_details.pause_key
        resume_flow_run(first, run_input={"decision": "approve", "who": "ana", "comment": "the new digest too"})
        approved = state_of(first, "Completed", "Failed", "Crashed", deadline=240)
        assert approved.is_completed(), approved.message
        pods = sb.call(sb.kubernetes.pods, "production-stack", {"name": "stack"})
        assert {p["status"]["containerStatuses"][0]["imageID"].rpartition("@")[2] for p in pods} == {repushed}

    assert superseded.is_cancelled(), superseded
    assert superseded.message == f"superseded by 1.0.3 (flow run {second})"
    (event,) = deployment_events(str(oldest), key="run_id")
    assert event.event == "fragalysis.deployment.superseded"
    # announced by the run that superseded it (the suspended one has no process), as its own outcome would be
    (superseded_message,) = [m for m in messages(received) if str(oldest) in m["body"]]
    assert superseded_message["subject"] == "[fragalysis] production-served deploy SUPERSEDED: tag 1.0.3"
    assert f"reason: superseded by 1.0.3 (flow run {second})" in superseded_message["body"]
    assert rejected.is_cancelled(), rejected
    assert rejected.message == "rejected by bob: not this one"
    jobs = sb.call(sb.awx.jobs)
    assert len(jobs) == 1, "one launch: the approved run's"
    assert jobs[0]["extra_vars"] == '{"stack_image_tag": "1.0.3"}'


@pytest.fixture
def real_prefect_server(tmp_path: Path, prefect_home: Callable[[Path], Path]) -> Iterator[str]:
    """A real ``prefect server start`` (the test harness runs no proactive triggers service), its API URL."""
    from deployments.prefect_server import LocalPrefectServer
    from tests.conftest import free_port

    server = LocalPrefectServer(prefect_home(tmp_path / "prefect-home"), port=free_port())
    server.start()
    try:
        yield server.environment()["PREFECT_API_URL"]
    finally:
        server.stop()


def test_no_decision_in_time_ends_the_run_cancelled(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path, real_prefect_server: str
):
    """On a real server: the timeout automation resumes the suspended run with no decision after the target's
    approval timeout, and the run ends Cancelled, deploying nothing."""
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from deployments.sandbox_target import sandbox_target
        from blocks import Budgets

        endpoints = json.loads(Path(sys.argv[1]).read_text())
        target = sandbox_target(endpoints, environment="production")
        target = target.model_copy(
            update={"approval_timeout_seconds": 12.0, "budgets": Budgets(wait_factor=6.0).scaled(endpoints["speed"])}
        )
        target.save("production-timeout", overwrite=True)
        """
    )
    sb = make_sandbox(scenario(), speed=SPEED)
    sb.write_state(tmp_path / "sandbox")
    sb.push(STACK, "refs/tags/1.0.3")
    env = {**os.environ, "PREFECT_API_URL": real_prefect_server}
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "sandbox" / "endpoints.json")], cwd=ROOT, env=env, check=True
    )
    waiter = textwrap.dedent(
        """
        import sys, time
        from prefect.client.orchestration import get_client
        from prefect.deployments import run_deployment
        from flows.approval import ensure_timeout_automation

        with get_client(sync_client=True) as client:
            for _ in range(240):
                try:
                    deployment = client.read_deployment_by_name(sys.argv[1])
                    break
                except Exception:
                    time.sleep(0.5)
        ensure_timeout_automation(deployment.id, 12.0)
        run = run_deployment(sys.argv[1], parameters={"tag": "1.0.3", "target": "production-timeout"}, timeout=240)
        print(run.state.name, "|", run.state.message)
        """
    )
    with served(PRODUCTION, "served-timeout", real_prefect_server):
        result = subprocess.run(
            [sys.executable, "-c", waiter, "deploy-to-production/served-timeout"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "Cancelled | no decision within 12.0 s (40 min at speed 200)"
    assert not sb.call(sb.awx.jobs), "nothing was launched"
