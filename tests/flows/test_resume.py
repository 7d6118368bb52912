"""Late starts and crash-resume (issue 10): a deploy that starts after its roll-out began or ended recognises it and
times it from the pods; a deploy whose process is SIGKILLed at a crash point carries on, when the same flow run is
retried, from where the world is, with exactly one AWX launch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.resume import create_run, retry, run_until_crash
from blocks import Mode
from flows.report import DeploymentReport
from flows.staging import deploy_to_staging
from sandbox.runtime import Sandbox
from tests.conftest import wait_for
from tests.flows.conftest import SPEED, scenario, target_name

pytestmark = pytest.mark.prefect


def statefulset(sb: Sandbox) -> dict[str, Any]:
    found = sb.call(sb.kubernetes.statefulset, "staging-stack", "stack")
    assert found is not None
    return found


def awx_launches(sb: Sandbox) -> int:
    return len(sb.call(sb.awx.jobs))


def assert_verified(sb: Sandbox, report: DeploymentReport) -> None:
    latest = sb.call(sb.registry.resolve, "xchem/fragalysis-stack:latest")
    assert report.succeeded
    assert report.digest == latest
    pods = sb.call(sb.kubernetes.pods, "staging-stack", {"name": "stack"})
    assert {p["status"]["containerStatuses"][0]["imageID"].rpartition("@")[2] for p in pods} == {latest}
    rows = {row.stage: row for row in report.table.rows}
    # the pods' own timestamps time the roll-out, however late the run looked
    assert rows["pod stack-1"].duration, rows
    assert rows["pod stack-0"].duration, rows
    assert rows["total (lead time)"].duration, rows


@pytest.mark.parametrize("when", ["began", "ended"])
def test_observe_mode_starts_after_the_rollout(make_sandbox, deploy_target, when: str):
    sb = make_sandbox(scenario(chained=True), speed=SPEED)
    target = deploy_target(sb, mode=Mode.OBSERVE)
    before = statefulset(sb)["status"]["updateRevision"]
    sha = sb.push("xchem/fragalysis-frontend", "staging", message="late")

    def reached() -> bool:
        status = statefulset(sb)["status"]
        if status["updateRevision"] == before:
            return False
        return when == "began" or status.get("currentRevision") == status["updateRevision"]

    wait_for(reached, f"the chain's roll-out to have {when}", deadline=120)
    state = deploy_to_staging(target=target_name(target), source="frontend", sha=sha, return_state=True)

    assert state.is_completed(), state.message
    assert_verified(sb, state.result())
    assert awx_launches(sb) == 1, "only the chain launched AWX"


@pytest.fixture(scope="module")
def crash_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    from sandbox.runtime import FREE_PORTS

    with Sandbox(scenario(), speed=SPEED, ports=FREE_PORTS) as sb:
        yield sb


@pytest.mark.parametrize("point", ["AWX launch", "roll-out", "rolled out"])
def test_a_retry_after_a_crash_launches_awx_once(crash_sandbox: Sandbox, deploy_target, tmp_path: Path, point: str):
    from prefect.settings import PREFECT_API_URL

    sb = crash_sandbox
    target = deploy_target(sb, label=f"staging-crash-{point.replace(' ', '-').lower()}")
    sha = sb.push("xchem/fragalysis-frontend", "staging", message=f"crash at {point}")
    jobs_before = awx_launches(sb)
    flow_run_id = create_run(source="frontend", sha=sha, target=target_name(target))

    assert run_until_crash(flow_run_id, point, str(PREFECT_API_URL.value())) == -9, f"no crash at {point}"
    assert awx_launches(sb) == jobs_before + 1, "the crashed attempt had launched AWX"
    state = retry(flow_run_id)

    assert state.is_completed(), state.message
    assert state.state_details.flow_run_id == flow_run_id
    assert_verified(sb, state.result())
    assert awx_launches(sb) == jobs_before + 1, "exactly one AWX launch for the request"
    assert unfinished_task_runs(flow_run_id) == [], "the dead attempt's task runs are not left Running"


def unfinished_task_runs(flow_run_id: Any) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return [run.name for run in runs if run.state is None or not run.state.is_final()]
