"""Notifications of a deployment's outcome (and, through the overdue automation, of a deploy running too long),
through a Prefect notification block, opt-in per ``StackTarget`` (``notification_block``, ``notify_on``).

Every message names the same facts: the environment, the change (the tag or the commit), the image digest, the stage
and the run's URL; an outcome's also says why it failed. Nothing else of the target goes in (no credentials), and
any of its secret values that an error message might carry is masked. A notification that cannot be sent is logged
and never fails the run.

The overdue message is rendered by the Prefect server when the automation fires (``OVERDUE_SUBJECT``,
``overdue_body``: Jinja templates over the flow run, whose labels ``flows/progress.py`` keeps up to date).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import prefect.blocks.notifications  # noqa: F401  (registers Prefect's notification blocks for Block.load)
from prefect.blocks.abstract import NotificationBlock
from prefect.blocks.core import Block
from prefect.utilities.urls import url_for
from pydantic import BaseModel, SecretStr

from blocks import StackTarget
from flows import progress
from flows.report import DeploymentOutcome, DeploymentReport
from flows.timeline import describe

MASK = "********"


def run_url(run_id: str | UUID | None) -> str:
    """The run's page in the Prefect UI (``PREFECT_UI_URL``, or the API URL without ``/api``)."""
    if run_id is None:
        return "(no flow run)"
    return url_for("flow-run", obj_id=str(run_id)) or f"flow run {run_id}"


def outcome_message(report: DeploymentReport, *, stage: str | None, url: str) -> tuple[str, str]:
    """The subject and body announcing how ``report`` ended. ``stage``: the one it was in last (a failed
    deployment names its failed stage instead)."""
    outcome = (report.outcome or DeploymentOutcome.FAILED).value
    shown = outcome if report.succeeded else outcome.upper()
    subject = f"[fragalysis] {report.environment} deploy {shown}: {report.change}"
    lines = [
        f"{report.environment} deploy {shown}: {report.change}",
        f"environment: {report.environment}",
        f"change: {_change(report.tag, report.sha)}",
        f"digest: {report.digest or 'not read yet'}",
        f"stage: {report.failed_stage or stage or 'none'}",
        f"run: {url}",
    ]
    total = report.total
    if total is not None and total.duration is not None:
        lines.append(f"total (lead time): {total.duration:.1f} s")
    if report.approval:
        lines.append(f"approval: {report.approval}")
    if report.rollback:
        lines.append(f"rollback: {report.rollback}")
    if report.error and not report.succeeded:
        lines.append(f"reason: {report.error}")
    return subject, "\n".join(lines)


def _change(tag: str | None, sha: str | None) -> str:
    commit = f"commit {sha or 'not read yet'}"
    return f"tag {tag} ({commit})" if tag else commit


def notify_outcome(report: DeploymentReport, target: StackTarget) -> bool:
    """Announce the deployment's outcome when the target opts in to it; True when a notification was sent."""
    outcome = (report.outcome or DeploymentOutcome.FAILED).value
    if not target.notifies(outcome):
        return False
    subject, body = outcome_message(report, stage=progress.stage_of(report.run_id), url=run_url(report.run_id))
    return send(target, subject, body)


def send(target: StackTarget, subject: str, body: str) -> bool:
    """Send through the target's notification block, with the target's secret values masked; a failure is logged
    and answered False."""
    logger = progress.run_logger()
    name = target.notification_block
    if name is None:
        return False
    for secret in secret_values(target):
        subject, body = subject.replace(secret, MASK), body.replace(secret, MASK)
    try:
        block = load_notification_block(name)
        # Prefect's blocks dispatch ``notify`` to their sync version outside an event loop; the abstract base
        # declares it async
        notify: Any = block.notify
        with block.raise_on_failure():
            notify(body=body, subject=subject)
    except Exception as error:  # a notification must never fail the deployment it announces
        logger.warning("Could not send the notification %r through %s: %s", subject, name, error)
        return False
    logger.info("Sent the notification %r through %s", subject, name)
    return True


def load_notification_block(name: str) -> NotificationBlock:
    """A notification block by ``<block type slug>/<block name>``."""
    block = Block.load(name)
    if not isinstance(block, NotificationBlock):
        raise TypeError(f"{name} is a {type(block).__name__}, not a notification block")
    return block


def secret_values(model: BaseModel) -> set[str]:
    """The secret values in ``model`` and the blocks it holds: each one-line secret of at least 6 characters
    (shorter ones would mask ordinary words), and in a secret document (a kubeconfig) each word of at least 20
    characters that is not a URL (its tokens, keys and certificates)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            secret = value.get_secret_value().strip()
            if "\n" in secret:
                words = (word.strip("\"'") for word in secret.split())
                found.update(word for word in words if len(word) >= 20 and "://" not in word)
            elif len(secret) >= 6:
                found.add(secret)
        elif isinstance(value, BaseModel):
            for field in type(value).model_fields:
                walk(getattr(value, field))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(model)
    return found


# ---------------------------------------------------------------- the overdue automation's message

_FACTS = (
    "{% set labels = flow_run.labels %}"
    "{% set environment = labels.get('fragalysis.environment') or 'unknown environment' %}"
    "{% set change = labels.get('fragalysis.change') or flow_run.name %}"
    "{% set sha = labels.get('fragalysis.sha') or 'not read yet' %}"
    "{% set tag = labels.get('fragalysis.tag') %}"
)

OVERDUE_SUBJECT = _FACTS + "[fragalysis] {{ environment }} deploy OVERDUE: {{ change }}"
"""The overdue notification's subject: a Jinja template the Prefect server renders over the flow run."""


def overdue_body(total_seconds: float, time_scale: float) -> str:
    """The overdue notification's body: a Jinja template the Prefect server renders over the flow run when the
    automation fires, from the labels ``flows/progress.py`` keeps (the same facts as ``outcome_message``)."""
    budget = describe(total_seconds, time_scale)
    return _FACTS + "\n".join(
        [
            "{{ environment }} deploy still running past its total budget (" + budget + "): {{ change }}",
            "environment: {{ environment }}",
            "change: {% if tag %}tag {{ tag }} (commit {{ sha }}){% else %}commit {{ sha }}{% endif %}",
            "digest: {{ labels.get('fragalysis.digest') or 'not read yet' }}",
            "stage: {{ labels.get('fragalysis.stage') or 'not started' }}",
            "run: {{ flow_run|ui_url or ('flow run ' ~ flow_run.id) }}",  # a server without a UI URL
            "running since: {{ flow_run.start_time }}",
        ]
    )
