"""The commit -> staging flow under a Prefect test server, against the sandbox over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from blocks import Mode, StackTarget
from flows.report import DeploymentReport
from flows.staging import deploy_to_staging
from sandbox.runtime import Sandbox
from tests.conftest import wait_for
from tests.flows.conftest import SPEED, artifacts_of, deployment_events, scenario, target_name

pytestmark = pytest.mark.prefect

STAGE_ORDER = [
    "source build",
    "stack build",
    "image",
    "AWX job start",
    "AWX job",
    "pod stack-1",
    "pod stack-0",
    "verify",
    "commit -> roll-out start",
    "total (lead time)",
]
STAGING_VC = "Staging Fragalysis Stack (Version Change)"
OUR_AGENT = "fragalysis-cd"
CRASH_ERROR = "ModuleNotFoundError: No module named 'viewer.squonk2'"


def run(target: StackTarget, **parameters: Any) -> Any:
    return deploy_to_staging(target=target_name(target), return_state=True, **parameters)


def table_of(state: Any) -> list[dict[str, str]]:
    tables = [a for a in artifacts_of(state.state_details.flow_run_id) if (a.key or "").endswith("-timings")]
    assert len(tables) == 1, "one timing table per run"
    data = tables[0].data
    return data if isinstance(data, list) else json.loads(data)


def run_name(state: Any) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id).name


def task_graph(state: Any, expected_runs: int) -> dict[str, set[str]]:
    """The flow run's task runs by name, each with the names of the task runs it takes inputs from (the arrows of
    the run graph), read through the API (task runs reach the server in the background: wait for all of them)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))

    def read() -> list[Any] | None:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=flow_run)
        finished = [run for run in runs if run.state is not None and run.state.is_final()]
        return runs if len(finished) == expected_runs else None

    runs = wait_for(read, f"the flow run's {expected_runs} task runs to be recorded")
    names = {run.id: run.name for run in runs}
    return {
        run.name: {
            names.get(item.id, f"unknown {item.id}")
            for inputs in run.task_inputs.values()
            for item in inputs
            if item.input_type == "task_run"
        }
        for run in runs
    }


def replaced_order(sb: Sandbox) -> list[str]:
    """Pods of staging-stack/stack in the order their old version was deleted (the emulator's record)."""
    events = sb.call(sb.kubernetes.pod_events, "staging-stack")
    return [e["name"] for e in events if e["event"] == "terminating" and e["name"].startswith("stack-")]


@pytest.mark.parametrize("source", ["frontend", "backend", "stack"])
def test_a_commit_is_deployed_to_staging(make_sandbox: Callable[..., Sandbox], deploy_target, source: str):
    sb = make_sandbox(scenario(), speed=SPEED)
    target = deploy_target(sb)
    repo = target.sources[source]
    sha = sb.push(repo.repository, repo.branch, message=f"a {source} change")

    state = run(target, source=source, sha=sha)

    assert state.is_completed(), state.message
    assert run_name(state) == f"{target_name(target)} <- {source}@{sha[:7]}"
    report: DeploymentReport = state.result()
    assert report.succeeded
    # the digest verified is the one the stack build pushed
    latest = sb.call(sb.registry.resolve, "xchem/fragalysis-stack:latest")
    assert report.digest == latest
    pods = sb.call(sb.kubernetes.pods, "staging-stack", {"name": "stack"})
    assert {p["status"]["containerStatuses"][0]["imageID"].rpartition("@")[2] for p in pods} == {latest}
    assert replaced_order(sb)[-2:] == ["stack-1", "stack-0"]
    stages = [row["stage"] for row in table_of(state)]
    expected = [s for s in STAGE_ORDER if not (source == "stack" and s == "source build")]
    assert stages == expected
    rows = {row["stage"]: row for row in table_of(state)}
    assert all(rows[s]["duration"] for s in expected), rows
    (event,) = deployment_events(sha)
    assert event.event == "fragalysis.deployment.succeeded"
    assert event.resource.id == "fragalysis.stack.staging"
    assert event.payload["total_seconds"] == pytest.approx(report.total.duration)
    assert [stage["stage"] for stage in event.payload["stages"]] == expected
    assert "within budget" in rows["total (lead time)"]["verdict"] or "OVER" in rows["total (lead time)"]["verdict"]
    # the run graph draws the chain, and no arrow that is not a real hand-over
    snapshot, image = "snapshot staging-stack/stack", "read xchem/fragalysis-stack:latest digest"
    awx, watch, build = f"AWX: {STAGING_VC}", "watch staging-stack/stack", "build stack (orchestrate)"
    expected_graph = {
        snapshot: set(),
        f"wait for {source} build": set(),
        build: {f"wait for {source} build"},
        image: {build, snapshot},
        awx: {image},
        watch: {snapshot, image},
        "verify staging-stack/stack": {image, awx, watch},
    }
    if source == "stack":
        del expected_graph["wait for stack build"]
        expected_graph[build] = set()
    assert task_graph(state, len(expected_graph)) == expected_graph


def test_observe_mode_follows_the_repositories_own_chain(make_sandbox, deploy_target):
    sb = make_sandbox(scenario(chained=True), speed=SPEED)
    target = deploy_target(sb, mode=Mode.OBSERVE)
    sha = sb.push("xchem/fragalysis-frontend", "staging", message="observed")

    state = run(target, source="frontend", sha=sha)

    assert state.is_completed(), state.message
    ours = [r for r in sb.requests() if r.user_agent.startswith(OUR_AGENT)]
    assert {r.service for r in ours} == {"github", "awx", "registry", "kubernetes"}
    assert not [r for r in ours if r.method not in ("GET", "HEAD")], "observe mode writes nothing"
    launches = [j for j in sb.call(sb.awx.jobs)]
    assert len(launches) == 1, "only the stack build's own trigger launched AWX"
    report: DeploymentReport = state.result()
    assert f"/jobs/playbook/{launches[0]['id']}/" in report.links["AWX job"]


@pytest.mark.parametrize(
    ("case", "stage", "words"),
    [
        ("failed frontend build", "source build", "Build"),
        ("AWX ignores the extra vars", "AWX job", "ignored"),
        ("AWX job fails", "AWX job", "failed"),
        ("crash-looping pod", "roll-out", "CrashLoopBackOff"),
    ],
)
def test_failures_name_their_stage_and_publish_the_table(
    make_sandbox, deploy_target, case: str, stage: str, words: str
):
    loaded = scenario()
    faults: dict[str, Any] = {}
    if case == "failed frontend build":
        faults["failing_builds"] = [{"repository": "xchem/fragalysis-frontend", "workflow": "build-staging.yaml"}]
    elif case == "AWX ignores the extra vars":
        template = loaded.template(STAGING_VC)
        assert template is not None
        template.ask_variables_on_launch = False
    elif case == "AWX job fails":
        faults["awx_jobs"] = [{"template": STAGING_VC, "outcome": "failed"}]
    else:
        faults["crashloop"] = [{"namespace": "staging-stack", "statefulset": "stack", "error": CRASH_ERROR}]
    sb = make_sandbox(loaded, speed=SPEED, faults=faults)
    target = deploy_target(sb)
    sha = sb.push("xchem/fragalysis-frontend", "staging")

    state = run(target, source="frontend", sha=sha)

    assert state.is_failed()
    assert f"stage '{stage}' failed" in state.message
    assert words in state.message
    rows = {row["stage"]: row for row in table_of(state)}
    assert "total (lead time)" in rows
    failed = [name for name, row in rows.items() if row["verdict"].startswith("failed")]
    assert failed, rows
    if stage == "roll-out":
        assert any(name.startswith("pod ") for name in failed)
    else:
        assert stage in failed
    (event,) = deployment_events(sha)
    assert event.event == "fragalysis.deployment.failed"
    assert event.payload["failed_stage"] == stage
    if case == "crash-looping pod":
        # what an operator looks up next: the crashed container's last log lines (its error) and the pod's events
        for shown in (state.message, event.payload["error"]):
            assert "last 10 log lines of the previous (crashed) container stack:" in shown
            assert f"\n    {CRASH_ERROR}\n" in shown
            assert "\n    Warning BackOff (x" in shown
            assert "Back-off restarting failed container stack in pod stack-1_staging-stack(" in shown


def test_no_stage_waits_past_its_budget_times_the_factor(make_sandbox, deploy_target):
    """An AWX job that stays pending: the stage gives up at its budgets x wait_factor, naming the job."""
    sb = make_sandbox(scenario(), speed=SPEED, faults={"awx_jobs": [{"template": STAGING_VC, "outcome": "pending"}]})
    target = deploy_target(sb, wait_factor=2.0)
    sha = sb.push("xchem/fragalysis-frontend", "staging")

    state = run(target, source="frontend", sha=sha)

    assert state.is_failed()
    budgets = target.budgets
    waited = budgets.deadline(budgets.awx_start) + budgets.deadline(budgets.awx_job)
    assert (
        f"stage 'AWX job' failed: AWX job 1 (Staging Fragalysis Stack (Version Change)) was still pending after "
        f"{waited:.0f} s" in state.message
    )
    assert "/jobs/playbook/1/" in state.message
    assert state.message.endswith("; canceled it")
    # AWX turns a job canceled asynchronously (FACTS.md)
    wait_for(lambda: sb.call(sb.awx.job, 1)["status"] == "canceled", "AWX job 1 to be canceled")
