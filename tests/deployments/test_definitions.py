"""prefect.yaml is the one definition of the deployments: ``prefect --no-prompt deploy --all`` creates them and one
automation per trigger on a real ``prefect server start``, the triggers route pushes by the receiver's labels, and
the deployments ``serve`` registers (deployments/definitions.py) are the same ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deployments.prefect_server import LocalPrefectServer
from tests.conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
PUSH = "fragalysis.github.push"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, prefect_home: Callable[[Path], Path]
) -> Iterator[LocalPrefectServer]:
    """One real Prefect server for the module (the test harness would do, but `prefect deploy` is a CLI)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = LocalPrefectServer(prefect_home(tmp_path_factory.mktemp("prefect-home")), port=free_port())
    server.start()
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server
    finally:
        server.stop()


def snapshot() -> dict[str, dict[str, Any]]:
    """What the server holds for each deployment, by ``flow/deployment`` name, with the automations that run it."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        automations = client.read_automations()
        result: dict[str, dict[str, Any]] = {}
        for deployment in client.read_deployments():
            flow = client.read_flow(deployment.flow_id)
            mine = [
                a for a in automations if any(getattr(x, "deployment_id", None) == deployment.id for x in a.actions)
            ]
            result[f"{flow.name}/{deployment.name}"] = {
                "entrypoint": deployment.entrypoint,
                "parameters": deployment.parameters,
                "tags": sorted(deployment.tags),
                "description": deployment.description,
                # an interval's anchor defaults to the moment it is applied: the same schedule, a different anchor
                "schedules": sorted(
                    (s.schedule.model_dump_json(exclude={"anchor_date"}), s.active, repr(s.parameters), s.slug)
                    for s in deployment.schedules
                ),
                "concurrency": (
                    deployment.global_concurrency_limit.limit if deployment.global_concurrency_limit else None,
                    deployment.concurrency_options.collision_strategy if deployment.concurrency_options else None,
                ),
                "triggers": sorted((_trigger(a, deployment.id) for a in mine), key=lambda t: t["name"]),
            }
    return result


def _trigger(automation: Any, deployment_id: uuid.UUID) -> dict[str, Any]:
    trigger = automation.trigger
    (action,) = automation.actions
    assert action.type == "run-deployment"
    assert action.source == "selected"
    assert action.deployment_id == deployment_id, "each trigger runs its own deployment"
    return {
        "name": automation.name,
        "enabled": automation.enabled,
        "posture": trigger.posture.value,
        "match": trigger.match.model_dump(),
        "match_related": trigger.match_related.model_dump()
        if not isinstance(trigger.match_related, list)
        else [m.model_dump() for m in trigger.match_related],
        "expect": sorted(trigger.expect),
        "after": sorted(trigger.after),
        "threshold": trigger.threshold,
        "parameters": action.parameters,
    }


@pytest.fixture(scope="module")
def deployed(server: LocalPrefectServer) -> dict[str, dict[str, Any]]:
    """``prefect --no-prompt deploy --all`` from the repository (into its work pool), and what it created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="fragalysis", type="process"))
    prefect = Path(sys.executable).with_name("prefect")
    result = subprocess.run(
        [str(prefect), "--no-prompt", "deploy", "--all"],
        cwd=ROOT,
        env={**os.environ, **server.environment()},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return snapshot()


def yaml_names() -> set[str]:
    """The deployments of prefect.yaml, read here without deployments/definitions.py (flow names from the code)."""
    entries = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    flows = {
        "flows/staging.py:deploy_to_staging": "deploy-to-staging",
        "flows/production.py:deploy_to_production": "deploy-to-production",
        "flows/first_deploy.py:first_deploy": "first-deploy",
        "flows/poller.py:poll_github": "poll-github",
        "flows/delivery_report.py:delivery_report": "delivery-report",
    }
    return {f"{flows[entry['entrypoint']]}/{entry['name']}" for entry in entries}


def test_prefect_deploy_all_creates_the_deployments_and_their_automations(deployed: dict[str, dict[str, Any]]):
    assert set(deployed) == yaml_names()
    assert {
        "deploy-to-staging/staging",
        "deploy-to-production/production",
        "first-deploy/first-staging",
        "first-deploy/first-production",
    } <= set(deployed)

    staging = deployed["deploy-to-staging/staging"]
    assert staging["entrypoint"] == "flows/staging.py:deploy_to_staging"
    assert staging["parameters"] == {"target": "staging"}
    (push,) = staging["triggers"]
    assert push["enabled"]
    assert push["posture"] == "Reactive"
    assert push["expect"] == [PUSH]
    # the labels route: a branch push the receiver gave to staging, never a tag
    assert push["match"] == {"github.ref-kind": "branch", "fragalysis.environment": "staging"}
    # one expression per parameter: rendered with its JSON type (FACTS.md)
    assert push["parameters"] == {
        "source": "{{ event.payload.source }}",
        "sha": "{{ event.payload.sha }}",
        "requested_at": "{{ event.payload.pushed_at }}",
    }

    production = deployed["deploy-to-production/production"]
    assert production["entrypoint"] == "flows/production.py:deploy_to_production"
    assert production["parameters"] == {"target": "production"}
    (tag,) = production["triggers"]
    assert tag["expect"] == [PUSH]
    assert tag["match"] == {"github.ref-kind": "tag", "fragalysis.environment": "production"}
    assert tag["parameters"] == {"tag": "{{ event.payload.tag }}", "requested_at": "{{ event.payload.pushed_at }}"}

    for name in ("first-deploy/first-staging", "first-deploy/first-production"):
        assert deployed[name]["triggers"] == [], "a first deployment is started by hand"
    for name in ("deploy-to-staging/staging", "deploy-to-production/production"):
        # the flow holds a slot of the environment's global limit instead (newest wins)
        assert deployed[name]["concurrency"] == (None, None)
    for entry in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]:
        (full_name,) = [name for name in deployed if name.endswith(f"/{entry['name']}")]
        intervals = [json.loads(s[0]).get("interval") for s in deployed[full_name]["schedules"]]
        expected = [float(s["interval"]) if "interval" in s else None for s in entry.get("schedules") or []]
        assert intervals == expected, full_name
    # the delivery report: one daily schedule per environment, each with its own parameters
    report = deployed["delivery-report/daily"]
    assert report["parameters"] == {"days": 30}
    assert {(json.loads(s[0])["cron"], s[2]) for s in report["schedules"]} == {
        ("0 6 * * *", repr({"environment": "staging"})),
        ("5 6 * * *", repr({"environment": "production"})),
    }


def test_the_triggers_send_a_tag_to_production_and_a_branch_to_staging(deployed: dict[str, dict[str, Any]]):
    """Events as the receiver posts them: the production tag makes one production run (and no staging run), the
    staging branch one staging run, each with its parameters of the right type (no worker: they stay Scheduled)."""
    from prefect.settings import PREFECT_API_URL

    sha = "a" * 40
    tag_push = push_event("tag", "production", repository="xchem/fragalysis-stack", name="1.0.3", sha="b" * 40)
    branch_push = push_event("branch", "staging", repository="xchem/fragalysis-frontend", name="staging", sha=sha)
    api = str(PREFECT_API_URL.value())
    assert httpx.post(f"{api}/events", json=[tag_push], timeout=10).status_code == 204
    (production,) = wait_for(lambda: runs_of("deploy-to-production", "production"), "a production run", 60)
    pushed = tag_push["payload"]["pushed_at"]
    assert production.parameters == {"target": "production", "tag": "1.0.3", "requested_at": pushed}
    assert httpx.post(f"{api}/events", json=[branch_push], timeout=10).status_code == 204
    (staging,) = wait_for(lambda: runs_of("deploy-to-staging", "staging"), "a staging run", 60)
    pushed = branch_push["payload"]["pushed_at"]
    assert staging.parameters == {"target": "staging", "source": "frontend", "sha": sha, "requested_at": pushed}
    assert len(runs_of("deploy-to-production", "production")) == 1


def push_event(kind: str, environment: str, *, repository: str, name: str, sha: str) -> dict[str, Any]:
    """A ``fragalysis.github.push`` event in the receiver's vocabulary (docs: issue 9's agreed interface)."""
    ref = f"refs/tags/{name}" if kind == "tag" else f"refs/heads/{name}"
    source = "stack" if repository.endswith("stack") else "frontend"
    now = datetime.now(UTC).isoformat()
    return {
        "id": str(uuid.uuid4()),
        "occurred": now,
        "event": PUSH,
        "resource": {
            "prefect.resource.id": f"github.repository.{repository}",
            "github.repository": repository,
            "github.ref-kind": kind,
            "github.ref": name,
            "fragalysis.source": source,
            "fragalysis.environment": environment,
        },
        "payload": {
            "repository": repository,
            "ref": ref,
            "ref_kind": kind,
            "name": name,
            "source": source,
            "sha": sha,
            "tag": name if kind == "tag" else "",
            "before": "0" * 40,
            "forced": False,
            "pusher": "octocat",
            "delivery": str(uuid.uuid4()),
            "environment": environment,
            "target": environment,
            "pushed_at": now,
        },
        "related": [],
    }


def runs_of(flow: str, deployment: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        deployment_id = client.read_deployment_by_name(f"{flow}/{deployment}").id
        return list(
            client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
        )


def test_the_served_deployments_are_the_ones_prefect_deploy_creates(deployed: dict[str, dict[str, Any]]):
    """What ``serve`` registers (``aapply()`` of each RunnerDeployment from deployments/definitions.py) leaves the
    server with the very deployments and automations that ``prefect deploy --all`` made: no second automation, no
    parameter, tag, schedule or trigger that differs."""
    from deployments.definitions import served_deployments

    served = served_deployments()
    assert {f"{d.flow_name}/{d.name}" for d in served} == set(deployed)
    for deployment in served:
        deployment.apply()
    assert snapshot() == deployed
