"""``fragalysis-cd demo``: a staging redeploy end to end against the sandbox, visible in the Prefect UI.

It starts a Prefect server (project-local ``PREFECT_HOME``, embedded SQLite), starts the sandbox at a speed where
the ~15-minute redeploy takes well under a minute, saves the blocks pointing at the sandbox (budgets scaled by the
same factor), pushes a frontend commit, runs the staging flow, prints the timing table and the run's URL, and keeps
the UI up until Ctrl-C (``--no-wait`` exits instead).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, cast

from deployments import arguments
from deployments.prefect_server import LocalPrefectServer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fragalysis-cd demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-wait", action="store_true", help="exit once the flow has run (for scripts)")
    parser.add_argument(
        "--speed",
        type=arguments.positive_number,
        default=60.0,
        help="sandbox speed (default 60: the 15-minute redeploy takes about 15 s)",
    )
    parser.add_argument(
        "--source",
        choices=arguments.SOURCES,
        default="frontend",
        help="which repository the demo commit goes to (frontend)",
    )
    parser.add_argument("--port", type=arguments.port, default=4200, help="the Prefect server's port")
    parser.add_argument("--home", type=Path, default=Path(".prefect"), help="PREFECT_HOME (project-local)")
    parser.add_argument("--state-dir", type=Path, default=Path(".sandbox"), help="the sandbox's state files")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    server = LocalPrefectServer(args.home.resolve(), port=args.port)
    # the flow runs in this process: point Prefect at the server before it is imported
    os.environ.update(server.environment())
    print(f"Starting the Prefect server ({server.ui_url}, PREFECT_HOME={args.home}) ...", flush=True)
    server.start()
    try:
        return _run(args, server)
    except KeyboardInterrupt:
        # Ctrl-C while a run waits (for an approval, say): everything the demo started is stopped on the way out
        print("\nInterrupted: stopping the sandbox and the Prefect server ...", flush=True)
        return 130
    finally:
        _flush_to_server()
        server.stop()


def _run(args: argparse.Namespace, server: LocalPrefectServer) -> int:
    # the demo joins product and sandbox through deployments.sandboxed; product modules never import sandbox
    from blocks import Mode
    from deployments.sandbox_target import save_sandbox_blocks
    from deployments.sandboxed import orchestrate_sandbox
    from flows.staging import deploy_to_staging
    from flows.timeline import describe
    from flows.timing import render_table

    with orchestrate_sandbox(args.speed, args.state_dir) as (sandbox, endpoints):
        target = save_sandbox_blocks(endpoints, environment="staging", mode=Mode.ORCHESTRATE)
        print(
            f"Sandbox at speed {args.speed:g}: budgets are the real ones divided by {args.speed:g} "
            f"(15-minute target -> {target.budgets.total:.0f} s)."
        )
        repository = target.sources[args.source]
        sha = sandbox.push(repository.repository, repository.branch, message="demo: a change to deploy")
        print(
            f"Pushed {repository.repository}@{sha[:7]} to {repository.branch}; running the staging flow ...", flush=True
        )
        state = deploy_to_staging(source=args.source, sha=sha, return_state=True)
        report = _report(state)
        flow_run_id = state.state_details.flow_run_id
        if report is not None:
            print()
            columns = ["stage", "duration", "budget", "modelled", "verdict"]
            print(render_table(report.table.as_rows(target.time_scale), columns))
            print()
            if report.total is not None and report.total.duration is not None:
                lead = describe(report.total.duration, target.time_scale)
                print(f"Lead time {lead} (target {describe(target.budgets.total, target.time_scale)}).")
        print(f"Flow run '{_run_name(flow_run_id)}' ended {state.name}: {server.ui_url}/runs/flow-run/{flow_run_id}")
        if not state.is_completed():
            print(f"The deployment failed: {state.message}")
        production_ok = state.is_completed() and _production(args, server, sandbox, endpoints)
        _delivery_reports()
        if args.no_wait:
            return 0 if state.is_completed() and production_ok else 1
        print(
            f"The Prefect UI stays up at {server.ui_url} (artifacts: {server.ui_url}/artifacts); Ctrl-C stops.",
            flush=True,
        )
        _wait_for_interrupt()
        print("Stopping the sandbox and the Prefect server ...", flush=True)
    return 0 if state.is_completed() else 1


def _production(args: argparse.Namespace, server: LocalPrefectServer, sandbox: Any, endpoints: dict[str, Any]) -> bool:
    """The tag -> production flow through a served deployment: release 1.0.3 (approved in the UI, or from code with
    ``--no-wait``), then a bad release 1.0.4 whose pods crash-loop, rolled back to 1.0.3. True when both ended as
    they should."""
    from blocks import Mode
    from deployments.sandbox_target import save_sandbox_blocks
    from flows.approval import ensure_timeout_automation

    target = save_sandbox_blocks(endpoints, environment="production", mode=Mode.ORCHESTRATE)
    log = args.state_dir / "serve.log"
    print(f"\nServing the production deployment (its log: {log}) ...", flush=True)
    env = {**os.environ, **server.environment(), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    with log.open("ab") as output:
        serving = subprocess.Popen(
            [sys.executable, "-m", "deployments.serving", "production", "production"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deployment = _wait_for_deployment("deploy-to-production/production")
        ensure_timeout_automation(deployment, target.approval_timeout_seconds)
        good = _release(args, server, sandbox, "1.0.3", "Release 1.0.3")
        sandbox.set_faults(crashloop=[{"namespace": target.namespace, "image": f"{target.stack_image}:1.0.4"}])
        print("\nA bad release: the pods of 1.0.4 crash-loop, so the flow rolls production back to 1.0.3.")
        bad = _release(args, server, sandbox, "1.0.4", "Release 1.0.4 (its pods crash-loop)")
    finally:
        serving.terminate()
        try:
            serving.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serving.kill()
            serving.wait()
    rolled_back = bad.is_failed() and "rolled back to 1.0.3" in (bad.message or "")
    return good.is_completed() and rolled_back


def _release(args: argparse.Namespace, server: LocalPrefectServer, sandbox: Any, tag: str, message: str) -> Any:
    """Push ``tag``, start a production run, get it approved, and print how it ended with its timing table."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.flow_runs import resume_flow_run

    sha = sandbox.push("xchem/fragalysis-stack", f"refs/tags/{tag}", message=message)
    print(f"Pushed the tag {tag} ({sha[:7]}) to xchem/fragalysis-stack; starting a production run ...", flush=True)
    flow_run: FlowRun = cast(
        FlowRun, run_deployment("deploy-to-production/production", parameters={"tag": tag}, timeout=0)
    )  # a coroutine only inside an event loop
    url = f"{server.ui_url}/runs/flow-run/{flow_run.id}"
    suspended = _wait_for_state(flow_run.id, {"Suspended"}, also_final=True)
    if suspended.name == "Suspended":
        if args.no_wait:
            resume_flow_run(flow_run.id, run_input={"decision": "approve", "who": "demo", "comment": "--no-wait"})
            print(f"It waited for approval; approved from code (--no-wait): {url}", flush=True)
        else:
            print(
                f"It waits for your approval: open {url}, click Resume, choose 'approve' (or 'reject'), say who you"
                " are and why, and Submit.",
                flush=True,
            )
    final = _wait_for_state(flow_run.id, set(), also_final=True)
    _print_table(flow_run.id)
    print(f"Flow run '{_run_name(flow_run.id)}' ended {final.name}: {url}")
    if final.message and not final.is_completed():
        print(f"  {final.message}")
    return final


def _delivery_reports() -> None:
    """The delivery report of each environment the demo deployed to, and where its page is."""
    from deployments.report import artifact_url
    from flows.delivery_report import delivery_report

    print("\nDelivery reports (lead time, change failures, time to restore; also daily in `fragalysis-cd serve`):")
    for environment in ("staging", "production"):
        result = delivery_report(environment=environment, days=30)
        print(f"  {result['summary']}")
        print(f"  {artifact_url(result['artifact_id'])}", flush=True)


def _wait_for_deployment(name: str, timeout: float = 120.0) -> Any:
    import time

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            try:
                return client.read_deployment_by_name(name).id
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def _wait_for_state(flow_run_id: Any, names: set[str], *, also_final: bool) -> Any:
    """Poll the run until its state is one of ``names`` (or final): a person may take hours to approve."""
    import time

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and (state.name in names or (also_final and state.is_final())):
                return state
            time.sleep(0.5)


def _print_table(flow_run_id: Any) -> None:
    """The run's timing table, from its artifact (the run ran in the serving process)."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.timing import render_table

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    tables = [artifact for artifact in artifacts if (artifact.key or "").endswith("-timings")]
    if not tables:
        return
    rows = tables[-1].data if isinstance(tables[-1].data, list) else json.loads(str(tables[-1].data))
    print()
    print(render_table(rows, ["stage", "duration", "budget", "modelled", "verdict"]))
    print()


def _report(state: Any) -> Any:
    from flows.report import DeploymentReport

    try:
        result = state.result(raise_on_failure=False)
    except Exception:
        return None
    return result if isinstance(result, DeploymentReport) else getattr(result, "report", None)


def _flush_to_server() -> None:
    """Send the logs and events still queued in this process before the server goes away."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)


def _run_name(flow_run_id: Any) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return str(client.read_flow_run(flow_run_id).name)


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
