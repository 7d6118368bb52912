"""Running a deploy's flow run in a child process that a crash point kills, then retrying the same flow run (as
Prefect's retries or the UI's Retry do: same run id), for ``benchmarks/crash_resume.py`` and the crash-resume tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from uuid import UUID

from flows.crashpoints import CRASH_AT

ROOT = Path(__file__).resolve().parents[1]

RUN = textwrap.dedent(
    """
    import sys
    from uuid import UUID
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from flows.staging import deploy_to_staging

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(sys.argv[1]))
    run_flow(deploy_to_staging, flow_run=flow_run, parameters=flow_run.parameters, return_type="state")
    """
)


def create_run(**parameters: Any) -> UUID:
    """A flow run of ``deploy_to_staging`` (one request), not started."""
    from prefect.client.orchestration import get_client
    from prefect.states import Pending

    from flows.staging import deploy_to_staging

    with get_client(sync_client=True) as client:
        return client.create_flow_run(deploy_to_staging, parameters=parameters, state=Pending()).id


def run_until_crash(flow_run_id: UUID, point: str, api_url: str, timeout: float = 120.0) -> int:
    """Run the flow run in a child process that SIGKILLs itself at ``point``; returns its exit code (-9 when the
    point was reached)."""
    environment = {**os.environ, "PREFECT_API_URL": api_url, CRASH_AT: point}
    process = subprocess.run(
        [sys.executable, "-c", RUN, str(flow_run_id)],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    return process.returncode


def retry(flow_run_id: UUID) -> Any:
    """Retry the (crashed) flow run in this process, as the UI's Retry does: the same run goes AwaitingRetry, then
    runs again; returns its final state."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import AwaitingRetry

    from flows.staging import deploy_to_staging

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, AwaitingRetry(), force=True)
        flow_run = client.read_flow_run(flow_run_id)
    return run_flow(deploy_to_staging, flow_run=flow_run, parameters=flow_run.parameters, return_type="state")
