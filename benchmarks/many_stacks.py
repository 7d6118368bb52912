"""Benchmark: many developer stacks deploying at once, on the embedded set-up and on the scaled-out one.

The ``developers`` scenario with K stacks ``stack-devNN-default`` (one replica each), each its own environment, so
their deploys run at the same time: each developer pushes a commit to their stack repository (its push build starts)
and a flow run of ``deploy-to-staging/staging`` is created for it (``source=stack``, that sha, the stack's
``StackTarget`` block ``devNN``), K of them at once, as the webhook's trigger would. Each developer builds into
their own image (``devNN/fragalysis-stack:latest``, from their own ``devNN/fragalysis-stack`` repository), as the
Fragalysis developers do with ``stack_namespace``: with one shared ``latest``, every build would overwrite the digest
another deploy is about to verify.

Two set-ups, the sandbox in this process for both (its GitHub rate limit raised: one token serves every stack):

- **embedded**: ``fragalysis-cd serve`` (Prefect's SQLite, one server process with its services, one runner serving
  every deployment of prefect.yaml, ``--limit`` raised above K, ``--poll 1``);
- **scaled-out** (Prefect's self-hosting guide): a throwaway PostgreSQL cluster (Debian's ``initdb``/``pg_ctl``, as
  the ``postgres`` user when run as root), ``redis-server`` on a free port, ``prefect-redis`` for messaging, the
  events' causal ordering, concurrency leases and Docket; ``prefect server database upgrade``, ``prefect server start
  --no-services``, ``prefect server services start``; the process work pool ``fragalysis`` with ``prefect --no-prompt
  deploy --all`` and two ``prefect worker start`` processes (``PREFECT_WORKER_QUERY_SECONDS=1``).

Per set-up and K: runs Completed, stacks verified independently (every pod Ready and running the digest its build
pushed, read from the sandbox), the overhead per deploy (p50, p95: below), the delay from a run's creation to Running
(its process starting), the makespan, and the peak RSS summed over the server's processes and over the
runner's/workers' processes with their flow runs (sampled every second from /proc). Then the K at which the embedded
set-up's p95 overhead passes twice its one-stack value (or a run failed), and the scaled-out figures at that K.

**Overhead** of a deploy: the flow run's time past the emulated critical path. The build runs from the push, so the
path left when the run starts is the rest of its build (if any) and the AWX job (created -> finished; the job's
playbook waits for the roll-out): overhead = the run's end - max(its start (Running), its build's end) - the AWX
job's span. What is left is what the pipeline adds: the follow of the build noticing its end, the digest, the
hand-off to the AWX launch, the end of the follow, the verification, the report. Prefect's start-up before Running
is reported apart, as the start delay (created -> Running).

    .venv/bin/python -m benchmarks.many_stacks --stacks 1 20 50 [--speed 5] [--setup embedded] [--json out.json]
        [--keep DIR (the set-ups' logs)]

The scaled-out set-up needs Debian's ``postgresql`` and ``redis-server`` and the ``scale`` extra
(``pip install -e '.[scale]'``: prefect-redis); the benchmark says what is missing and stops before starting anything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.setups import (
    MemorySampler,
    SetUp,
    deployment_id,
    embedded,
    missing_for_scaled,
    request,
    scaled,
    wait_for,
)

SETUPS = ("embedded", "scaled")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

# ---------------------------------------------------------------- the figures (pure)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def overhead(running: float, end: float, build_completed: float, awx_span: float) -> float:
    """What the pipeline adds to the emulated critical path, in seconds (times in epoch seconds): from the later of
    the flow's start (Running) and its build's end to the flow's end, minus the AWX job's span (which includes the
    roll-out). The build runs from the push, so the part of it that overlaps the flow's start is nobody's cost."""
    return end - max(running, build_completed) - awx_span


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One round's figures from its runs (each with ``state``, ``verified``, and, when measured, ``overhead_s``,
    ``start_delay_s``)."""
    overheads = [r["overhead_s"] for r in runs if r.get("overhead_s") is not None]
    delays = [r["start_delay_s"] for r in runs if r.get("start_delay_s") is not None]
    return {
        "runs": len(runs),
        "completed": sum(r["state"] == "COMPLETED" for r in runs),
        "verified": sum(bool(r.get("verified")) for r in runs),
        "errors": sum(r["state"] != "COMPLETED" for r in runs),
        "overhead_p50_s": percentile(overheads, 50) if overheads else None,
        "overhead_p95_s": percentile(overheads, 95) if overheads else None,
        "start_delay_p50_s": percentile(delays, 50) if delays else None,
        "start_delay_p95_s": percentile(delays, 95) if delays else None,
    }


def knee(rounds: dict[int, dict[str, Any]]) -> int | None:
    """The smallest K whose p95 overhead passes twice the one-stack p95, or that had an error; None if none does.

    ``rounds`` maps K to its summary; the smallest K measured stands for one stack when K=1 was not run."""
    if not rounds:
        return None
    base = rounds[min(rounds)]["overhead_p95_s"]
    for k in sorted(rounds):
        summary = rounds[k]
        p95 = summary["overhead_p95_s"]
        if summary["errors"] or p95 is None or (base is not None and p95 > 2 * base):
            return k
    return None


# ---------------------------------------------------------------- the sandbox and the stacks


def user(index: int) -> str:
    return f"dev{index:02d}"


def developers_scenario(count: int) -> Any:
    """The ``developers`` scenario for ``count`` stacks, each built from its own repository into its own image."""
    from sandbox.scenario import RegistryImage, load_scenario

    scenario = load_scenario("developers", developer_stacks={"count": count})
    scenario.github.trigger_downstream = False
    scenario.github.trigger_awx = False
    scenario.github.rate_limit = 1_000_000  # one token for every stack; GitHub's limit is not what is measured
    (shared,) = scenario.github.repositories
    for index in range(count):
        name = user(index)
        image = f"{name}/fragalysis-stack"
        repository = shared.model_copy(deep=True)
        repository.name = image
        for workflow in repository.workflows:
            assert workflow.image is not None
            workflow.image.name = image
        scenario.github.repositories.append(repository)
        scenario.registry.images.append(RegistryImage(name=image, tags=["latest"]))
        namespace = f"stack-{name}-default"
        template = scenario.template(f"User ({name}) Developer Fragalysis Stack (Version Change)")
        assert template is not None
        template.image = image
        for ns in scenario.kubernetes.namespaces:
            if ns.name == namespace:
                for statefulset in ns.statefulsets:
                    statefulset.image = f"{image}:latest"
    return scenario


def save_stack_blocks(endpoints: dict[str, Any], count: int, api_url: str) -> None:
    """The ``devNN`` StackTarget blocks (sharing the sandbox's credentials blocks) on the server at ``api_url``."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from blocks import Source, SourceRepository
    from deployments.sandbox_target import sandbox_target

    with temporary_settings({PREFECT_API_URL: api_url}):
        base = sandbox_target(endpoints)
        base.github.save("sandbox-github", overwrite=True)
        base.awx.save("sandbox-awx", overwrite=True)
        base.cluster.save("sandbox-cluster", overwrite=True)
        base.registry.save("sandbox-registry", overwrite=True)

        def save(index: int) -> None:
            name = user(index)
            repository = f"{name}/fragalysis-stack"
            stack = Source.STACK
            target = base.model_copy(
                update={
                    "environment": f"stack-{name}-default",
                    "namespace": f"stack-{name}-default",
                    "job_template": f"User ({name}) Developer Fragalysis Stack (Version Change)",
                    "first_deploy_template": f"User ({name}) Developer Fragalysis Stack",
                    "stack_image": repository,
                    "stack_repository": repository,
                    "sources": {
                        **base.sources,
                        stack: SourceRepository(repository=repository, workflow="build-main.yaml", branch="master"),
                    },
                }
            )
            with temporary_settings({PREFECT_API_URL: api_url}):  # a thread starts without this context
                target.save(name, overwrite=True)

        # each save registers the block types again: a few at a time, or 50 take minutes on a loaded machine (the
        # first alone: two threads creating the same block type both try, and the second gets 409)
        save(0)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(save, range(1, count)))


def parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def sandbox_facts(sandbox: Any, shas: dict[str, str], since: datetime) -> dict[str, dict[str, Any]]:
    """Per stack, from the sandbox: its push build's end and digest, its AWX job's span, and whether its pods all run
    that digest and are Ready (an independent check of the flow's verification)."""

    def read() -> dict[str, dict[str, Any]]:
        facts: dict[str, dict[str, Any]] = {}
        runs = list(sandbox.github.state.runs.values())
        jobs = sandbox.awx.jobs()
        for name, sha in shas.items():
            builds = [r for r in runs if r.repository == f"{name}/fragalysis-stack" and r.head_sha == sha]
            template = f"User ({name}) Developer Fragalysis Stack (Version Change)"
            launched = [j for j in jobs if j["name"] == template and parse(j["created"]) >= since]
            build = builds[-1] if builds else None
            job = launched[-1] if launched else None
            pods = sandbox.kubernetes.pods(f"stack-{name}-default", {"name": "stack"})
            digest = build.image_digest if build is not None else None
            done = build if build is not None and build.status == "completed" else None
            facts[name] = {
                "builds": len(builds),
                "awx_jobs": len(launched),
                "build_completed": done.updated_at.timestamp() if done is not None else None,
                "build_span_s": (done.updated_at - done.created_at).total_seconds() if done is not None else None,
                "awx_span_s": (parse(job["finished"]) - parse(job["created"])).total_seconds()
                if job is not None and job.get("finished")
                else None,
                "verified_in_sandbox": bool(pods)
                and digest is not None
                and all(_runs_digest(pod, digest) for pod in pods),
            }
        return facts

    result: dict[str, dict[str, Any]] = sandbox.call(read)
    return result


def _runs_digest(pod: dict[str, Any], digest: str) -> bool:
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))
    statuses = pod.get("status", {}).get("containerStatuses", [])
    return ready and bool(statuses) and all(s.get("imageID", "").endswith(digest) for s in statuses)


# ---------------------------------------------------------------- one round


class Api:
    """The Prefect API of a set-up (``setups.request``: tried again on 503 and 429), counting those answers, and the
    reads of the round's progress that got no answer at all (``unanswered``: an overwhelmed server, which the round
    reports rather than dying of)."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.counter = [0]
        self.unanswered = 0

    @property
    def busy(self) -> int:
        return self.counter[0]

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return request("POST", self.api_url + path, json=body, busy=self.counter).raise_for_status().json()

    def read_runs(self, ids: list[str]) -> list[dict[str, Any]] | None:
        """The round's flow runs; None when the server did not answer (counted)."""
        try:
            return list(self.post("/flow_runs/filter", {"flow_runs": {"id": {"any_": ids}}, "limit": 200}))
        except httpx.HTTPError:
            self.unanswered += 1
            return None

    def close(self) -> None:
        pass


class Unresponsive(Exception):
    """The set-up's API answered no read of the round's runs for too long."""


def run_round(setup: SetUp, sandbox: Any, count: int, timeout: float, unresponsive: float = 300.0) -> dict[str, Any]:
    """K deploys at once on ``setup``: their figures and the round's summary. The round ends when every run has
    ended, at ``timeout``, or when the API has answered no read for ``unresponsive`` seconds (``gave_up`` says)."""
    api = Api(setup.api_url)
    deployment = deployment_id(setup.api_url)
    since = datetime.now().astimezone()
    load_before = os.getloadavg()
    ids: dict[str, str] = {}
    shas: dict[str, str] = {}
    with MemorySampler(setup.memory_groups) as memory:
        started = time.monotonic()
        for index in range(count):
            # a developer pushes to their stack repository: its push build starts, and (as the webhook's trigger
            # would) a deploy of that commit to their stack
            shas[user(index)] = sandbox.push(f"{user(index)}/fragalysis-stack", "master", message="benchmark")
            body = {"parameters": {"source": "stack", "sha": shas[user(index)], "target": user(index)}}
            try:
                ids[user(index)] = api.post(f"/deployments/{deployment}/create_flow_run", body)["id"]
            except httpx.HTTPError as error:  # no run for this stack: counted as one that did not complete
                print(f"  {user(index)}: no flow run created ({type(error).__name__}: {error})", flush=True)
        created_in = time.monotonic() - started

        answered = [time.monotonic()]

        def ended() -> list[dict[str, Any]] | None:
            runs = api.read_runs(list(ids.values()))
            if runs is None:
                if time.monotonic() - answered[0] > unresponsive:
                    raise Unresponsive
                return None
            answered[0] = time.monotonic()
            return runs if len(runs) == len(ids) and all(r["state_type"] in FINAL for r in runs) else None

        gave_up = None
        try:
            final = wait_for(ended, f"{count} deploys to end", timeout, 2.0)
        except TimeoutError:
            final, gave_up = api.read_runs(list(ids.values())) or [], "round timeout"
        except Unresponsive:
            final, gave_up = [], f"the API answered no read for {unresponsive:.0f} s"
            print(f"  K={count}: {gave_up}: the round ends with the runs' states unknown", flush=True)
        makespan = time.monotonic() - started
        memory.sample()
    load_after = os.getloadavg()
    facts = sandbox_facts(sandbox, shas, since)
    by_id = {run["id"]: run for run in final}
    runs = []
    for name in shas:
        run = by_id.get(ids.get(name, ""), {})
        run_id = ids.get(name)
        fact = facts[name]
        wall = start_delay = cost = None
        if run.get("start_time") and run.get("end_time"):
            wall = (parse(run["end_time"]) - parse(run["start_time"])).total_seconds()
            start_delay = (parse(run["start_time"]) - parse(run["created"])).total_seconds()
        if wall is not None and fact["build_completed"] is not None and fact["awx_span_s"] is not None:
            running, end = parse(run["start_time"]).timestamp(), parse(run["end_time"]).timestamp()
            cost = overhead(running, end, fact["build_completed"], fact["awx_span_s"])
        runs.append(
            {
                "stack": name,
                "flow_run": run_id,
                "state": run.get("state_type", "UNKNOWN"),
                "message": (run.get("state") or {}).get("message"),
                "wall_s": wall,
                "start_delay_s": start_delay,
                **fact,
                "verified": run.get("state_type") == "COMPLETED" and fact["verified_in_sandbox"],
                "overhead_s": cost,
            }
        )
    api.close()
    return {
        "stacks": count,
        **summarise(runs),
        "makespan_s": makespan,
        "created_in_s": created_in,
        "api_busy_answers": api.busy,
        "api_unanswered_reads": api.unanswered,
        "gave_up": gave_up,
        **memory.figures(),
        "load_before": [round(x, 1) for x in load_before],
        "load_after": [round(x, 1) for x in load_after],
        "detail": runs,
    }


def _drop_poller(api_url: str) -> None:
    """The poller's 60-s schedule would add runs (and processes) that are not deploys: its deployment is deleted for
    the benchmark, with the runs the scheduler made ahead (the set-ups are up once it is registered)."""
    poller = deployment_id(api_url, "poll-github/poller")
    if poller is not None:
        request("DELETE", f"{api_url}/deployments/{poller}").raise_for_status()


def show(setup: str, row: dict[str, Any]) -> None:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}s"

    print(
        f"{setup:>8} K={row['stacks']:<3} completed {row['completed']}/{row['runs']} verified {row['verified']}  "
        f"overhead p50 {seconds(row['overhead_p50_s'])} p95 {seconds(row['overhead_p95_s'])}  "
        f"start delay p50 {seconds(row['start_delay_p50_s'])} p95 {seconds(row['start_delay_p95_s'])}  "
        f"makespan {row['makespan_s']:.0f}s (runs created in {row['created_in_s']:.0f}s, "
        f"{row['api_busy_answers']} answers 503/429, {row['api_unanswered_reads']} reads unanswered)  "
        f"peak RSS server {row['peak_rss_server_mb']} MB, "
        f"workers {row['peak_rss_workers_mb']} MB ({row['peak_processes_workers']} processes)  "
        f"load {row['load_before'][0]} -> {row['load_after'][0]}",
        flush=True,
    )
    if row.get("gave_up"):
        print(f"           the round ended early: {row['gave_up']}", flush=True)
    for run in row["detail"]:
        if run["state"] != "COMPLETED":
            print(f"           {run['stack']}: {run['state']}: {(run['message'] or '')[:300]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stacks", type=int, nargs="+", default=[1, 20, 50], help="K, stacks deploying at once")
    parser.add_argument("--speed", type=float, default=5.0, help="the sandbox's speed (a deploy ~95 s at 5)")
    parser.add_argument("--setup", choices=SETUPS, action="append", help="default: both, embedded first")
    parser.add_argument("--workers", type=int, default=2, help="process workers of the scaled-out set-up")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a round may take")
    parser.add_argument(
        "--unresponsive", type=float, default=300.0, help="end a round whose API answers no read for this long"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, help="keep the set-ups' logs in this directory")
    args = parser.parse_args(argv)
    setups: list[str] = args.setup or list(SETUPS)
    # SIGTERM unwinds as Ctrl-C does, so that every set-up started is stopped on the way out
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if "scaled" in setups and (missing := missing_for_scaled()):
        print("the scaled-out set-up needs what is missing here:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    os.environ.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"})
    from sandbox.runtime import FREE_PORTS, Sandbox

    largest = max(args.stacks)
    results: dict[str, Any] = {"speed": args.speed, "stacks": args.stacks, "cpus": os.cpu_count(), "setups": {}}
    with tempfile.TemporaryDirectory(prefix="many-stacks-") as temporary:
        directory = args.keep or Path(temporary)
        with Sandbox(developers_scenario(largest), speed=args.speed, ports=FREE_PORTS) as sandbox:
            sandbox.write_state(directory / "sandbox")
            endpoints = sandbox.endpoints((directory / "sandbox").resolve())
            for name in setups:
                place = directory / name
                place.mkdir(parents=True, exist_ok=True)
                print(f"{name}: starting ...", flush=True)
                begun = time.monotonic()
                factory = embedded(place, largest + 2) if name == "embedded" else scaled(place, largest, args.workers)
                rounds: dict[str, Any] = {}
                with factory as setup:
                    print(f"{name}: up in {time.monotonic() - begun:.0f} s ({setup.api_url})", flush=True)
                    _drop_poller(setup.api_url)
                    begun = time.monotonic()
                    save_stack_blocks(endpoints, largest, setup.api_url)
                    print(f"{name}: {largest} StackTarget blocks saved in {time.monotonic() - begun:.0f} s", flush=True)
                    for count in args.stacks:
                        row = run_round(setup, sandbox, count, args.timeout, args.unresponsive)
                        show(name, row)
                        rounds[str(count)] = row
                        results["setups"][name] = rounds
                        if args.json:  # after every round: a long run stopped later keeps what it measured
                            args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


def report(results: dict[str, Any]) -> None:
    """The knee: where the embedded p95 overhead passes twice its one-stack value, and the scaled-out one there."""
    setups = results["setups"]
    if "embedded" not in setups:
        return
    rounds = {int(k): v for k, v in setups["embedded"].items()}
    at = knee(rounds)
    results["knee"] = at
    if at is None:
        print(f"embedded: p95 overhead stayed within twice its {min(rounds)}-stack value up to K={max(rounds)}")
        return
    row = rounds[at]
    base = rounds[min(rounds)]["overhead_p95_s"]
    print(
        f"embedded: at K={at} the p95 overhead is {row['overhead_p95_s']} s against {base} s for K={min(rounds)}, "
        f"errors {row['errors']}"
    )
    other = setups.get("scaled", {}).get(str(at))
    if other:
        print(
            f"scaled-out at K={at}: p95 overhead {other['overhead_p95_s']} s, errors {other['errors']}, "
            f"completed {other['completed']}/{other['runs']}"
        )


if __name__ == "__main__":
    sys.exit(main())
