"""Publishing a deployment's timings: a keyed table artifact, a markdown summary, and an event."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event

from flows.report import DeploymentReport
from flows.timing import render_markdown_table


def artifact_key(environment: str, kind: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes; one key per environment keeps the history."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in environment.lower()).strip("-")
    return f"{slug}-{kind}"


def publish(report: DeploymentReport, *, target_seconds: float) -> None:
    """Publish the timing table, the summary and the ``fragalysis.deployment.*`` event, whatever the outcome."""
    outcome = "succeeded" if report.succeeded else "failed"
    create_table_artifact(
        table=report.table.as_rows(),
        key=artifact_key(report.environment, "timings"),
        description=f"{report.environment} deployment {outcome}: stage timings against their budgets",
    )
    create_markdown_artifact(
        markdown=report.summary_markdown(target_seconds=target_seconds)
        + "\n"
        + render_markdown_table(report.table.as_rows()),
        key=artifact_key(report.environment, "summary"),
        description=f"{report.environment} deployment {outcome}",
    )
    emit_event(
        event=f"fragalysis.deployment.{outcome}",
        resource={
            "prefect.resource.id": f"fragalysis.stack.{report.environment}",
            "prefect.resource.name": f"Fragalysis Stack ({report.environment})",
        },
        payload=report.payload(),
    )
