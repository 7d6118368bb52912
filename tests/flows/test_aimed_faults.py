"""A staging deploy with Kubernetes faults aimed at our client only (``HttpFaults.user_agents``): our client retries
and the deploy completes, while the AWX playbook's own Kubernetes requests are left alone and its job succeeds."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from clients.http import USER_AGENT
from flows.report import DeploymentReport
from flows.staging import deploy_to_staging
from sandbox.runtime import Sandbox
from tests.flows.conftest import SPEED, scenario, target_name

pytestmark = pytest.mark.prefect

PLAYBOOK_AGENT = "awx-sandbox-ansible/kubernetes.core"  # sandbox/awx/emulator.py


def test_503s_aimed_at_our_kubernetes_client_are_retried_and_spare_the_awx_playbook(
    make_sandbox: Callable[..., Sandbox], deploy_target
) -> None:
    # the first two of our Kubernetes requests fail for certain, then one in twenty: enough to need our retries,
    # too few for four in a row (the retry policy's attempts) to fail one call
    faults = {"kubernetes": {"fail_next": 2, "error_rate": 0.05, "error_status": 503, "user_agents": "^fragalysis-cd/"}}
    sb = make_sandbox(scenario(), speed=SPEED, faults=faults)
    target = deploy_target(sb)
    sha = sb.push("xchem/fragalysis-frontend", "staging", message="under aimed faults")

    state = deploy_to_staging(target=target_name(target), source="frontend", sha=sha, return_state=True)

    assert state.is_completed(), state.message
    report: DeploymentReport = state.result()
    assert report.succeeded
    kubernetes = sb.requests("kubernetes")
    ours = [r for r in kubernetes if r.user_agent == USER_AGENT]
    assert len([r for r in ours if r.status == 503]) >= 2, "our client was hit, and retried"
    playbook = [r for r in kubernetes if r.user_agent == PLAYBOOK_AGENT]
    assert playbook, "the AWX job talked to Kubernetes"
    assert {r.status for r in playbook} == {200}, "the playbook's requests were spared"
    (job,) = sb.call(sb.awx.jobs)
    assert job["status"] == "successful"
