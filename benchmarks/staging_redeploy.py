"""Benchmark: staging redeploys against the sandbox, measured.

For N frontend commits in a row (orchestrate mode) it reports, per deploy:
- the lead time (commit -> last pod Ready, from the services' timestamps) against the scaled 15-minute target;
- the flow's wall time, and how long it ran past the last pod Ready (verification, publishing);
- the hand-offs it drives: source build done -> stack build started, stack build done -> AWX job created
  (each includes the services' own queueing, 10 modelled seconds for a GitHub run);
- the API requests the flow made to each service (from the sandbox's request log, by our User-Agent);
and the process's peak RSS. Ratios within one run are what to compare; the machine is shared and noisy.

    .venv/bin/python -m benchmarks.staging_redeploy --runs 3 --speed 60
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def measure(
    report: Any, wall: float, finished_at: datetime, target: float, speed: float, requests: list[Any]
) -> dict[str, Any]:
    """One deploy's figures, from its timing table (the services' timestamps) and the request log."""
    rows = {row.stage: row for row in report.table.rows}
    lead = float(report.total.duration)
    last_ready = max(row.finished for name, row in rows.items() if name.startswith("pod "))
    return {
        "lead_time_s": lead,
        "lead_time_modelled_min": lead * speed / 60,
        "target_s": target,
        "wall_s": wall,
        "after_last_pod_s": (finished_at - last_ready).total_seconds(),
        "source_to_stack_s": (rows["stack build"].started - rows["source build"].finished).total_seconds(),
        "stack_to_awx_s": (rows["AWX job start"].started - rows["stack build"].finished).total_seconds(),
        "requests": dict(Counter(r.service for r in requests)),
        "requests_total": len(requests),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    from prefect.testing.utilities import prefect_test_harness

    from blocks import Mode
    from deployments.sandbox_target import save_sandbox_blocks
    from flows.staging import deploy_to_staging
    from sandbox.runtime import FREE_PORTS, Sandbox
    from sandbox.scenario import load_scenario

    scenario = load_scenario("fragalysis")
    scenario.github.trigger_downstream = False
    scenario.github.trigger_awx = False
    results: list[dict[str, Any]] = []
    with prefect_test_harness(server_startup_timeout=60), tempfile.TemporaryDirectory() as state_dir:
        with Sandbox(scenario, speed=args.speed, ports=FREE_PORTS) as sandbox:
            sandbox.write_state(state_dir)
            target = save_sandbox_blocks(sandbox.endpoints(Path(state_dir)), mode=Mode.ORCHESTRATE)
            for index in range(args.runs):
                before = len(sandbox.requests())
                sha = sandbox.push("xchem/fragalysis-frontend", "staging", message=f"benchmark {index}")
                started = time.monotonic()
                state = deploy_to_staging(source="frontend", sha=sha, return_state=True)
                wall = time.monotonic() - started
                finished_at = datetime.now(UTC)
                if not state.is_completed():
                    print(f"run {index} failed: {state.message}", file=sys.stderr)
                    return 1
                report = state.result()
                ours = [r for r in sandbox.requests()[before:] if r.user_agent.startswith("fragalysis-cd")]
                results.append(measure(report, wall, finished_at, target.budgets.total, args.speed, ours))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("run  lead time  modelled  target   wall  after last pod  source->stack  stack->AWX  requests")
    for index, row in enumerate(results):
        print(
            f"{index:>3}  {row['lead_time_s']:>8.2f}s  {row['lead_time_modelled_min']:>5.1f}min  "
            f"{row['target_s']:>5.1f}s  {row['wall_s']:>5.2f}s  {row['after_last_pod_s']:>13.2f}s  "
            f"{row['source_to_stack_s']:>12.2f}s  {row['stack_to_awx_s']:>9.2f}s  "
            f"{row['requests_total']} {row['requests']}"
        )
    summary = {
        "speed": args.speed,
        "runs": results,
        "median_lead_time_s": statistics.median(r["lead_time_s"] for r in results),
        "median_after_last_pod_s": statistics.median(r["after_last_pod_s"] for r in results),
        "median_requests": statistics.median(r["requests_total"] for r in results),
        "peak_rss_mb": peak_mb,
    }
    print(
        f"median lead time {summary['median_lead_time_s']:.2f} s (target {results[0]['target_s']:.1f} s), "
        f"median {summary['median_after_last_pod_s']:.2f} s past the last pod, "
        f"median requests {summary['median_requests']}, "
        f"peak RSS {peak_mb:.0f} MB"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
