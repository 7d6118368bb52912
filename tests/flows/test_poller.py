"""The poller against the sandbox with its webhooks off (the default scenario has no webhook URL) and the test server.

Nothing serves the deployments here: ``run_deployment(timeout=0)`` only creates Scheduled runs, which the tests count
and whose parameters they read.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.variables import Variable

from blocks import StackTarget
from deployments.sandbox_target import sandbox_target
from flows.poller import WEBHOOK_GRACE, PollFailed, PollSummary, poll_github, seen_variable
from flows.production import deploy_to_production
from flows.staging import deploy_to_staging
from sandbox.runtime import FREE_PORTS, Sandbox
from tests.conftest import wait_for
from tests.flows.conftest import scenario

FRONTEND = "xchem/fragalysis-frontend"
BACKEND = "xchem/fragalysis-backend"
STACK = "xchem/fragalysis-stack"
numbers = itertools.count()


@pytest.fixture(scope="module")
def sandbox(prefect_server: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One sandbox for the module (the repositories' own chaining off, so pushes build but deploy nothing), with
    webhooks off: only the poller sees pushes. Each test starts from a baseline, so pushes of others do not count."""
    sb = Sandbox(scenario(chained=False), speed=60.0, ports=FREE_PORTS).start()
    try:
        assert sb.scenario.github.webhook.url is None
        sb.write_state(tmp_path_factory.mktemp("poller-sandbox"))
        yield sb
    finally:
        sb.stop()


@pytest.fixture(scope="module")
def targets(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, StackTarget]:
    """A staging and a production target for the sandbox, saved once (saving a block takes seconds of CPU)."""
    directory = tmp_path_factory.mktemp("poller-state")
    sandbox.write_state(directory)
    saved = {}
    for environment in ("staging", "production"):
        target = sandbox_target(sandbox.endpoints(directory.resolve()), environment=environment)
        name = f"poll-{environment}-{directory.name[-8:].lower().replace('_', '-')}"
        target = target.model_copy(update={"environment": name})  # a Variable of its own
        target.save(name, overwrite=True)
        saved[environment] = target
    return saved


def fresh(targets: dict[str, StackTarget], environment: str) -> StackTarget:
    """The module's target, with nothing remembered: its next poll records a baseline."""
    target = targets[environment]
    Variable.unset(seen_variable(target.environment))
    return target


def name_of(target: StackTarget) -> str:
    return target.environment  # saved under its environment's name


def a_deployment(flow: Any, target: StackTarget) -> str:
    """A deployment of ``flow`` for ``target`` that nothing serves; its ``flow/deployment`` name."""
    name = f"poll-test-{next(numbers)}"
    flow.to_deployment(name=name, parameters={"target": name_of(target)}).apply()
    return f"{flow.name}/{name}"


def runs_of(deployment: str) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[found.id]))
        )


def poll(target: StackTarget, **deployments: str) -> PollSummary:
    return poll_github(targets=[name_of(target)], **deployments)


def reads(sb: Sandbox, since: datetime, part: str) -> list[tuple[str, int]]:
    """The GitHub requests since ``since`` whose path has ``part``: (path, status)."""
    return [
        (record.path, record.status)
        for record in sb.requests("github")
        if record.started >= since and part in record.path
    ]


def test_a_new_branch_head_starts_one_staging_run_and_a_quiet_poll_is_all_304s(
    sandbox: Sandbox, targets: dict[str, StackTarget]
) -> None:
    target = fresh(targets, "staging")
    deployment = a_deployment(deploy_to_staging, target)

    first = poll(target, staging_deployment=deployment)
    assert (first.started, first.baselines) == ([], [name_of(target)])
    assert runs_of(deployment) == []  # installing the poller redeploys nothing
    remembered = Variable.get(seen_variable(target.environment))
    assert set(remembered["branches"]) == {"frontend", "backend", "stack"}

    sha = sandbox.push(FRONTEND, "staging")
    second = poll(target, staging_deployment=deployment)
    (started,) = second.started
    assert started.parameters == {"source": "frontend", "sha": sha, "target": name_of(target)}
    (run,) = runs_of(deployment)
    assert (str(run.id), run.parameters["source"], run.parameters["sha"]) == (started.flow_run_id, "frontend", sha)
    assert run.state_name == "Scheduled"
    assert run.idempotency_key == f"poll-{target.environment}-frontend-{sha}"
    assert sorted(second.unchanged) == [f"{BACKEND}@staging", f"{STACK}@master"]

    since = datetime.now(UTC)
    third = poll(target, staging_deployment=deployment)
    assert (third.started, third.already_started) == ([], [])
    assert len(runs_of(deployment)) == 1
    assert sorted(reads(sandbox, since, "/branches/")) == [
        (f"/repos/{BACKEND}/branches/staging", 304),
        (f"/repos/{FRONTEND}/branches/staging", 304),
        (f"/repos/{STACK}/branches/master", 304),
    ]
    assert Variable.get(seen_variable(target.environment))["branches"]["frontend"]["sha"] == sha


def test_a_head_that_a_webhook_already_started_is_not_started_again(
    sandbox: Sandbox, targets: dict[str, StackTarget]
) -> None:
    target = fresh(targets, "staging")
    deployment = a_deployment(deploy_to_staging, target)
    poll(target, staging_deployment=deployment)

    sha = sandbox.push(BACKEND, "staging")
    # as the webhook's trigger does: a run of the deployment with the push's source and sha
    webhook_run = run_deployment(deployment, parameters={"source": "backend", "sha": sha}, timeout=0)
    summary = poll(target, staging_deployment=deployment)
    assert summary.started == []
    (already,) = summary.already_started
    assert str(webhook_run.id) in already
    assert [run.id for run in runs_of(deployment)] == [webhook_run.id]


def push_event(target: StackTarget, sha: str, occurred: datetime) -> str:
    """A push event of a backend staging commit as the webhook receiver posts it (no run yet: the trigger has not
    acted); its id, once the server has stored it."""
    from prefect.settings import PREFECT_API_URL

    event_id = str(uuid4())
    payload = {"source": "backend", "sha": sha, "tag": "", "target": name_of(target), "environment": target.environment}
    event = {
        "id": event_id,
        "occurred": occurred.isoformat(),
        "event": "fragalysis.github.push",
        "resource": {"prefect.resource.id": f"github.repository.{BACKEND}", "github.ref-kind": "branch"},
        "payload": payload,
    }
    api = str(PREFECT_API_URL.value())
    httpx.post(f"{api}/events", json=[event], timeout=10).raise_for_status()

    def stored() -> bool:
        body = {"filter": {"id": {"id": [event_id]}, "occurred": {"since": occurred.isoformat()}}}
        return bool(httpx.post(f"{api}/events/filter", json=body, timeout=10).json()["events"])

    wait_for(stored, "the push event to be stored", 30)
    return event_id


def test_a_head_whose_webhook_just_arrived_is_left_to_its_trigger(
    sandbox: Sandbox, targets: dict[str, StackTarget]
) -> None:
    """The webhook's event is in, its trigger has not created the run yet: the poll starts nothing (no second run
    for one push). A push event older than the grace with still no run: the trigger did not act, the poll starts it."""
    target = fresh(targets, "staging")
    deployment = a_deployment(deploy_to_staging, target)
    poll(target, staging_deployment=deployment)

    sha = sandbox.push(BACKEND, "staging")
    event_id = push_event(target, sha, datetime.now(UTC))
    summary = poll(target, staging_deployment=deployment)
    assert summary.started == []
    (already,) = summary.already_started
    assert event_id in already
    assert runs_of(deployment) == []

    late = sandbox.push(BACKEND, "staging")
    push_event(target, late, datetime.now(UTC) - WEBHOOK_GRACE - timedelta(minutes=1))
    summary = poll(target, staging_deployment=deployment)
    assert [started.parameters["sha"] for started in summary.started] == [late]


def test_a_start_that_fails_is_tried_again_by_the_next_poll(sandbox: Sandbox, targets: dict[str, StackTarget]) -> None:
    target = fresh(targets, "staging")
    missing = f"deploy-to-staging/not-yet-{next(numbers)}"
    poll(target, staging_deployment=missing)  # a baseline starts nothing, so the missing deployment is not noticed

    sha = sandbox.push(FRONTEND, "staging")
    with pytest.raises(PollFailed, match="not-yet"):
        poll(target, staging_deployment=missing)
    assert Variable.get(seen_variable(target.environment))["branches"]["frontend"]["sha"] != sha

    deployment = a_deployment(deploy_to_staging, target)
    summary = poll(target, staging_deployment=deployment)
    assert [started.parameters["sha"] for started in summary.started] == [sha]


def test_only_the_newest_new_production_grade_tag_starts_a_production_run(
    sandbox: Sandbox, targets: dict[str, StackTarget]
) -> None:
    target = fresh(targets, "production")
    deployment = a_deployment(deploy_to_production, target)

    first = poll(target, production_deployment=deployment)
    assert (first.started, first.baselines) == ([], [name_of(target)])
    assert Variable.get(seen_variable(target.environment))["tags"]["newest"] == "1.0.2"  # the scenario's tag

    sandbox.push(STACK, "refs/tags/1.0.3-rc1")
    candidate = poll(target, production_deployment=deployment)
    assert candidate.started == []
    assert runs_of(deployment) == []

    sandbox.push(STACK, "refs/tags/1.0.3")
    sandbox.push(STACK, "refs/tags/1.0.4")
    release = poll(target, production_deployment=deployment)
    (started,) = release.started
    assert started.parameters == {"tag": "1.0.4", "target": name_of(target)}
    (run,) = runs_of(deployment)
    assert run.parameters["tag"] == "1.0.4"

    since = datetime.now(UTC)
    quiet = poll(target, production_deployment=deployment)
    assert quiet.started == []
    assert reads(sandbox, since, "/tags") == [(f"/repos/{STACK}/tags", 304)]
    assert len(runs_of(deployment)) == 1
