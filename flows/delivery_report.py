"""The delivery report flow: how delivery to one environment went over the last days, from the records the deploys
left (``flows/history.py``), published as the keyed markdown artifact ``<environment>-delivery`` with its pictures
and the table artifact ``<environment>-delivery-figures``.

From Python::

    from flows.delivery_report import delivery_report
    figures = delivery_report(environment="production", days=30)

From the command line, ``fragalysis-cd report [--environment E] [--days N]``; daily, the ``delivery-report``
deployment of prefect.yaml.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from flows.delivery import TREND_DAYS, delivery_figures, minutes
from flows.delivery_page import figure_rows, render_markdown
from flows.history import DeployRecord
from flows.publish import artifact_key

PAGE = 200
"""Artifacts read per request (the API's default page limit)."""


def read_records(environment: str, since: datetime) -> Iterator[DeployRecord]:
    """The environment's deploy records created after ``since``, newest first (paged, stops at the first older)."""
    key = artifact_key(environment, "record")
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                sort=ArtifactSort.CREATED_DESC,
                limit=PAGE,
                offset=offset,
            )
            for artifact in page:
                created = artifact.created
                if created is None or created <= since:
                    return
                rows = artifact.data if isinstance(artifact.data, list) else None
                if rows:
                    yield DeployRecord.from_rows(rows, ended_at=created)
            if len(page) < PAGE:
                return
            offset += PAGE


@flow(name="delivery-report", flow_run_name="{environment} delivery, last {days} days", persist_result=False)
def delivery_report(environment: str = "production", days: int = 30) -> list[dict[str, Any]]:
    """Deploys per day, lead time against the target, each stage's p50/p95 and trend, change failure rate and time to
    restore of ``environment`` over the last ``days`` days; published as artifacts. Returns the figures' rows.

    Args:
        environment: the environment (a StackTarget's ``environment``: staging, production, a developer's stack).
        days: the window, ending now.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    logger = get_run_logger()
    until = datetime.now(UTC)
    records = list(read_records(environment, until - timedelta(days=max(days, 2 * TREND_DAYS))))
    figures = delivery_figures(records, environment, until=until, days=days)
    rows = figure_rows(figures)
    create_markdown_artifact(
        markdown=render_markdown(figures),
        key=artifact_key(environment, "delivery"),
        description=f"{environment}: delivery over the last {days} days",
    )
    create_table_artifact(
        table=rows,
        key=artifact_key(environment, "delivery-figures"),
        description=f"{environment}: delivery figures over the last {days} days (modelled seconds)",
    )
    lead = figures.lead_time
    logger.info(
        "%s, last %d days: %d deploys (%d succeeded, %d failed, %d rolled back), %d listed apart; lead time p50 %s "
        "p95 %s (target %s); change failure rate %s; time to restore p50 %s",
        environment,
        days,
        len(figures.deploys),
        figures.count("succeeded"),
        figures.count("failed"),
        figures.count("rolled-back"),
        len(figures.apart),
        minutes(lead.p50 if lead else None),
        minutes(lead.p95 if lead else None),
        minutes(figures.target),
        "-" if figures.change_failure_rate is None else f"{figures.change_failure_rate:.0%}",
        minutes(figures.time_to_restore.p50 if figures.time_to_restore else None),
    )
    return rows
