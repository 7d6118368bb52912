"""HTTP faults aimed at some clients by ``User-Agent`` (``HttpFaults.user_agents``): faults aimed at our product
(``fragalysis-cd/...``) leave the emulated services' own traffic alone and hit ours at the configured, seeded rate;
faults aimed at the AWX playbook's Kubernetes requests fail the AWX job on purpose, saying so in its output. Set
through a scenario file, the control endpoint and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ValidationError

from clients.http import USER_AGENT
from sandbox import cli
from sandbox.runtime import Sandbox
from sandbox.scenario import HttpFaults, load_scenario
from tests.conftest import PATIENT_AWX_SECONDS, awx_timeout, kube_http, wait_for

OURS = "^fragalysis-cd/"
PLAYBOOK = "^awx-sandbox-ansible/"
PLAYBOOK_AGENT = "awx-sandbox-ansible/kubernetes.core"  # sandbox/awx/emulator.py
STATEFULSET = "/apis/apps/v1/namespaces/staging-stack/statefulsets/stack"


def kube(sb: Sandbox, agent: str) -> httpx.Client:
    return kube_http(sb, headers={"User-Agent": agent})


def awx(sb: Sandbox) -> httpx.Client:
    headers = {"Authorization": f"Bearer {sb.scenario.awx.token}"}
    return httpx.Client(base_url=sb.urls["awx"] + "/api/v2/", headers=headers, timeout=10)


def run_job(sb: Sandbox) -> tuple[dict[str, Any], str]:
    """Launch the staging version-change template over AWX's API; the finished job and its output."""
    with awx(sb) as client:
        launched = client.post("job_templates/1/launch/", json={"extra_vars": {"stack_image_tag": "latest"}})
        assert launched.status_code == 201, launched.text
        job_id = launched.json()["job"]

        def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = client.get(f"jobs/{job_id}/").json()
            done = job["status"] in ("successful", "failed", "error", "canceled")
            return job if done and job["event_processing_finished"] else None

        job = wait_for(finished, f"AWX job {job_id} to finish", deadline=60)
        return job, client.get(f"jobs/{job_id}/stdout/", params={"format": "txt"}).text


def statuses(sb: Sandbox, *, others_between: int) -> tuple[list[int], list[int]]:
    """Our 60 reads of the StatefulSet, each after ``others_between`` reads by the AWX playbook's User-Agent:
    the statuses we got, and the statuses the others got."""
    ours: list[int] = []
    others: list[int] = []
    with kube(sb, USER_AGENT) as mine, kube(sb, PLAYBOOK_AGENT) as theirs:
        for _ in range(60):
            others += [theirs.get(STATEFULSET).status_code for _ in range(others_between)]
            ours.append(mine.get(STATEFULSET).status_code)
    return ours, others


def logged_reads(sb: Sandbox, count: int) -> list[Any]:
    """The request log's reads of the StatefulSet, once it holds ``count`` (a record is written as its answer
    goes out, so the last may lag the client by a moment)."""

    def read() -> list[Any] | None:
        found = [r for r in sb.requests("kubernetes") if r.path == STATEFULSET]
        return found if len(found) >= count else None

    found: list[Any] = wait_for(read, f"{count} reads in the request log")
    return found


def test_faults_aimed_at_our_client_spare_other_clients_and_keep_their_seeded_rate(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    aimed = {"kubernetes": {"error_rate": 0.5, "user_agents": OURS}}
    alone = make_sandbox(speed=600, faults=aimed)
    ours_alone, _ = statuses(alone, others_between=0)
    crowded = make_sandbox(speed=600, faults=aimed)
    ours_crowded, others = statuses(crowded, others_between=2)

    assert set(others) == {200}, "a client the faults are not aimed at is never hit"
    assert set(ours_alone) == {200, 503}
    assert 15 <= ours_alone.count(503) <= 45, f"about half of 60 at error_rate 0.5: {ours_alone}"
    # seeded: the same seed gives our requests the same faults, however much other traffic came in between
    assert ours_crowded == ours_alone
    # the request log (written as each answer goes out) tells the clients apart by the same header
    logged = logged_reads(crowded, 180)
    assert {r.status for r in logged if r.user_agent == PLAYBOOK_AGENT} == {200}
    assert [r.status for r in logged if r.user_agent == USER_AGENT] == ours_alone


def test_faults_aimed_at_our_client_leave_the_awx_playbook_alone(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(
        awx_timeout(PATIENT_AWX_SECONDS), speed=600, faults={"kubernetes": {"error_rate": 1.0, "user_agents": OURS}}
    )
    job, stdout = run_job(sb)
    assert job["status"] == "successful", stdout
    with kube(sb, USER_AGENT) as mine:
        assert mine.get(STATEFULSET).status_code == 503
    playbook = {r.status for r in sb.requests("kubernetes") if r.user_agent == PLAYBOOK_AGENT}
    assert playbook == {200}


def test_a_scenario_can_fail_the_playbooks_kubernetes_task_on_a_503(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    """A real Ansible k8s task fails on a 503: modelled on purpose, by a scenario file aiming the faults at it."""
    base = awx_timeout(PATIENT_AWX_SECONDS)
    data = base.model_dump(mode="json")
    data["faults"]["kubernetes"] = {"error_rate": 1.0, "error_status": 503, "user_agents": PLAYBOOK}
    path = tmp_path / "playbook-503.yaml"
    path.write_text(yaml.safe_dump(data))
    loaded = load_scenario(path)
    assert loaded.faults.kubernetes.user_agents == PLAYBOOK
    sb = make_sandbox(loaded, speed=600)

    job, stdout = run_job(sb)

    assert job["status"] == "failed", stdout
    assert job["failed"] is True
    lines = stdout.splitlines()
    fatal = [index for index, line in enumerate(lines) if line.startswith("fatal: [localhost]: FAILED!")]
    assert len(fatal) == 1, stdout
    line = lines[fatal[0]]
    result = json.loads(line.partition("=> ")[2])
    assert result["status"] == 503, line
    assert result["msg"].startswith("Failed to retrieve requested object:"), line
    assert "sandbox fault: injected error" in result["msg"]
    task = next(line for line in reversed(lines[: fatal[0]]) if line.startswith("TASK ["))
    assert task.startswith("TASK [Get the StatefulSet stack]"), task
    assert "failed=1" in stdout
    # our own client is spared by these faults
    with kube(sb, USER_AGENT) as mine:
        assert mine.get(STATEFULSET).status_code == 200


def test_the_control_endpoint_and_the_cli_set_aimed_faults(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sb = make_sandbox(speed=600)
    sb.write_state(tmp_path)

    changes = ["--set", "kubernetes.error_rate=1", "--set", f"kubernetes.user_agents={OURS}"]
    code = cli.main(["faults", *changes, "--state-dir", str(tmp_path)])
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["kubernetes"]["user_agents"] == OURS
    assert shown["github"]["user_agents"] is None
    with kube(sb, USER_AGENT) as mine, kube(sb, PLAYBOOK_AGENT) as theirs:
        assert mine.get(STATEFULSET).status_code == 503
        assert theirs.get(STATEFULSET).status_code == 200

    control = f"{sb.urls['github']}/_sandbox/faults"
    refused = httpx.patch(control, json={"kubernetes": {"user_agents": "fragalysis-cd/("}}, timeout=10)
    assert refused.status_code == 400
    assert "not a regular expression" in refused.json()["message"]
    unchanged = httpx.get(control, timeout=10).json()["kubernetes"]["user_agents"]
    assert unchanged == OURS, "a refused change changes nothing"

    # an empty pattern aims at every client again, as without one
    assert httpx.patch(control, json={"kubernetes": {"user_agents": ""}}, timeout=10).status_code == 200
    with kube(sb, PLAYBOOK_AGENT) as theirs:
        assert theirs.get(STATEFULSET).status_code == 503


@pytest.mark.parametrize("field", ["user_agents", "paths"])
def test_a_pattern_that_is_not_a_regular_expression_is_refused(field: str) -> None:
    with pytest.raises(ValidationError, match="not a regular expression"):
        HttpFaults.model_validate({field: "[unclosed"})
