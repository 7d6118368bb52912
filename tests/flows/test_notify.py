"""Notifications: the messages' facts, the targets' opt-in, the overdue template as the Prefect server renders it, and
a staging deploy that announces its success through a webhook-style notification block."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from pydantic import SecretStr, ValidationError

from blocks import NOTIFIABLE, AwxServer, GitHubAccount, ImageRegistry, KubernetesCluster, StackTarget
from deployments.automations import MINIMUM_WITHIN, overdue_automation
from flows.notify import OVERDUE_SUBJECT, outcome_message, overdue_body, secret_values, send
from flows.progress import labels_of
from flows.report import DeploymentOutcome, DeploymentReport
from flows.staging import deploy_to_staging
from flows.timing import StageTiming
from sandbox.runtime import Sandbox
from tests.conftest import wait_for
from tests.flows.conftest import SPEED, scenario, target_name

SHA = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
DIGEST = "sha256:" + "ab" * 32
URL = "http://127.0.0.1:4200/runs/flow-run/0f0e"
TOKEN = "ghp_canary_token_0123456789"


def target(**changes: Any) -> StackTarget:
    fields: dict[str, Any] = {
        "environment": "staging",
        "github": GitHubAccount(token=SecretStr(TOKEN)),
        "awx": AwxServer(url="https://awx.example.org", token=SecretStr("awx-canary-token")),
        "cluster": KubernetesCluster(in_cluster=True),
        "registry": ImageRegistry(),
    }
    return StackTarget(**{**fields, **changes})


def facts(body: str) -> dict[str, str]:
    """The ``key: value`` lines of a message."""
    return dict(line.split(": ", 1) for line in body.splitlines()[1:] if ": " in line)


def test_a_failure_message_names_the_environment_change_digest_stage_and_run():
    report = DeploymentReport(environment="staging", source="frontend", sha=SHA, image="xchem/fragalysis-stack:latest")
    report.outcome = DeploymentOutcome.FAILED
    report.digest = DIGEST
    report.failed_stage = "roll-out"
    report.error = "stage 'roll-out' failed: pod stack-1 stuck: CrashLoopBackOff"

    subject, body = outcome_message(report, stage="AWX job", url=URL)

    assert subject == "[fragalysis] staging deploy FAILED: frontend@1a2b3c4"
    assert facts(body) == {
        "environment": "staging",
        "change": f"commit {SHA}",
        "digest": DIGEST,
        "stage": "roll-out",  # the failed stage, not the last one marked
        "run": URL,
        "reason": "stage 'roll-out' failed: pod stack-1 stuck: CrashLoopBackOff",
    }


def test_a_production_message_names_the_tag_and_the_rollback():
    report = DeploymentReport(
        environment="production", source="stack", sha=SHA, tag="1.0.3", image="xchem/fragalysis-stack:1.0.3"
    )
    report.outcome = DeploymentOutcome.ROLLED_BACK
    report.rollback = "rolled back to 1.0.2 (sha256:cd), verified"
    report.approval = "approved by ana"
    report.failed_stage = "roll-out"
    report.error = "stage 'roll-out' failed: 1.0.3 failed"

    subject, body = outcome_message(report, stage="rollback", url=URL)

    assert subject == "[fragalysis] production deploy ROLLED-BACK: tag 1.0.3"
    lines = facts(body)
    assert lines["change"] == f"tag 1.0.3 (commit {SHA})"
    assert lines["digest"] == "not read yet"
    assert lines["rollback"] == "rolled back to 1.0.2 (sha256:cd), verified"
    assert lines["approval"] == "approved by ana"


def test_a_success_message_names_the_stage_it_ended_in_and_the_lead_time():
    report = DeploymentReport(environment="staging", source="backend", sha=SHA, image="xchem/fragalysis-stack:latest")
    report.outcome = DeploymentOutcome.SUCCEEDED
    report.digest = DIGEST
    report.error = None
    start = datetime(2025, 1, 1, tzinfo=UTC)
    report.table.add(StageTiming("total (lead time)", start, start.replace(minute=14), 900.0))

    subject, body = outcome_message(report, stage="verify", url=URL)

    assert subject == "[fragalysis] staging deploy succeeded: backend@1a2b3c4"
    lines = facts(body)
    assert lines["stage"] == "verify"
    assert lines["total (lead time)"] == "840.0 s"
    assert "reason" not in lines


def test_targets_opt_in_to_what_they_are_told_of():
    assert not target().notifies("failed"), "no block, no notification"
    told = target(notification_block="slack-webhook/alerts")
    assert told.notify_on == ["failed", "rolled-back", "cancelled", "overdue"]
    assert [what for what in NOTIFIABLE if told.notifies(what)] == ["failed", "rolled-back", "cancelled", "overdue"]
    assert target(notification_block="custom-webhook/hook", notify_on=["succeeded"]).notifies("succeeded")
    with pytest.raises(ValidationError, match="notify_on takes"):
        target(notify_on=["failed", "exploded"])
    with pytest.raises(ValidationError, match="block type slug"):
        target(notification_block="alerts")
    # every outcome the flows publish can be opted in to
    assert {outcome.value for outcome in DeploymentOutcome} <= set(NOTIFIABLE)


def test_secret_values_of_the_target_and_its_blocks_are_found():
    kubeconfig = (
        "apiVersion: v1\nclusters:\n- cluster:\n    server: https://kubernetes.example.org:6443\n"
        "users:\n- name: ci\n  user:\n    token: eyJhbGciOiJSUzI1NiIsImtpZCI6Ik1234\n"
    )
    secrets = secret_values(target(cluster=KubernetesCluster(kubeconfig=SecretStr(kubeconfig))))
    assert secrets == {TOKEN, "awx-canary-token", "eyJhbGciOiJSUzI1NiIsImtpZCI6Ik1234"}


def render(template: str, flow_run: Any, ui_url: str | None = "http://127.0.0.1:4200") -> str:
    """A template rendered as the Prefect server's actions service renders a notification's."""
    from prefect.server.events.jinja_filters import all_filters
    from prefect.server.utilities.user_templates import register_user_template_filters, render_user_template
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    register_user_template_filters(all_filters)
    # without a UI URL the server derives one from its API URL (the session's test server has one)
    api_url = None if ui_url is None else f"{ui_url}/api"
    with temporary_settings({PREFECT_UI_URL: ui_url, PREFECT_API_URL: api_url}):
        return asyncio.run(render_user_template(template, {"flow_run": flow_run}))


def test_the_overdue_template_renders_the_runs_labels():
    from prefect.server.schemas.core import FlowRun

    report = DeploymentReport(environment="staging", source="frontend", sha=SHA, image="xchem/fragalysis-stack:latest")
    report.digest = DIGEST
    labels = labels_of(report, "AWX job", {})
    run = FlowRun(id=uuid4(), name="staging <- frontend@1a2b3c4", flow_id=uuid4(), labels=labels)

    subject = render(OVERDUE_SUBJECT, run)
    body = render(overdue_body(4.5, 200.0), run)

    assert subject == "[fragalysis] staging deploy OVERDUE: frontend@1a2b3c4"
    assert body.splitlines()[0].startswith("staging deploy still running past its total budget (4.5 s at speed 200 = ")
    lines = facts(body)
    assert lines["environment"] == "staging"
    assert lines["change"] == f"commit {SHA}"
    assert lines["digest"] == DIGEST
    assert lines["stage"] == "AWX job"
    assert lines["run"] == f"http://127.0.0.1:4200/runs/flow-run/{run.id}"

    # a run that never labelled itself (it crashed before its first stage) still renders
    bare = FlowRun(id=uuid4(), name="quiet-otter", flow_id=uuid4())
    assert render(OVERDUE_SUBJECT, bare) == "[fragalysis] unknown environment deploy OVERDUE: quiet-otter"
    lines = facts(render(overdue_body(900.0, 1.0), bare, ui_url=None))
    assert (lines["digest"], lines["stage"], lines["change"]) == ("not read yet", "not started", "commit not read yet")
    assert lines["run"] == f"flow run {bare.id}", "a server without a UI URL names the run"


def test_the_overdue_window_is_the_total_budget_at_least_the_servers_minimum():
    deployment = uuid4()
    staging = target()
    assert overdue_automation(deployment, staging).trigger.within.total_seconds() == 900.0
    fast = target(budgets=staging.budgets.scaled(200.0), time_scale=200.0)
    automation = overdue_automation(deployment, fast)
    assert automation.trigger.within.total_seconds() == MINIMUM_WITHIN
    assert "clamped from 4.5 s" in (automation.description or "")


# ---------------------------------------------------------------- against the session's Prefect test server


def webhook(url: str, name: str) -> str:
    """Save a webhook-style notification block posting ``{"subject", "body"}`` as JSON to ``url``; its
    ``<slug>/<name>``."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(name=name, url=url, json_data={"subject": "{{subject}}", "body": "{{body}}"})
    block.save(name, overwrite=True)
    return f"{block.get_block_type_slug()}/{name}"


def messages(received: list[tuple[dict[str, str], bytes]]) -> list[dict[str, str]]:
    return [json.loads(body) for _, body in received]


@pytest.mark.prefect
def test_a_staging_deploy_announces_its_success_once(
    make_sandbox: Callable[..., Sandbox], deploy_target, receiver, prefect_server: None
):
    from prefect.client.orchestration import get_client

    url, received = receiver
    sb = make_sandbox(scenario(), speed=SPEED)
    block = webhook(url, f"hook-{uuid4().hex[:8]}")
    target = deploy_target(sb, notification_block=block, notify_on=["succeeded"])
    sha = sb.push("xchem/fragalysis-frontend", "staging", message="announce me")

    state = deploy_to_staging(target=target_name(target), source="frontend", sha=sha, return_state=True)

    assert state.is_completed(), state.message
    report: DeploymentReport = state.result()
    run_id = state.state_details.flow_run_id
    (message,) = messages(received)
    assert message["subject"] == f"[fragalysis] {target.environment} deploy succeeded: frontend@{sha[:7]}"
    lines = facts(message["body"])
    assert lines["environment"] == target.environment
    assert lines["change"] == f"commit {sha}"
    assert lines["digest"] == report.digest
    assert lines["stage"] == "verify"
    assert lines["run"].endswith(f"/runs/flow-run/{run_id}")
    everything = json.dumps(message)
    assert not [secret for secret in secret_values(target) if secret in everything], "no secret in a message"

    # the run's labels say where it got to (sent in the background: on a loaded machine the last one may come after
    # the run's end, which waits for it only FLUSH_SECONDS)
    def final_labels() -> dict[str, Any] | None:
        with get_client(sync_client=True) as client:
            found = dict(client.read_flow_run(run_id).labels)
        return found if found.get("fragalysis.stage") == "verify" else None

    labels = wait_for(final_labels, "the run's last labels", 30)
    assert labels["fragalysis.digest"] == report.digest
    assert labels["fragalysis.sha"] == sha


@pytest.mark.prefect
def test_a_notification_that_cannot_be_sent_is_logged_and_masks_secrets(receiver, prefect_server: None):
    url, received = receiver
    dead = webhook("http://127.0.0.1:9/unreachable", f"dead-{uuid4().hex[:8]}")
    assert not send(target(notification_block=dead), "subject", "body"), "a failure is answered, not raised"
    assert not send(target(notification_block="custom-webhook/no-such-block"), "subject", "body")

    alive = webhook(url, f"alive-{uuid4().hex[:8]}")
    assert send(target(notification_block=alive), f"leaked {TOKEN}", f"error: Bearer {TOKEN} refused")
    (message,) = messages(received)
    assert TOKEN not in json.dumps(message)
    assert message == {"subject": "leaked ********", "body": "error: Bearer ******** refused"}
