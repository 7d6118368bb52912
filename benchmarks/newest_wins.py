"""Benchmark: five quick commits through ``fragalysis-cd serve --sandbox``, and how soon the newest starts once the
environment is free.

Each round pushes one frontend commit to staging, waits until its deploy holds the environment, pushes four more
within about a second (five signed webhooks), and waits for the five runs to end. It reports per round the outcome
(expected: the first and the newest commit Completed, the three between Cancelled "superseded"), the AWX launches, and
the hand-over: from the first deploy's "Released staging" log line to the newest deploy's "Holding staging" (both
written by ``flows/environments.py``, on one machine's clock). A waiting deploy tries for the slot every
``POLL_SECONDS`` (2 s), so the hand-over should be about 1 s on average and under ``POLL_SECONDS`` plus an API round
trip, where Prefect's deployment concurrency (ENQUEUE) would re-check every 30 s.

That holds when the newest run's process is up and waiting when the environment frees. At high speeds a deploy is
shorter than starting four flow-run processes at once on a small machine (measured: 35 s from Submitting to Running
for four runs on 2 cores, against a 20-s deploy at speed 200), and the hand-over is then the newest's own start-up:
the round reports whether the newest was waiting (Running before the release). The default speed, 20, gives the
first deploy 45 s.

    .venv/bin/python -m benchmarks.newest_wins --rounds 3 [--speed 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.webhook_latency import Served, parse, wait

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def staging_runs(served: Served) -> list[dict[str, Any]]:
    body = {"deployments": {"id": {"any_": [served.staging]}}}
    return list(served.api.post("/flow_runs/filter", json=body).raise_for_status().json())


def log_time(served: Served, run_id: str, starts: str) -> Any:
    """When the run logged a message starting with ``starts`` (None if it has not)."""
    body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200, "sort": "TIMESTAMP_ASC"}
    logs = served.api.post("/logs/filter", json=body).raise_for_status().json()
    return next((parse(log["timestamp"]) for log in logs if log["message"].startswith(starts)), None)


def awx_jobs(served: Served) -> int:
    awx = served.endpoints["awx"]
    headers = {"Authorization": f"Bearer {awx['token']}"}
    return int(httpx.get(f"{awx['url']}{awx['api_path']}jobs/", headers=headers, timeout=30).json()["count"])


def push(served: Served, message: str) -> str:
    body = {"repository": "xchem/fragalysis-frontend", "ref": "staging", "message": message}
    return str(served.github.post("/_sandbox/push", json=body).raise_for_status().json()["sha"])


def one_round(served: Served, number: int) -> dict[str, Any]:
    known = {run["id"] for run in staging_runs(served)}
    jobs_before = awx_jobs(served)

    def new_runs(count: int) -> list[dict[str, Any]] | None:
        time.sleep(0.2)
        found = [run for run in staging_runs(served) if run["id"] not in known]
        # a run without requested_at was not started by a webhook (a poll): ordered by its creation
        found.sort(key=lambda run: run["parameters"].get("requested_at") or run["created"])
        return found if len(found) >= count else None

    shas = [push(served, f"round {number} change 1")]
    (first,) = wait(lambda: new_runs(1), "the first commit's run", 120)
    wait(lambda: log_time(served, first["id"], "Holding staging"), "the first deploy to hold staging", 120)
    shas += [push(served, f"round {number} change {n}") for n in range(2, 6)]
    wait(lambda: new_runs(5), "a run for each commit", 120)

    def ended() -> list[dict[str, Any]] | None:
        found = new_runs(5)
        return found if found and all(run["state"]["type"] in FINAL for run in found) else None

    final = wait(ended, "the five runs to end", 600)
    newest = final[-1]
    released = log_time(served, final[0]["id"], "Released staging")
    holding = log_time(served, newest["id"], "Holding staging")
    states = served.api.get("/flow_run_states/", params={"flow_run_id": newest["id"]}).raise_for_status().json()
    running = min(parse(state["timestamp"]) for state in states if state["type"] == "RUNNING")
    return {
        "in push order": [run["parameters"]["sha"] for run in final] == shas,
        "states": [run["state"]["name"] for run in final],
        "newest deployed": newest["parameters"]["sha"] == shas[-1] and newest["state"]["type"] == "COMPLETED",
        "awx launches": awx_jobs(served) - jobs_before,
        "hand-over s": (holding - released).total_seconds() if released and holding else None,
        "newest was waiting": bool(released and running < released),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--speed", type=float, default=20.0, help="the sandbox's speed (a deploy takes ~15 min/speed)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="newest-wins-") as directory:
        print("starting fragalysis-cd serve --sandbox ...", flush=True)
        served = Served(1.0, args.speed, Path(directory))
        try:
            for number in range(args.rounds):
                result = one_round(served, number)
                results.append(result)
                print(f"  round {number}: " + "  ".join(f"{key} {value}" for key, value in result.items()), flush=True)
        finally:
            served.stop()
    gaps = [r["hand-over s"] for r in results if r["hand-over s"] is not None and r["newest was waiting"]]
    good = sum(r["states"] == ["Completed", "Cancelled", "Cancelled", "Cancelled", "Completed"] for r in results)
    print(
        f"\n{good} of {len(results)} rounds: first and newest Completed, three superseded; "
        f"AWX launches {[r['awx launches'] for r in results]}; hand-over released -> holding where the newest "
        f"was waiting ({len(gaps)} rounds): "
        f"median {statistics.median(gaps):.2f} s, max {max(gaps):.2f} s"
        if gaps
        else f"\n{good} of {len(results)} rounds as expected; the newest was never waiting: no hand-over measured"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
