"""Serving a flow as a deployment in a child process, as ``serve`` does, for the tests that need Prefect to start,
suspend, resume or cancel runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]

SERVE = textwrap.dedent(
    """
    import sys
    from importlib import import_module
    from prefect import serve

    flow = getattr(import_module(sys.argv[1]), sys.argv[2])
    serve(flow.to_deployment(name=sys.argv[3], tags=["fragalysis"]), limit=int(sys.argv[4]))
    """
)


@contextmanager
def served(flow: str, name: str, api_url: str, *, limit: int = 6, env: dict[str, str] | None = None) -> Iterator[str]:
    """``flow`` ("flows.staging:deploy_to_staging") served as deployment ``<flow name>/<name>`` by a child process
    polling every second, running up to ``limit`` runs at once; yields the deployment's full name once it exists."""
    module, attribute = flow.split(":")
    environment = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        **(env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, module, attribute, name, str(limit)],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    flow_name = {"deploy_to_staging": "deploy-to-staging", "deploy_to_production": "deploy-to-production"}[attribute]
    full_name = f"{flow_name}/{name}"
    try:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: api_url}):
            deployment_id(full_name)
        yield full_name
    finally:
        process.terminate()
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def deployment_id(full_name: str) -> UUID:
    from prefect.client.orchestration import get_client

    def read() -> Any:
        with get_client(sync_client=True) as client:
            try:
                return client.read_deployment_by_name(full_name).id
            except Exception:
                return None

    result: UUID = wait_for(read, f"deployment {full_name} to be served", deadline=120)
    return result


def read_run(flow_run_id: UUID) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def start(full_name: str, **parameters: Any) -> UUID:
    from prefect.deployments import run_deployment

    flow_run = run_deployment(full_name, parameters=parameters, timeout=0)
    return flow_run.id


def state_of(flow_run_id: UUID, *names: str, deadline: float = 180, other_than: Any = None) -> Any:
    """Wait for the run to reach a state of one of ``names``, other than the state ``other_than`` (a generous
    deadline, not a timing assertion)."""

    def reached() -> Any:
        time.sleep(0.2)  # gently: the test server is SQLite
        state = read_run(flow_run_id).state
        fresh = other_than is None or state is None or state.id != other_than.id
        return state if state is not None and state.name in names and fresh else None

    return wait_for(reached, f"flow run {flow_run_id} to be {' or '.join(names)}", deadline=deadline)


ENDED = ("Completed", "Failed", "Crashed", "Cancelled")
