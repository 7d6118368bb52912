"""One deploy per environment, newest wins; and cancelling a deploy cancels its AWX job. Through a served deployment,
as the triggers and the poller start them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

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


def task_names(flow_run_id: UUID) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return [run.name for run in runs]


def test_five_quick_commits_make_two_deploys_and_three_superseded(make_sandbox: Callable[..., Sandbox], deploy_target):
    from prefect.settings import PREFECT_API_URL

    sb = make_sandbox(scenario(), speed=SPEED)
    target = deploy_target(sb, label="staging-newest")
    shas = [sb.push(FRONTEND, "staging", message=f"change {n}") for n in range(5)]

    with served(STAGING, "newest-wins", str(PREFECT_API_URL.value())) as full_name:
        runs = [start(full_name, source="frontend", sha=shas[0], target=target_name(target))]
        # the first deploy holds staging before the others come
        wait_for(lambda: time.sleep(0.2) or stack_builds(sb), "the first deploy to dispatch the stack build", 120)
        runs += [start(full_name, source="frontend", sha=sha, target=target_name(target)) for sha in shas[1:]]
        ended = {run: state_of(run, *ENDED, deadline=300) for run in runs}

    first, *middle, newest = runs
    assert ended[first].is_completed(), ended[first].message
    assert ended[newest].is_completed(), ended[newest].message
    for index, run in enumerate(middle, start=1):
        assert ended[run].is_cancelled(), ended[run]
        # by a newer run of the five: the newest, or one that was newer when it looked
        later = {f"superseded by frontend@{shas[n][:7]} (flow run {runs[n]})" for n in range(index + 1, 5)}
        assert ended[run].message in later, ended[run].message
        assert task_names(run) == [], "a superseded deploy does nothing, remote or not"
        (event,) = deployment_events(str(run), key="run_id")
        assert event.event == "fragalysis.deployment.superseded"
        assert not [a for a in artifacts_of(run) if a.key], "it leaves the environment's tables alone"
    jobs = sb.call(sb.awx.jobs)
    assert [job["extra_vars"] for job in jobs] == ['{"stack_image_tag": "latest"}'] * 2, "two launches"
    assert len(stack_builds(sb)) == 2, "two stack builds"
    pods = sb.call(sb.kubernetes.pods, "staging-stack", {"name": "stack"})
    latest = sb.call(sb.registry.resolve, "xchem/fragalysis-stack:latest")
    assert {p["status"]["containerStatuses"][0]["imageID"].rpartition("@")[2] for p in pods} == {latest}


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
    (table,) = [a for a in artifacts_of(run) if a.type == "table"]
    assert "cancelled" in (table.description or "")
    from prefect.variables import Variable

    assert Variable.get(f"fragalysis-launch-{run}", default=None) is None, "the launch record is done with"


def stack_builds(sb: Sandbox) -> list[Any]:
    """The stack builds dispatched so far."""
    return [run for run in list(sb.github.state.runs.values()) if run.event == "workflow_dispatch"]
