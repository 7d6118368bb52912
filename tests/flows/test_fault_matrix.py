"""The fault matrix (``benchmarks/fault_matrix.py``) in small: the permanent faults that no other test drives through
a deploy, each in a sandbox of its own, and two staging deploys under the transient faults on every service.

The matrix's time limits are not asserted here (a loaded machine can pass them: the benchmark reports them); the
waits get a generous factor so that a slow machine never turns one fault into another."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.fault_matrix import Bench, permanent_cases, run_block, run_case
from tests.flows.conftest import SPEED

pytestmark = pytest.mark.prefect

CASES = {case.fault: case for case in permanent_cases()}
NOT_COVERED_ELSEWHERE = [
    "AWX job canceled (by someone else)",
    "image pull failing",
    "pod unschedulable",
]


@pytest.mark.parametrize("fault", NOT_COVERED_ELSEWHERE)
def test_a_permanent_fault_fails_its_stage_naming_the_object_and_leaves_nothing_running(
    prefect_server: None, tmp_path: Path, fault: str
) -> None:
    case = CASES[fault]

    row = run_case(Bench(SPEED, tmp_path, wait_factor=6.0), case)

    # the stage, the remote object, a URL and the reason are named (case.words), nothing of ours is left running
    assert row.behaved, (row.observed, row.message)
    assert f"stage '{case.stage}' failed" in row.message
    assert row.left_running == []
    assert row.launches == row.jobs <= 1, "never a second launch"
    if case.stage == "roll-out":
        # what an operator looks up next: the pod's API URL and its recent events
        assert "/api/v1/namespaces/staging-stack/pods/stack-1" in row.message
        assert "\nevents (Warning first" in row.message


def test_staging_deploys_complete_under_transient_faults_on_every_service(prefect_server: None, tmp_path: Path) -> None:
    block = run_block(Bench(SPEED, tmp_path, wait_factor=6.0), "staging", 2, faulty=True)

    assert block.completed == 2, block.failures
    assert block.jobs == 2, "one AWX job per deploy: no duplicate launch"
    assert sum(block.faults_met.values()) > 0, "the faults hit our requests"
