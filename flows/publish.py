"""Publishing a deployment's timings: a keyed table artifact, a markdown summary, the record the delivery history
reads (``flows/history.py``), and an event."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event

from blocks import Budgets, StackTarget
from flows import notify, progress
from flows.history import DeployRecord
from flows.report import DeploymentOutcome, DeploymentReport
from flows.timing import render_markdown_table


def artifact_key(environment: str, kind: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes; one key per environment keeps the history."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in environment.lower()).strip("-")
    return f"{slug}-{kind}"


def publish(
    report: DeploymentReport, *, budgets: Budgets, time_scale: float, target: StackTarget | None = None
) -> None:
    """Publish the timing table, the summary with its timeline and the ``fragalysis.deployment.*`` event, whatever
    the outcome; then announce it through the ``target``'s notification block when it opts in to that outcome."""
    outcome = (report.outcome or DeploymentOutcome.FAILED).value
    if report.outcome is not DeploymentOutcome.SUPERSEDED:  # it did nothing: the environment's tables stay
        _publish_artifacts(report, budgets=budgets, time_scale=time_scale)
    record = DeployRecord.from_report(report, ended_at=datetime.now(UTC), scale=time_scale)
    create_table_artifact(
        table=record.rows(),
        key=artifact_key(report.environment, "record"),
        description=f"{report.environment} <- {report.change}: {outcome}; the delivery history's record (ISO times)",
    )
    emit_event(
        event=f"fragalysis.deployment.{outcome}",
        resource={
            "prefect.resource.id": f"fragalysis.stack.{report.environment}",
            "prefect.resource.name": f"Fragalysis Stack ({report.environment})",
        },
        payload=report.payload(),
    )
    if target is not None:
        notify.notify_outcome(report, target)
    progress.forget(report.run_id)


def _publish_artifacts(report: DeploymentReport, *, budgets: Budgets, time_scale: float) -> None:
    outcome = (report.outcome or DeploymentOutcome.FAILED).value
    rows = report.table.as_rows(time_scale)
    create_table_artifact(
        table=rows,
        key=artifact_key(report.environment, "timings"),
        description=f"{report.environment} <- {report.change}: {outcome}; stage timings against their budgets",
    )
    create_markdown_artifact(
        markdown=report.summary_markdown(
            target_seconds=budgets.total, rollout_budget=budgets.commit_to_rollout, time_scale=time_scale
        )
        + "\n"
        + render_markdown_table(rows),
        key=artifact_key(report.environment, "summary"),
        description=f"{report.environment} <- {report.change}: {outcome}",
    )
