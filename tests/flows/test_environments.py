"""Cancelling a deploy through the API ends it well inside Prefect's SIGKILL grace and cancels its AWX job. Through a
served deployment, as the triggers and the poller start them. (Newest wins is tested end to end through webhooks in
tests/deployments/test_serve.py, and with a suspended production run in test_approval.py.)"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from sandbox.runtime import Sandbox
from tests.conftest import wait_for
from tests.flows.conftest import SPEED, artifacts_of, deployment_events, scenario, target_name
from tests.flows.served import ENDED, served, start, state_of

pytestmark = pytest.mark.prefect

STAGING = "flows.staging:deploy_to_staging"
FRONTEND = "xchem/fragalysis-frontend"
SIGKILL_GRACE = 30.0
"""Seconds Prefect's runner waits after SIGTERM before it kills a cancelled run's process (FACTS.md)."""


def test_cancelling_a_deploy_ends_it_quickly_and_cancels_its_awx_job(
    make_sandbox: Callable[..., Sandbox], deploy_target
):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.states import Cancelling

    # the AWX job stays pending, and the flow is patient with it (budgets x 100): it is cancelled while it waits
    pending = {"awx_jobs": [{"template": "Staging Fragalysis Stack (Version Change)", "outcome": "pending"}]}
    sb = make_sandbox(scenario(), speed=SPEED, faults=pending)
    target = deploy_target(sb, label="staging-cancel", wait_factor=100.0)
    sha = sb.push(FRONTEND, "staging", message="to be cancelled")

    with served(STAGING, "cancel", str(PREFECT_API_URL.value())) as full_name:
        run = start(full_name, source="frontend", sha=sha, target=target_name(target))
        launched = wait_for(lambda: time.sleep(0.2) or sb.call(sb.awx.jobs), "the AWX job's launch", 240)[0]
        asked = time.monotonic()
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run, Cancelling(message="cancelled by the test"))
        ended = state_of(run, *ENDED, deadline=120)
        took = time.monotonic() - asked

    assert ended.is_cancelled(), ended
    assert took < SIGKILL_GRACE / 2, f"the run ended {took:.1f} s after the cancel request: it waited for the SIGKILL"
    job = sb.call(sb.awx.job, launched["id"])
    assert job["status"] == "canceled", job["status"]
    (event,) = deployment_events(sha)
    assert event.event == "fragalysis.deployment.cancelled"
    assert event.payload["run_id"] == str(run)
    (table,) = [a for a in artifacts_of(run) if (a.key or "").endswith("-timings")]
    assert "cancelled" in (table.description or "")
    from prefect.variables import Variable

    assert Variable.get(f"fragalysis-launch-{run}", default=None) is None, "the launch record is done with"
