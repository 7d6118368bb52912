"""How long a cancelled deploy takes to end, served (``serve``) and run by a process worker.

A real ``prefect server start`` and a sandbox whose AWX job stays pending; a staging deploy is started through its
deployment, cancelled (``Cancelling`` through the API, as the UI's Cancel does) once its AWX job exists, and timed
to its final state. Prefect's runner and worker send SIGTERM, then SIGKILL 30 s later; the figure shows how far
inside that grace the flow ends, and that its AWX job was cancelled.

    .venv/bin/python benchmarks/cancel_latency.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.setups import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).parent / "prefect")
sys.path.insert(0, str(ROOT))

SERVE = textwrap.dedent(
    """
    from prefect import serve
    from flows.staging import deploy_to_staging
    serve(deploy_to_staging.to_deployment(name="bench-served"), limit=4)
    """
)
DEPLOY_FOR_WORKER = textwrap.dedent(
    """
    import sys
    from prefect import flow
    flow.from_source(source=sys.argv[1], entrypoint="flows/staging.py:deploy_to_staging").deploy(
        name="bench-worker", work_pool_name="bench-process", build=False, push=False
    )
    """
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from deployments.prefect_server import LocalPrefectServer

    work = Path(tempfile.mkdtemp(prefix="cancel-latency-"))
    server = LocalPrefectServer(work / "prefect-home", port=free_port())
    server.start()
    env = {
        **os.environ,
        **server.environment(),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server.environment()["PREFECT_API_URL"]}):
        return _measure(args, work, server, env)


def _measure(args: argparse.Namespace, work: Path, server: Any, env: dict[str, str]) -> int:
    from deployments.sandbox_target import sandbox_target
    from sandbox.runtime import FREE_PORTS, Sandbox
    from sandbox.scenario import load_scenario

    scenario = load_scenario("fragalysis")
    scenario.github.trigger_downstream = scenario.github.trigger_awx = False
    sandbox = Sandbox(scenario, speed=200, ports=FREE_PORTS).start()
    children: list[subprocess.Popen[bytes]] = []
    try:
        sandbox.set_faults(awx_jobs=[{"template": "Staging Fragalysis Stack (Version Change)", "outcome": "pending"}])
        sandbox.write_state(work / "sandbox")
        from blocks import Budgets

        target = sandbox_target(sandbox.endpoints((work / "sandbox").resolve()), environment="staging")
        target = target.model_copy(update={"budgets": Budgets(wait_factor=100.0).scaled(200)})
        target.save("staging", overwrite=True)

        children.append(
            subprocess.Popen(
                [sys.executable, "-c", SERVE], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
        subprocess.run(
            [PREFECT, "work-pool", "create", "bench-process", "--type", "process"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        subprocess.run(
            [sys.executable, "-c", DEPLOY_FOR_WORKER, str(ROOT)],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        children.append(
            subprocess.Popen(
                [PREFECT, "worker", "start", "--pool", "bench-process", "--type", "process"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        print("| runner | run | cancel -> final state | final state | AWX job |")
        print("|---|---|---|---|---|")
        timelines: list[tuple[str, list[tuple[float, str]]]] = []
        for name in ("deploy-to-staging/bench-served", "deploy-to-staging/bench-worker"):
            for n in range(args.runs):
                took, state, job, logs = _cancel_one(name, sandbox)
                print(f"| {name.split('-')[-1]} | {n + 1} | {took:.1f} s | {state} | {job} |")
                timelines.append((f"{name.split('-')[-1]} {n + 1}", logs))
        print("\nWhat each run logged after the cancel (seconds after it):")
        for label, logs in timelines:
            print(f"  {label}: " + "; ".join(f"+{offset:.1f} s {message}" for offset, message in logs))
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=40)
            except subprocess.TimeoutExpired:
                child.kill()
        sandbox.stop()
        server.stop()
    return 0


def _cancel_one(name: str, sandbox: Any) -> tuple[float, str, str, list[tuple[float, str]]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterTimestamp
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.states import Cancelling

    wait_for(lambda: _deployment_exists(name), f"the deployment {name}", 120)
    sha = sandbox.push("xchem/fragalysis-frontend", "staging", message="to be cancelled")
    before = {job["id"] for job in sandbox.call(sandbox.awx.jobs)}
    run: FlowRun = run_deployment(  # type: ignore[assignment]
        name, parameters={"source": "frontend", "sha": sha, "target": "staging"}, timeout=0
    )
    job = wait_for(
        lambda: next((j for j in sandbox.call(sandbox.awx.jobs) if j["id"] not in before), None), "the AWX job", 240
    )
    asked = time.monotonic()
    asked_at = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelling(message="benchmark"))

        def ended() -> Any:
            state = client.read_flow_run(run.id).state
            return state if state is not None and state.is_final() else None

        state = wait_for(ended, "the run to end", 120, interval=0.1)
        took = time.monotonic() - asked
        time.sleep(2)  # the last lines reach the server a moment after the final state
        since = LogFilterTimestamp.model_validate({"after_": asked_at})
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]), timestamp=since))
    timeline = [((log.timestamp - asked_at).total_seconds(), log.message.splitlines()[0][:90]) for log in logs]
    return took, state.name, sandbox.call(sandbox.awx.job, job["id"])["status"], sorted(timeline)


def _deployment_exists(name: str) -> bool:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(name)
            return True
        except Exception:
            return False


if __name__ == "__main__":
    sys.exit(main())
