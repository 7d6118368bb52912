"""Fixtures for flow tests: the Prefect test server, a sandbox, and the blocks that point at it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from blocks import Budgets, Mode, StackTarget
from deployments.sandbox_target import sandbox_target
from sandbox.runtime import Sandbox
from sandbox.scenario import Scenario, load_scenario

SPEED = 200.0
"""A staging redeploy (~15 min modelled) takes about 4.5 s."""


def scenario(*, chained: bool = False) -> Scenario:
    """Fragalysis; ``chained``: the repositories' own workflows dispatch the stack build and launch AWX (the
    TRIGGER_DOWNSTREAM / TRIGGER_AWX secrets on), as observe mode expects; off for orchestrate mode."""
    loaded = load_scenario("fragalysis")
    loaded.github.trigger_downstream = chained
    loaded.github.trigger_awx = chained
    return loaded


@pytest.fixture
def deploy_target(prefect_server: None, tmp_path: Path) -> Callable[..., StackTarget]:
    """Save a ``StackTarget`` (and its credentials blocks) for a running sandbox under a fresh name."""
    counter = iter(range(1000))

    def save(
        sb: Sandbox,
        *,
        environment: str = "staging",
        label: str | None = None,
        mode: Mode = Mode.ORCHESTRATE,
        wait_factor: float = 6.0,
        **changes: Any,
    ) -> StackTarget:
        sb.write_state(tmp_path)
        speed = sb.clock.speed
        # waits stop at budget x factor: a generous factor keeps a loaded CI machine from tripping them
        budgets = Budgets(wait_factor=wait_factor).scaled(speed)
        target = sandbox_target(sb.endpoints(tmp_path.resolve()), environment=environment, mode=mode, budgets=budgets)
        # ``label``: the environment's name in reports, events and Variables (its own last good tag, say)
        target = target.model_copy(update={**changes, "environment": label or target.environment})
        name = f"{environment}-{next(counter)}-{tmp_path.name[-12:].lower().replace('_', '-')}"
        target.save(name, overwrite=True)
        target._block_document_name = name
        return target

    return save


def target_name(target: StackTarget) -> str:
    name = target._block_document_name
    assert name is not None
    return name


def artifacts_of(flow_run_id: UUID) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def deployment_events(value: str, *, key: str = "sha", wait: float = 10.0) -> list[Any]:
    """The ``fragalysis.deployment.*`` events whose payload's ``key`` is ``value`` (a sha, a run id; events reach
    the server in the background: send what is queued, then read)."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=10)
    deadline = time.monotonic() + wait
    while True:
        with get_client(sync_client=True) as client:
            page = client.read_events(EventFilter(event=EventNameFilter(prefix=["fragalysis.deployment."])), limit=50)
        found = [event for event in page.events if event.payload.get(key) == value]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
