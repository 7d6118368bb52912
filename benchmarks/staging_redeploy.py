"""Benchmark: staging redeploys against the sandbox, measured: what the pipeline adds to the critical path, and
what it costs in API requests.

For N frontend commits in a row (orchestrate mode) at each speed given (one run of the benchmark, one Prefect test
server, a sandbox per speed) it reports, per deploy:
- the lead time (commit -> last pod Ready, from the services' timestamps) against the scaled 15-minute target;
- the flow's wall time, and how long it ran past the last pod Ready (verification, publishing);
- the overhead, in real seconds whatever the speed: the lag from each remote event to the pipeline's next action,
  from the services' own timestamps and the flow run's end: the source build done (its run's ``updated_at``) ->
  the stack build dispatched (that run's ``created_at``); the stack build done -> the AWX job launched (the job's
  ``created``); the later of the AWX job finished and the last pod Ready -> the flow run's end (Prefect's end
  time); summed. Beside it, not in it: Prefect's start-up (the flow run created -> the flow's first line);
- the API requests the flow made to each service (from the sandbox's request log, by our User-Agent), GitHub's
  split into those counted against the rate limit and those answered 304 (conditional, free); and the AWX requests
  the old chain's trigger action would have made over the same job (find, launch, then a poll every 5 modelled
  seconds until the job finished: FACTS.md);
and the process's peak RSS. Ratios within one run are what to compare; the machine is shared and noisy.

    .venv/bin/python -m benchmarks.staging_redeploy --runs 3 --speed 60 --speed 200 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

OLD_CHAIN_POLL_SECONDS = 5.0
"""The AWX trigger action's poll, in modelled seconds (FACTS.md "The Fragalysis delivery chain today")."""
LAGS = ("source_done_to_dispatch_s", "stack_done_to_awx_launch_s", "last_event_to_flow_end_s")


def measure(
    report: Any,
    wall: float,
    flow_run: Any,
    first_line: datetime | None,
    stack_run_created: datetime | None,
    target: float,
    speed: float,
    requests: list[Any],
) -> dict[str, Any]:
    """One deploy's figures, from its timing table (the services' timestamps), the flow run's own times (Prefect's)
    and the request log."""
    rows = {row.stage: row for row in report.table.rows}
    lead = float(report.total.duration)
    last_ready = max(row.finished for name, row in rows.items() if name.startswith("pod "))
    awx_created, awx_finished = rows["AWX job start"].started, rows["AWX job"].finished
    ended = flow_run.end_time
    lags = {
        "source_done_to_dispatch_s": _seconds(rows["source build"].finished, stack_run_created),
        "stack_done_to_awx_launch_s": _seconds(rows["stack build"].finished, awx_created),
        "last_event_to_flow_end_s": _seconds(max(awx_finished, last_ready), ended),
    }
    github = [r for r in requests if r.service == "github"]
    awx_job_seconds = (awx_finished - awx_created).total_seconds() * speed
    return {
        "speed": speed,
        "lead_time_s": lead,
        "lead_time_modelled_min": lead * speed / 60,
        "target_s": target,
        "wall_s": wall,
        "after_last_pod_s": _seconds(last_ready, ended),
        "awx_finished_after_last_pod_s": _seconds(last_ready, awx_finished),
        **lags,
        "overhead_s": sum(lags.values()),
        "prefect_startup_s": _seconds(flow_run.created, first_line),
        "source_to_stack_s": (rows["stack build"].started - rows["source build"].finished).total_seconds(),
        "stack_to_awx_s": (awx_created - rows["stack build"].finished).total_seconds(),
        "requests": dict(Counter(r.service for r in requests)),
        "requests_total": len(requests),
        "github_counted": sum(1 for r in github if r.status != 304),
        "github_304": sum(1 for r in github if r.status == 304),
        "github_by_endpoint": dict(Counter(f"{r.method} {_endpoint(r.path)} {r.status}" for r in github)),
        "awx_by_endpoint": dict(Counter(f"{r.method} {_endpoint(r.path)}" for r in requests if r.service == "awx")),
        "awx_job_modelled_s": awx_job_seconds,
        "old_chain_awx_requests": 2 + math.ceil(awx_job_seconds / OLD_CHAIN_POLL_SECONDS),
    }


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start is not None and end is not None else None


def _endpoint(path: str) -> str:
    """A path with its numbers and shas replaced, to count requests by endpoint."""
    parts = []
    for part in path.split("/"):
        parts.append("N" if part.isdigit() else ("SHA" if len(part) == 40 else part))
    return "/".join(parts)


@contextmanager
def first_lines() -> Iterator[list[datetime]]:
    """When each flow run reached its first line: the staging flow's first call (loading its target block) is
    wrapped to record the time (the benchmark's only hook into the flow)."""
    from flows import inputs

    seen: list[datetime] = []
    original = inputs.load_target

    def load_target(*args: Any, **kwargs: Any) -> Any:
        seen.append(datetime.now(UTC))
        return original(*args, **kwargs)

    inputs.load_target = load_target
    try:
        yield seen
    finally:
        inputs.load_target = original


class PrefectRetries(logging.Filter):
    """Counts the answers of Prefect's API that its client tried again (a 503 when the embedded SQLite database is
    locked, say: tried again after 2 s, then 4 s), from the client's own debug line, which it then drops (the
    logger's level is lowered to see them; records at the level it had go on as before)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level
        self.retries: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "retryable status code" in message:
            self.retries[message.split("retryable status code", 1)[1].split(".")[0].strip()] += 1
        elif "retryable exception" in message:
            self.retries["no answer"] += 1
        return record.levelno >= self.level


@contextmanager
def prefect_retries() -> Iterator[PrefectRetries]:
    client_logger = logging.getLogger("prefect.client")
    level = client_logger.getEffectiveLevel()
    counter = PrefectRetries(level)
    client_logger.addFilter(counter)
    client_logger.setLevel(logging.DEBUG)
    try:
        yield counter
    finally:
        client_logger.removeFilter(counter)
        client_logger.setLevel(level)


def deploy_at(speed: float, runs: int) -> list[dict[str, Any]]:
    """``runs`` staging deploys of frontend commits against a sandbox at ``speed``; their figures."""
    from prefect.client.orchestration import get_client

    from blocks import Mode
    from deployments.sandbox_target import save_sandbox_blocks
    from flows.report import DeploymentReport
    from flows.staging import deploy_to_staging
    from sandbox.runtime import FREE_PORTS, Sandbox
    from sandbox.scenario import load_scenario

    scenario = load_scenario("fragalysis")
    scenario.github.trigger_downstream = False
    scenario.github.trigger_awx = False
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as state_dir, Sandbox(scenario, speed=speed, ports=FREE_PORTS) as sandbox:
        sandbox.write_state(state_dir)
        target = save_sandbox_blocks(sandbox.endpoints(Path(state_dir)), mode=Mode.ORCHESTRATE)
        for index in range(runs):
            before = len(sandbox.requests())
            sha = sandbox.push("xchem/fragalysis-frontend", "staging", message=f"benchmark {index}")
            started = time.monotonic()
            with first_lines() as seen, prefect_retries() as retried:
                state = deploy_to_staging(source="frontend", sha=sha, return_state=True)
            wall = time.monotonic() - started
            if not state.is_completed():
                raise SystemExit(f"speed {speed} run {index} failed: {state.message}")
            report = state.result()
            run_id = state.state_details.flow_run_id
            if not isinstance(report, DeploymentReport) or run_id is None:
                raise SystemExit(f"speed {speed} run {index} returned no report: {state.message}")
            with get_client(sync_client=True) as client:
                flow_run = client.read_flow_run(run_id)
            stack_run_id = int(report.links["stack build"].rstrip("/").rsplit("/", 1)[-1])
            stack_run = sandbox.github.state.runs.get(stack_run_id)
            ours = [r for r in sandbox.requests()[before:] if r.user_agent.startswith("fragalysis-cd")]
            results.append(
                {"prefect_retries": dict(retried.retries)}
                | measure(
                    report,
                    wall,
                    flow_run,
                    seen[0] if seen else None,
                    stack_run.created_at if stack_run else None,
                    target.budgets.total,
                    speed,
                    ours,
                )
            )
    return results


def _f(value: float | None, width: int = 6) -> str:
    return f"{value:>{width}.2f}s" if value is not None else " " * width + "?"


def median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(row[key] for row in rows if row[key] is not None))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="deploys per speed")
    parser.add_argument("--speed", type=float, action="append", help="a sandbox speed (repeat it; default 60 and 200)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    speeds = args.speed or [60.0, 200.0]

    from prefect.testing.utilities import prefect_test_harness

    results: list[dict[str, Any]] = []
    from flows import progress

    with prefect_test_harness(server_startup_timeout=60):
        for speed in speeds:
            results += deploy_at(speed, args.runs)
        progress.flush()  # the last run's labels go before the test server stops
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        "speed run  lead time  modelled  target   wall  source->dispatch  stack->AWX  end->flow end  overhead  "
        "Prefect start  GitHub counted/304  requests"
    )
    for speed in speeds:
        rows = [row for row in results if row["speed"] == speed]
        for index, row in enumerate(rows):
            print(
                f"{speed:>5g} {index:>3}  {row['lead_time_s']:>8.2f}s  {row['lead_time_modelled_min']:>5.1f}min  "
                f"{row['target_s']:>5.1f}s  {row['wall_s']:>5.2f}s  {_f(row['source_done_to_dispatch_s'], 15)}  "
                f"{_f(row['stack_done_to_awx_launch_s'], 9)}  {_f(row['last_event_to_flow_end_s'], 12)}  "
                f"{_f(row['overhead_s'], 7)}  {_f(row['prefect_startup_s'], 12)}  "
                f"{row['github_counted']:>14}/{row['github_304']:<3}  {row['requests_total']} {row['requests']} "
                f"(old chain AWX {row['old_chain_awx_requests']}) Prefect retries {row['prefect_retries'] or 0}"
            )
    summary: dict[str, Any] = {"speeds": speeds, "runs": results, "peak_rss_mb": peak_mb, "by_speed": {}}
    for speed in speeds:
        rows = [row for row in results if row["speed"] == speed]
        figures = {
            key: median(rows, key)
            for key in (
                "lead_time_s",
                "after_last_pod_s",
                *LAGS,
                "overhead_s",
                "prefect_startup_s",
                "requests_total",
                "github_counted",
                "github_304",
                "old_chain_awx_requests",
            )
        }
        figures["awx_requests"] = statistics.median(row["requests"].get("awx", 0) for row in rows)
        summary["by_speed"][str(speed)] = figures
        print(
            f"speed {speed:g}: median overhead {figures['overhead_s']:.2f} s (source->dispatch "
            f"{figures['source_done_to_dispatch_s']:.2f}, stack->AWX {figures['stack_done_to_awx_launch_s']:.2f}, "
            f"end {figures['last_event_to_flow_end_s']:.2f}), Prefect start-up {figures['prefect_startup_s']:.2f} s; "
            f"median requests {figures['requests_total']:g}, GitHub {figures['github_counted']:g} counted + "
            f"{figures['github_304']:g} answered 304; AWX {figures['awx_requests']:g} (old chain "
            f"{figures['old_chain_awx_requests']:g})"
        )
    print(f"peak RSS {peak_mb:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
