"""End to end: the sandbox's GitHub delivers signed webhooks to the receiver, which posts events to the session's
Prefect test server; the events are read back through the Prefect API."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from deployments.github_events import PUSH_EVENT, WORKFLOW_RUN_EVENT, event_id
from deployments.receiver import Receiver
from deployments.sandbox_target import sandbox_target
from sandbox.runtime import Sandbox
from sandbox.scenario import Webhook, load_scenario
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.prefect

FRONTEND = "xchem/fragalysis-frontend"
STACK = "xchem/fragalysis-stack"
SECRET = "sandbox-webhook-secret"


def prefect_events(deliveries: list[str], *, wait: float = 20.0) -> list[Any]:
    """The events that the server holds for ``deliveries`` (by their ids), read through the Prefect API until one
    has arrived for each (the server stores posted events in the background)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventIDFilter

    ids = [UUID(event_id(delivery)) for delivery in deliveries]
    deadline = time.monotonic() + wait
    while True:
        with get_client(sync_client=True) as client:
            page = client.read_events(EventFilter(id=EventIDFilter(id=ids)), limit=50)
        if len({event.id for event in page.events}) >= len(ids) or time.monotonic() > deadline:
            return list(page.events)
        time.sleep(0.2)


def push(sb: Sandbox, repository: str, ref: str) -> str:
    response = httpx.post(f"{sb.urls['github']}/_sandbox/push", json={"repository": repository, "ref": ref}, timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["sha"])


def test_sandbox_webhooks_become_prefect_events(
    prefect_server: None, make_sandbox: Callable[..., Sandbox], tmp_path: Path
):
    from prefect.settings import PREFECT_API_URL

    port = free_port()
    scenario = load_scenario("fragalysis")
    # orchestrate mode: the repositories' own chaining off, so a push starts only its own build
    github = scenario.github.model_copy(
        update={
            "trigger_downstream": False,
            "trigger_awx": False,
            "webhook": Webhook(url=f"http://127.0.0.1:{port}/github", secret=SECRET),
        }
    )
    sb = make_sandbox(scenario, speed=200, github=github)
    sb.write_state(tmp_path)
    endpoints = sb.endpoints(tmp_path.resolve())
    targets = {
        "staging-e2e": sandbox_target(endpoints, environment="staging"),
        "production-e2e": sandbox_target(endpoints, environment="production"),
    }
    assert targets["production-e2e"].production

    def answered(event: str) -> list[tuple[str, int | None, str | None]]:
        return sb.call(
            lambda: [
                (d.guid, d.status, d.error) for d in sb.github.deliveries if d.event == event and d.delivered.is_set()
            ]
        )

    with Receiver(targets, api_url=str(PREFECT_API_URL.value()), port=port) as receiver:
        assert receiver.url == f"http://127.0.0.1:{port}/"
        frontend = push(sb, FRONTEND, "staging")
        release = push(sb, STACK, "refs/tags/1.0.3")
        candidate = push(sb, STACK, "refs/tags/1.0.3-rc1")
        pushes = wait_for(lambda: (lambda d: d if len(d) == 3 else None)(answered("push")), "three push deliveries")
        assert [(status, error) for _, status, error in pushes] == [(202, None)] * 3
        guids = [guid for guid, _, _ in pushes]

        # a redelivery (GitHub's "Redeliver" sends the same X-GitHub-Delivery): the same event id again
        first = sb.call(lambda: next(d for d in sb.github.deliveries if d.guid == guids[0]))
        again = httpx.post(f"{receiver.url}github", content=first.body, headers=first.headers, timeout=10)
        assert again.status_code == 202
        assert again.json()["events"] == [event_id(guids[0])]

        # the frontend build's workflow_run deliveries (requested, in_progress, completed) for the same repository
        wait_for(
            lambda: sb.call(
                lambda: any(
                    d.action == "completed"
                    and d.payload["repository"]["full_name"] == FRONTEND
                    and d.delivered.is_set()
                    for d in sb.github.deliveries
                )
            ),
            "the frontend build's completed workflow_run delivery",
        )
        runs = answered("workflow_run")

    events = prefect_events(guids)
    assert {event.event for event in events} == {PUSH_EVENT}
    by_sha = {event.payload["sha"]: event for event in events}
    assert set(by_sha) == {frontend, release, candidate}
    assert [str(event.id) for event in events].count(event_id(guids[0])) == 1

    staging = by_sha[frontend]
    assert str(staging.id) == event_id(guids[0])
    assert dict(staging.resource) == {
        "prefect.resource.id": f"github.repository.{FRONTEND}",
        "github.repository": FRONTEND,
        "github.ref-kind": "branch",
        "github.ref": "staging",
        "fragalysis.source": "frontend",
        "fragalysis.environment": "staging",
    }
    assert staging.payload == {
        "repository": FRONTEND,
        "ref": "refs/heads/staging",
        "ref_kind": "branch",
        "name": "staging",
        "source": "frontend",
        "sha": frontend,
        "tag": "",
        "before": staging.payload["before"],
        "forced": False,
        "pusher": staging.payload["pusher"],
        "delivery": guids[0],
        "environment": "staging",
        "target": "staging-e2e",
        "pushed_at": staging.payload["pushed_at"],
    }
    assert datetime.fromisoformat(staging.payload["pushed_at"]) == staging.occurred
    assert len(staging.payload["before"]) == 40
    assert staging.payload["before"] != frontend
    assert staging.payload["pusher"]

    production = by_sha[release]
    assert production.resource["github.ref-kind"] == "tag"
    assert production.resource["github.ref"] == "1.0.3"
    assert production.resource["fragalysis.source"] == "stack"
    assert production.resource["fragalysis.environment"] == "production"
    assert (production.payload["tag"], production.payload["target"]) == ("1.0.3", "production-e2e")
    assert production.payload["ref"] == "refs/tags/1.0.3"

    unrouted = by_sha[candidate]
    assert unrouted.resource["github.ref-kind"] == "tag"
    assert unrouted.resource["fragalysis.environment"] == "none"
    assert (unrouted.payload["tag"], unrouted.payload["environment"], unrouted.payload["target"]) == (
        "1.0.3-rc1",
        "none",
        "",
    )

    run_guids = [guid for guid, status, _ in runs if status == 202]
    assert len(run_guids) == len(runs) >= 3
    run_events = prefect_events(run_guids)
    assert {event.event for event in run_events} == {WORKFLOW_RUN_EVENT}
    assert len(run_events) == len(run_guids)
    completed = [
        e for e in run_events if e.resource["github.repository"] == FRONTEND and e.payload["action"] == "completed"
    ]
    [build] = completed
    assert build.resource["github.workflow"] == "build staging"
    assert build.resource["github.conclusion"] == "success"
    assert (build.payload["head_sha"], build.payload["head_branch"], build.payload["status"]) == (
        frontend,
        "staging",
        "completed",
    )
    assert isinstance(build.payload["run_id"], int)
