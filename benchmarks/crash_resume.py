"""Benchmark: crash-resume. For each crash point (``flows/crashpoints.POINTS``) one staging request (a frontend
commit, orchestrate mode): its flow run runs in a child process that SIGKILLs itself at the point, then the same flow
run is retried (AwaitingRetry, then run again in this process, as the UI's Retry does). Per point: whether the
crash happened, the retry's outcome, the AWX launches the request made, the stack builds it dispatched, and the time
from the retry's start to its outcome.

    .venv/bin/python -m benchmarks.crash_resume [--speed 200] [--points "AWX launch,roll-out"] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def main(argv: list[str] | None = None) -> int:
    from flows.crashpoints import POINTS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed", type=float, default=200.0)
    parser.add_argument("--points", default=",".join(POINTS), help="comma-separated crash points")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from benchmarks.resume import create_run, retry, run_until_crash
    from blocks import Mode
    from deployments.sandbox_target import save_sandbox_blocks
    from sandbox.runtime import FREE_PORTS, Sandbox
    from sandbox.scenario import load_scenario

    scenario = load_scenario("fragalysis")
    scenario.github.trigger_downstream = False
    scenario.github.trigger_awx = False
    results: list[dict[str, Any]] = []
    with prefect_test_harness(server_startup_timeout=60), tempfile.TemporaryDirectory() as state_dir:
        api_url = str(PREFECT_API_URL.value())
        with Sandbox(scenario, speed=args.speed, ports=FREE_PORTS) as sandbox:
            sandbox.write_state(state_dir)
            save_sandbox_blocks(sandbox.endpoints(Path(state_dir)), mode=Mode.ORCHESTRATE)
            for point in [p.strip() for p in args.points.split(",") if p.strip()]:
                jobs = len(sandbox.call(sandbox.awx.jobs))
                stack_runs = _stack_builds(sandbox)
                sha = sandbox.push("xchem/fragalysis-frontend", "staging", message=f"crash at {point}")
                flow_run_id = create_run(source="frontend", sha=sha, target="staging")
                code = run_until_crash(flow_run_id, point, api_url, timeout=300)
                started = time.monotonic()
                state = retry(flow_run_id)
                took = time.monotonic() - started
                outcome = state.name if state.is_completed() else f"{state.name}: {(state.message or '')[:80]}"
                results.append(
                    {
                        "point": point,
                        "crashed": code == -9,
                        "retry": outcome,
                        "awx_launches": len(sandbox.call(sandbox.awx.jobs)) - jobs,
                        "stack_builds": _stack_builds(sandbox) - stack_runs,
                        "retry_seconds": took,
                    }
                )
    print(f"speed {args.speed:g}")
    print(f"{'crash point':<14}  {'crashed':<7}  {'retry outcome':<14}  AWX launches  stack builds  time to outcome")
    for row in results:
        print(
            f"{row['point']:<14}  {'yes' if row['crashed'] else 'NO':<7}  {row['retry']:<14}  "
            f"{row['awx_launches']:>12}  {row['stack_builds']:>12}  {row['retry_seconds']:>13.1f} s"
        )
    if args.json:
        args.json.write_text(json.dumps({"speed": args.speed, "points": results}, indent=2) + "\n")
    ok = all(row["crashed"] and row["awx_launches"] == 1 and row["retry"] == "Completed" for row in results)
    return 0 if ok else 1


def _stack_builds(sandbox: Any) -> int:
    """The stack repository's workflow_dispatch runs so far (the builds orchestrate mode dispatches)."""
    runs = sandbox.emulators.github.state.runs.values()
    return sum(1 for run in runs if run.event == "workflow_dispatch" and "fragalysis-stack" in str(run.repository))


if __name__ == "__main__":
    sys.exit(main())
