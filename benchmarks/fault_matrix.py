"""Benchmark: the fault matrix. Deploys against the sandbox under each fault, and what came of it.

- **Transient** faults, on every service at once and aimed at our clients (``User-Agent: fragalysis-cd/...``):
  10% 5xx, 5% 429, 2% dropped connections, 2% lost answers (the service acts, its answer never arrives), 5% slow
  answers, Kubernetes watches that expire (410 Gone on the next watch), and a GitHub rate limit whose window resets
  within the clients' cap on waiting. N staging and M production deploys must all complete, each with one AWX job
  (no duplicate launch); the time the retries cost is the wall time against deploys without faults.
- **Permanent** faults, one sandbox each: the run must end Failed within its stage's budget times the factor (a
  grace period for stuck pods; plus the rollback's own budgets in production), naming the stage, the remote object,
  its URL and the reason, with nothing that we started left running (a job we launched is canceled).

The table (markdown) has one row per fault: expected outcome, observed outcome, time to outcome, AWX launches (POSTs
of ours to a template's ``launch/``; "jobs" are the jobs AWX made), and whether nothing was left running.

    .venv/bin/python -m benchmarks.fault_matrix --staging 20 --production 5 --speed 100 --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")

if TYPE_CHECKING:
    from blocks import StackTarget
    from sandbox.runtime import Sandbox
    from sandbox.scenario import Scenario

STAGING_VC = "Staging Fragalysis Stack (Version Change)"
PRODUCTION_VC = "Production Fragalysis Stack (Version Change)"
STACK = "xchem/fragalysis-stack"
OUR_AGENT = "^fragalysis-cd/"
CRASH_ERROR = "ModuleNotFoundError: No module named 'viewer.squonk2'"
SOURCES = {"frontend": ("xchem/fragalysis-frontend", "staging"), "stack": (STACK, "master")}
RUNNING_JOB = {"new", "pending", "waiting", "running"}

TRANSIENT_HTTP = {
    "error_rate": 0.10,
    "error_status": 503,
    "rate_limit_rate": 0.05,
    "retry_after_seconds": 1,
    "drop_rate": 0.02,
    "lose_answer_rate": 0.02,
    "slow_rate": 0.05,
    "slow_seconds": 0.5,
    "user_agents": OUR_AGENT,
}
"""The issue's rates on every request of ours to a service; slow answers take 0.5 real seconds."""
WATCH_EXPIRE_SECONDS = 2.0
"""Real seconds: every watch ends and the history is compacted, so the next watch gets 410 Gone."""
RATE_LIMIT = 10
RATE_LIMIT_WINDOW_SECONDS = 2.0
"""A GitHub window of 10 requests per 2 real seconds: a deploy runs out of it and waits for the reset (well within
the clients' 60-s cap), 403 with ``x-ratelimit-remaining: 0`` as GitHub answers."""


# ---------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One permanent fault: how to make it, and the stage the run must fail at, saying ``words``."""

    fault: str
    stage: str
    words: tuple[str, ...]
    environment: str = "staging"
    source: str = "stack"
    """Staging: the stack commit (no source build: quicker) unless the fault is in a source build."""
    faults: dict[str, Any] = field(default_factory=dict)
    scenario: Callable[[Scenario], None] | None = None
    target: Callable[[StackTarget], dict[str, Any]] | None = None
    good_first: bool = False
    """Production: deploy a good tag first, so that a failure after the StatefulSet changed is rolled back to it
    (and the limit includes the rollback's budgets)."""
    outcome: str = ""
    """What the expected outcome adds to "Failed at <stage>"."""


def _template(name: str, **changes: Any) -> Callable[[Scenario], None]:
    def change(scenario: Scenario) -> None:
        template = scenario.template(name)
        assert template is not None, name
        for key, value in changes.items():
            setattr(template, key, value)

    return change


def _duplicate_template(scenario: Scenario) -> None:
    template = scenario.template(STAGING_VC)
    assert template is not None
    scenario.awx.organizations.append("Diamond")
    scenario.awx.templates.append(template.model_copy(update={"organization": "Diamond"}))


def _wrong_token(service: str) -> Callable[[StackTarget], dict[str, Any]]:
    from pydantic import SecretStr

    def change(target: StackTarget) -> dict[str, Any]:
        if service == "github":
            return {"github": target.github.model_copy(update={"token": SecretStr("ghp_wrongTokenForTheMatrix00000")})}
        if service == "awx":
            return {"awx": target.awx.model_copy(update={"token": SecretStr("awx_wrong_token_for_the_matrix")})}
        if service == "registry":
            return {"registry": target.registry.model_copy(update={"password": SecretStr("wrong-registry-password")})}
        assert target.cluster.kubeconfig is not None
        kubeconfig = re.sub(r"token: \S+", "token: k8s-wrong-token", target.cluster.kubeconfig.get_secret_value())
        return {"cluster": target.cluster.model_copy(update={"kubeconfig": SecretStr(kubeconfig)})}

    return change


def _tls(target: StackTarget) -> dict[str, Any]:
    """The cluster's kubeconfig without the sandbox's CA: the API server's certificate fails verification against
    the system's CAs (the Kubernetes emulator always serves HTTPS with a CA made at its start)."""
    assert target.cluster.kubeconfig is not None
    kubeconfig = re.sub(r"\n\s*certificate-authority-data: \S+", "", target.cluster.kubeconfig.get_secret_value())
    assert "certificate-authority" not in kubeconfig
    from pydantic import SecretStr

    return {"cluster": target.cluster.model_copy(update={"kubeconfig": SecretStr(kubeconfig)})}


def _missing_template(target: StackTarget) -> dict[str, Any]:
    return {"job_template": "Staging Fragalysis Stack (No Such Template)"}


def permanent_cases() -> list[Case]:
    """Every permanent fault of the issue, in pipeline order."""
    ns = "staging-stack"
    return [
        Case(
            "build failed (frontend)",
            "source build",
            ("xchem/fragalysis-frontend", "failure", "/actions/runs/"),
            source="frontend",
            faults={"failing_builds": [{"repository": "xchem/fragalysis-frontend", "workflow": "build-staging.yaml"}]},
        ),
        Case(
            "image missing from the registry",
            "image",
            (f"{STACK}:latest",),
            faults={"missing_images": [f"{STACK}:latest"]},
        ),
        Case("template missing", "AWX job", ("No Such Template", "/job_templates/"), target=_missing_template),
        Case("template duplicated (two organisations)", "AWX job", (STAGING_VC, "2"), scenario=_duplicate_template),
        Case(
            "extra vars ignored (no prompt on launch)",
            "AWX job",
            ("ignored", "stack_image_tag"),
            scenario=_template(STAGING_VC, ask_variables_on_launch=False),
        ),
        Case("AWX job failed", "AWX job", ("failed", "/jobs/playbook/"), faults=_awx_job("failed")),
        Case("AWX job error", "AWX job", ("error", "/jobs/playbook/"), faults=_awx_job("error")),
        Case(
            "AWX job canceled (by someone else)",
            "AWX job",
            ("canceled", "/jobs/playbook/"),
            faults=_awx_job("canceled"),
        ),
        Case(
            "AWX job stuck pending",
            "AWX job",
            ("pending", "/jobs/playbook/", "canceled it"),
            faults=_awx_job("pending"),
        ),
        Case(
            "pod crash-looping",
            "roll-out",
            ("CrashLoopBackOff", "stack-1", CRASH_ERROR, "Warning BackOff"),
            faults={"crashloop": [{"namespace": ns, "error": CRASH_ERROR}]},
        ),
        Case(
            "image pull failing",
            "roll-out",
            ("stack-1", "ImagePullBackOff", "pull access denied"),
            faults={"unpullable_images": [f"{STACK}:latest"]},
        ),
        Case(
            "pod unschedulable",
            "roll-out",
            ("stack-1", "Unschedulable", "Insufficient cpu"),
            faults={"unschedulable": [{"namespace": ns}]},
        ),
        Case(
            "wrong GitHub token",
            "source build",
            ("401", "github", "/repos/"),
            source="frontend",
            target=_wrong_token("github"),
        ),
        Case("wrong AWX token", "AWX job", ("401", "awx", "/api/v2/"), target=_wrong_token("awx")),
        Case("wrong registry password", "image", ("401", "registry"), target=_wrong_token("registry")),
        Case("wrong Kubernetes token", "roll-out", ("401", "kubernetes"), target=_wrong_token("kubernetes")),
        Case(
            "TLS failure (the cluster's certificate not trusted)",
            "roll-out",
            ("https://", "certificate verification failed"),
            target=_tls,
        ),
        Case(
            "GitHub rate limit past the cap",
            "source build",
            ("rate limit", "resets at", "we wait at most 60 s"),
            source="frontend",
            scenario=_exhausted_rate_limit,
        ),
        Case(
            "production: pod crash-looping, rolled back",
            "roll-out",
            ("1.0.4 failed at pod stack-1", "CrashLoopBackOff", "rolled back to 1.0.3", "verified"),
            environment="production",
            faults={"crashloop": [{"namespace": "production-stack", "image": f"{STACK}:1.0.4", "error": CRASH_ERROR}]},
            good_first=True,
            outcome="rolled back to the last good tag",
        ),
        Case(
            "production: AWX job failed before changing the StatefulSet",
            "AWX job",
            ("failed", "/jobs/playbook/", "no rollback needed"),
            environment="production",
            faults={"awx_jobs": [{"template": PRODUCTION_VC, "outcome": "failed", "count": 1}]},
            good_first=True,
            outcome="nothing to roll back",
        ),
    ]


def _awx_job(outcome: str) -> dict[str, Any]:
    return {"awx_jobs": [{"template": STAGING_VC, "outcome": outcome}]}


def _exhausted_rate_limit(scenario: Scenario) -> None:
    """A window of a few requests that resets in an hour: the clients must not wait for it."""
    scenario.github.rate_limit = 3
    scenario.github.rate_limit_window_seconds = 3600.0


# ---------------------------------------------------------------- running deploys


@dataclass
class Row:
    """One line of the matrix."""

    fault: str
    expected: str
    observed: str
    seconds: float
    limit: float | None
    launches: int
    jobs: int
    left_running: list[str]
    problems: list[str]
    """What differs from the expected outcome (the time limit too: a loaded machine can pass it, so tests ask
    ``behaved``, never ``survived``)."""
    message: str = ""

    @property
    def survived(self) -> bool:
        return not self.problems

    @property
    def behaved(self) -> bool:
        """As expected, leaving the time limit aside."""
        return all(problem.startswith("over the limit") for problem in self.problems)

    def cells(self, speed: float) -> list[str]:
        limit = f" (limit {self.limit:.1f} s)" if self.limit is not None else ""
        launches = f"{self.launches}" + (f" ({self.jobs} jobs)" if self.jobs != self.launches else "")
        return [
            self.fault,
            self.expected,
            self.observed,
            f"{self.seconds:.1f} s = {self.seconds * speed / 60:.1f} min{limit}",
            launches,
            ", ".join(self.left_running) or "nothing",
            "yes" if self.survived else "**NO**",
        ]


HEADER = ["fault", "expected", "observed", "time to outcome", "AWX launches", "left running", "as expected"]


class Bench:
    """A Prefect test server for the whole benchmark; a sandbox per block or case."""

    def __init__(self, speed: float, state_dir: Path, wait_factor: float = 2.0) -> None:
        self.speed = speed
        self.state_dir = state_dir
        self.wait_factor = wait_factor
        self._names = count()

    @contextmanager
    def sandbox(self, scenario: Scenario, faults: dict[str, Any] | None = None) -> Iterator[Sandbox]:
        from sandbox.runtime import FREE_PORTS, Sandbox

        with Sandbox(scenario, speed=self.speed, ports=FREE_PORTS) as sandbox:
            if faults:
                sandbox.set_faults(**faults)
            yield sandbox

    def target(
        self,
        sandbox: Sandbox,
        environment: str,
        change: Callable[[StackTarget], dict[str, Any]] | None = None,
    ) -> StackTarget:
        """A ``StackTarget`` saved under a fresh name (its own last good tag and events), without approval;
        ``change`` returns the fields to change in it."""
        from blocks import Budgets
        from deployments.sandbox_target import sandbox_target

        directory = self.state_dir / f"sandbox-{next(self._names)}"
        sandbox.write_state(directory)
        budgets = Budgets(wait_factor=self.wait_factor).scaled(self.speed)
        target = sandbox_target(sandbox.endpoints(directory.resolve()), environment=environment, budgets=budgets)
        name = f"matrix-{environment}-{next(self._names)}"
        target = target.model_copy(update={"environment": name, "approval": False})
        if change is not None:
            target = target.model_copy(update=change(target))
        target.save(name, overwrite=True)
        target._block_document_name = name
        return target

    def deploy(
        self, target: StackTarget, sandbox: Sandbox, tag: str | None = None, message: str = "", source: str = "frontend"
    ) -> Any:
        """One deploy: a frontend (or stack) commit to staging, or ``tag`` to production. Returns the final state."""
        from flows.production import deploy_to_production
        from flows.staging import deploy_to_staging

        name = target._block_document_name
        if tag is None:
            repository, branch = SOURCES[source]
            sha = sandbox.push(repository, branch, message=message)
            return deploy_to_staging(target=name, source=source, sha=sha, return_state=True)
        sandbox.push(STACK, f"refs/tags/{tag}", message=message or f"Release {tag}")
        return deploy_to_production(tag=tag, target=name, return_state=True)


def run_seconds(state: Any) -> float:
    """How long the flow run ran (Prefect's start and end times: the engine's own start-up left out)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    if run.start_time is None or run.end_time is None:
        return float("nan")
    return float((run.end_time - run.start_time).total_seconds())


def launches(sandbox: Sandbox, since: int = 0) -> int:
    """Our POSTs to a job template's ``launch/`` (answered or not)."""
    return sum(
        1
        for r in sandbox.requests("awx")[since:]
        if r.method == "POST" and r.path.endswith("/launch/") and r.user_agent.startswith("fragalysis-cd")
    )


def awx_jobs(sandbox: Sandbox) -> list[dict[str, Any]]:
    return sandbox.call(sandbox.awx.jobs)


def left_running(sandbox: Sandbox, wait: float = 5.0) -> list[str]:
    """AWX jobs and GitHub runs still going once the run has ended (a cancel turns a job canceled a little later:
    wait up to ``wait`` real seconds for it)."""
    deadline = time.monotonic() + wait
    while True:
        jobs = [f"AWX job {j['id']} {j['status']}" for j in awx_jobs(sandbox) if j["status"] in RUNNING_JOB]
        runs = sandbox.call(
            lambda: [
                f"GitHub run {r.id} {r.status}" for r in sandbox.github.state.runs.values() if r.status != "completed"
            ]
        )
        if not (jobs or runs) or time.monotonic() > deadline:
            return jobs + runs
        time.sleep(0.2)


def stage_limit(target: StackTarget, stage: str, *, source_build: bool, rollback: bool) -> float:
    """The longest a run failing at ``stage`` may take: each stage up to it at its budget times the factor (the
    roll-out's pods within the AWX job's), a stuck pod's grace, and in production the rollback's own budgets."""
    b = target.budgets
    production = target.production
    order = [
        ("source build", b.source_build if source_build and not production else 0.0),
        ("stack build", b.stack_build),
        ("image", b.image),
        ("AWX job", b.awx_start + b.awx_job),
        ("roll-out", 0.0),
        ("verify", b.verify),
    ]
    total = 0.0
    for name, budget in order:
        total += b.deadline(budget)
        if name == stage:
            break
    if stage == "roll-out":
        total += target.stuck_grace_seconds
    if rollback:
        total += b.deadline(b.image + b.awx_start + b.awx_job + b.verify)
    return total


# ---------------------------------------------------------------- the permanent block


def run_case(bench: Bench, case: Case) -> Row:
    """One permanent fault in a sandbox of its own."""
    from sandbox.scenario import load_scenario

    scenario = load_scenario("fragalysis")
    scenario.github.trigger_downstream = False
    scenario.github.trigger_awx = False
    if case.scenario is not None:
        case.scenario(scenario)
    expected = f"Failed at '{case.stage}'" + (f", {case.outcome}" if case.outcome else "")
    with bench.sandbox(scenario) as sandbox:
        target = bench.target(sandbox, case.environment, case.target)
        if case.good_first:
            good = bench.deploy(target, sandbox, tag="1.0.3")
            if not good.is_completed():
                observed = f"the good deploy failed: {good.message}"
                return Row(case.fault, expected, observed, 0, None, 0, 0, [], ["good deploy failed"])
        sandbox.set_faults(**case.faults)
        before = len(sandbox.requests("awx"))
        jobs_before = len(awx_jobs(sandbox))
        tag = "1.0.4" if case.environment == "production" else None
        state = bench.deploy(target, sandbox, tag=tag, source=case.source)
        seconds = run_seconds(state)
        message = state.message or ""
        found = re.search(r"stage '([^']+)' failed", message)
        stage = found.group(1) if found else None
        missing = [w for w in case.words if w.lower() not in message.lower()]
        url = re.search(r"https?://127\.0\.0\.1:\d+", message) is not None
        running = left_running(sandbox)
        rolled_back = "rolled back to" in message
        limit = stage_limit(target, case.stage, source_build=case.source != "stack", rollback=rolled_back)
        observed = f"{state.type.value.title()}" + (f" at '{stage}'" if stage else "")
        problems = []
        if not state.is_failed():
            problems.append("did not fail")
        if stage != case.stage:
            problems.append(f"stage {stage!r}")
        if not url:
            problems.append("no URL")
        if missing:
            problems.append("without " + ", ".join(repr(w) for w in missing))
        if running:
            problems.append("left running")
        if not seconds <= limit:
            problems.append(f"over the limit: {seconds:.1f} s")
        if problems:
            observed += " (" + "; ".join(problems) + ")"
        return Row(
            fault=case.fault,
            expected=expected,
            observed=observed,
            seconds=seconds,
            limit=limit,
            launches=launches(sandbox, before),
            jobs=len(awx_jobs(sandbox)) - jobs_before,
            left_running=running,
            problems=problems,
            message=message,
        )


# ---------------------------------------------------------------- the transient block


def transient_faults() -> dict[str, Any]:
    return {
        **{service: dict(TRANSIENT_HTTP) for service in ("github", "awx", "registry", "kubernetes")},
        "watch_expire_seconds": WATCH_EXPIRE_SECONDS,
    }


@dataclass
class Block:
    """The deploys of one environment under transient faults (or none, for the baseline)."""

    environment: str
    deploys: int
    completed: int = 0
    launches: int = 0
    jobs: int = 0
    walls: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    faults_met: dict[str, int] = field(default_factory=dict)
    """Answers to our requests that were faults: status (or "no answer") -> count."""
    requests: int = 0


def run_block(bench: Bench, environment: str, deploys: int, *, faulty: bool) -> Block:
    """``deploys`` deploys in a row in one sandbox: frontend commits to staging, or tags 1.0.3, 1.0.4, ... to
    production."""
    from sandbox.scenario import load_scenario

    scenario = load_scenario("fragalysis")
    scenario.github.trigger_downstream = False
    scenario.github.trigger_awx = False
    if faulty:
        scenario.github.rate_limit = RATE_LIMIT
        scenario.github.rate_limit_window_seconds = RATE_LIMIT_WINDOW_SECONDS
    block = Block(environment, deploys)
    with bench.sandbox(scenario, transient_faults() if faulty else None) as sandbox:
        target = bench.target(sandbox, environment)
        for index in range(deploys):
            tag = f"1.0.{3 + index}" if environment == "production" else None
            state = bench.deploy(target, sandbox, tag=tag, message=f"matrix {index}")
            block.walls.append(run_seconds(state))
            if state.is_completed():
                block.completed += 1
            else:
                block.failures.append(f"{tag or index}: {state.message}")
        block.launches = launches(sandbox)
        block.jobs = len(awx_jobs(sandbox))
        ours = [r for r in sandbox.requests() if r.user_agent.startswith("fragalysis-cd")]
        block.requests = len(ours)
        met = Counter(
            "no answer" if r.status == 0 else str(r.status)
            for r in ours
            if r.status in (0, 403, 410, 429) or r.status >= 500
        )
        block.faults_met = dict(sorted(met.items(), key=lambda item: -item[1]))
    return block


def transient_rows(faulty: Block, baseline: Block, speed: float) -> list[Row]:
    label = {"staging": "staging deploys", "production": "production deploys"}[faulty.environment]
    median = statistics.median(faulty.walls) if faulty.walls else 0.0
    base = statistics.median(baseline.walls) if baseline.walls else 0.0
    cost = median - base
    duplicates = faulty.launches - faulty.deploys
    problems = [f"{faulty.deploys - faulty.completed} failed"] if faulty.completed < faulty.deploys else []
    if faulty.jobs != faulty.deploys:
        problems.append(f"{faulty.jobs} AWX jobs for {faulty.deploys} deploys")
    observed = (
        f"{faulty.completed}/{faulty.deploys} Completed, {faulty.jobs} AWX jobs ({max(0, faulty.jobs - faulty.deploys)}"
        f" duplicates); {sum(faulty.faults_met.values())} of our {faulty.requests} requests faulted ("
        + ", ".join(f"{status} x{n}" for status, n in faulty.faults_met.items())
        + "); retries cost "
        f"{cost:+.1f} s a deploy = {cost * speed / 60:+.1f} min (median {median:.1f} s against {base:.1f} s without "
        "faults)"
    )
    if duplicates > 0:
        observed += f"; {faulty.launches} launch POSTs (tried again after a 429 or a lost answer)"
    return [
        Row(
            fault=f"transient, every service: {label} x{faulty.deploys}",
            expected=f"{faulty.deploys}/{faulty.deploys} Completed, 1 AWX job each",
            observed=observed,
            seconds=median,
            limit=None,
            launches=faulty.launches,
            jobs=faulty.jobs,
            left_running=[],
            problems=problems,
            message="\n".join(faulty.failures),
        )
    ]


# ---------------------------------------------------------------- the table


def markdown(rows: list[Row], speed: float) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    for row in rows:
        cells = [cell.replace("|", "\\|").replace("\n", " ") for cell in row.cells(speed)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--staging", type=int, default=20, help="staging deploys under transient faults")
    parser.add_argument("--production", type=int, default=5, help="production deploys under transient faults")
    parser.add_argument("--baseline", type=int, default=2, help="deploys without faults, per environment")
    parser.add_argument("--speed", type=float, default=100.0)
    parser.add_argument("--only", help="run only the permanent cases whose fault contains this text")
    parser.add_argument("--no-transient", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the results here (JSON)")
    args = parser.parse_args(argv)

    from prefect.testing.utilities import prefect_test_harness

    rows: list[Row] = []
    started = datetime.now(UTC)
    with prefect_test_harness(server_startup_timeout=60), tempfile.TemporaryDirectory() as state_dir:
        bench = Bench(args.speed, Path(state_dir))
        if not args.no_transient:
            for environment, deploys in (("staging", args.staging), ("production", args.production)):
                if deploys <= 0:
                    continue
                baseline = run_block(bench, environment, args.baseline, faulty=False)
                faulty = run_block(bench, environment, deploys, faulty=True)
                rows.extend(transient_rows(faulty, baseline, args.speed))
                print(markdown(rows[-1:], args.speed), file=sys.stderr)
        for case in permanent_cases():
            if args.only and args.only.lower() not in case.fault.lower():
                continue
            rows.append(run_case(bench, case))
            print(f"{rows[-1].fault}: {rows[-1].observed} ({rows[-1].seconds:.1f} s)", file=sys.stderr)
    print(f"Fault matrix, {started:%Y-%m-%d}, speed {args.speed:g} (a modelled minute is {60 / args.speed:.2f} s):\n")
    print(markdown(rows, args.speed))
    failed = [row for row in rows if not row.survived]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} as expected.")
    for row in failed:
        print(f"- {row.fault}: {row.observed}\n  {row.message[:600]}")
    if args.out:
        data = {
            "speed": args.speed,
            "date": started.isoformat(),
            "rows": [{**asdict(row), "survived": row.survived} for row in rows],
        }
        args.out.write_text(json.dumps(data, indent=2) + "\n")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
