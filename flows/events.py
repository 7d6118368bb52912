"""The names of the events that the webhook receiver posts (``deployments/github_events.py`` documents their labels
and payloads): the triggers in prefect.yaml start deploys on them, and the poller leaves a change whose push event it
finds to the trigger."""

from __future__ import annotations

GITHUB_PUSH = "fragalysis.github.push"
GITHUB_WORKFLOW_RUN = "fragalysis.github.workflow-run"
