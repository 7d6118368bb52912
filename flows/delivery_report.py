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

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from flows.delivery import TREND_DAYS, delivery_figures
from flows.delivery_page import figure_rows, render_markdown, summarise
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
                # a table artifact's data is stored as a JSON string
                rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
                if isinstance(rows, list) and rows:
                    yield DeployRecord.from_rows(rows, ended_at=created)
            if len(page) < PAGE:
                return
            offset += PAGE


@flow(name="delivery-report", flow_run_name="{environment} delivery, last {days} days", persist_result=False)
def delivery_report(environment: str = "production", days: int = 30) -> dict[str, Any]:
    """Deploys per day, lead time against the target, each stage's p50/p95 and trend, change failure rate and time to
    restore of ``environment`` over the last ``days`` days; published as artifacts. Returns the one-line summary, the
    markdown artifact's key and id, and the figures' rows.

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
    key = artifact_key(environment, "delivery")
    page = create_markdown_artifact(
        markdown=render_markdown(figures),
        key=key,
        description=f"{environment}: delivery over the last {days} days",
    )
    create_table_artifact(
        table=rows,
        key=artifact_key(environment, "delivery-figures"),
        description=f"{environment}: delivery figures over the last {days} days (modelled seconds)",
    )
    summary = summarise(figures)
    logger.info("%s", summary)
    return {"environment": environment, "summary": summary, "key": key, "artifact_id": str(page), "figures": rows}
