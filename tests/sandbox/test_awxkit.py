"""The real AWX CLI (awxkit) against the AWX emulator: ``awx job_templates launch ... --monitor`` discovers the API
(``/api/``, OPTIONS), finds the template by name, launches, follows ``related.job_events`` and exits 0 when the
job succeeds, non-zero when it fails."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from sandbox.runtime import Sandbox
from tests.conftest import PATIENT_AWX_SECONDS, awx_timeout, require_binary

pytestmark = pytest.mark.awxkit

STAGING_VC = "Staging Fragalysis Stack (Version Change)"


def run_awx(sb: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    # awxkit reads CONTROLLER_*/TOWER_* settings from the environment: keep a user's own out of the test
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTROLLER_", "TOWER_", "AWXKIT_"))}
    command = [
        require_binary("awx", "awxkit"),
        "--conf.host",
        sb.urls["awx"],
        "--conf.token",
        sb.scenario.awx.token,
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)


def launch_and_monitor(sb: Sandbox) -> subprocess.CompletedProcess[str]:
    return run_awx(sb, "job_templates", "launch", STAGING_VC, "--monitor", "-e", '{"stack_image_tag": "latest"}')


def final_json(stdout: str) -> dict[str, object]:
    """The job that awx prints (as JSON) after the monitored output."""
    return json.loads(stdout[stdout.index("\n{") :])


def test_launch_monitor_succeeds(make_sandbox):
    # awxkit prints one page (25 events) per fetch, every 2.5 s, and once more after the job ends: at speed 600 the
    # roll-out's retry lines (one every 10 modelled seconds) overrun a page between two fetches and the recap is
    # never printed, as it would not be against a real AWX that fast; at 60 a fetch sees about 15 new events
    sb = make_sandbox(awx_timeout(PATIENT_AWX_SECONDS), speed=60)
    result = launch_and_monitor(sb)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PLAY RECAP" in result.stdout
    assert "failed=0" in result.stdout
    assert final_json(result.stdout)["status"] == "successful"
    job = sb.call(sb.awx.job, 1)
    assert job["status"] == "successful"
    assert job["extra_vars"] == '{"stack_image_tag": "latest"}'
    paths = [r.path for r in sb.requests("awx")]
    assert "/api/v2/jobs/1/job_events/" in paths


def test_launch_monitor_exits_non_zero_when_the_job_fails(make_sandbox):
    sb = make_sandbox(speed=600, faults={"awx_jobs": [{"template": STAGING_VC, "outcome": "failed"}]})
    result = launch_and_monitor(sb)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "fatal: [localhost]: FAILED!" in result.stdout
    assert final_json(result.stdout)["status"] == "failed"


def test_cli_lists_jobs_by_status(make_sandbox):
    sb = make_sandbox(speed=600, faults={"awx_jobs": [{"template": STAGING_VC, "outcome": "pending"}]})
    sb.call(sb.awx.launch, STAGING_VC, {"stack_image_tag": "latest"})
    result = run_awx(sb, "jobs", "list", "--status", "pending")
    assert result.returncode == 0, result.stdout + result.stderr
    listed = json.loads(result.stdout)
    assert listed["count"] == 1
    assert listed["results"][0]["name"] == STAGING_VC
