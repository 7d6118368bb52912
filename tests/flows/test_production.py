"""The tag -> production flow and the first deployment, under a Prefect test server, against the sandbox."""

from __future__ import annotations

import threading
from collections.abc import Callable
from itertools import count
from typing import Any

import pytest

from blocks import Mode, StackTarget
from flows.first_deploy import first_deploy
from flows.last_good import LastGood, recall, remember
from flows.production import deploy_to_production
from flows.report import DeploymentReport
from flows.staging import deploy_to_staging
from sandbox.runtime import Sandbox
from tests.conftest import wait_for
from tests.flows.conftest import SPEED, artifacts_of, deployment_events, scenario, target_name

pytestmark = pytest.mark.prefect

STACK = "xchem/fragalysis-stack"
CRASH_ERROR = "ModuleNotFoundError: No module named 'viewer.squonk2'"
OUR_AGENT = "fragalysis-cd"
environments = count()


def production(deploy_target: Callable[..., StackTarget], sb: Sandbox, **changes: Any) -> StackTarget:
    """A production target of its own (its own last good tag, events and artifacts), without approval unless
    told."""
    changes.setdefault("approval", False)
    return deploy_target(sb, environment="production", label=f"production-{next(environments)}", **changes)


def run(target: StackTarget, tag: str, **parameters: Any) -> Any:
    return deploy_to_production(tag=tag, target=target_name(target), return_state=True, **parameters)


def stack_digests(sb: Sandbox, namespace: str = "production-stack") -> set[str]:
    pods = sb.call(sb.kubernetes.pods, namespace, {"name": "stack"})
    return {p["status"]["containerStatuses"][0]["imageID"].rpartition("@")[2] for p in pods}


def table_of(state: Any) -> list[dict[str, str]]:
    import json

    (table,) = [a for a in artifacts_of(state.state_details.flow_run_id) if (a.key or "").endswith("-timings")]
    return table.data if isinstance(table.data, list) else json.loads(table.data)


def ours(sb: Sandbox) -> list[Any]:
    return [r for r in sb.requests() if r.user_agent.startswith(OUR_AGENT)]


BAD_TAGS = {  # one tag per rule through the flow; tests/flows/test_tags.py has the policy's whole table
    "1.2.3-rc1": "matches",
    "": "a tag is required",
    "1.2.3\n": "no white space",
    "9" * 5000: "at most 128 characters",
    "release/1.2.3": "no '/'",
}


def test_bad_tags_are_refused_before_any_request(make_sandbox: Callable[..., Sandbox], deploy_target):
    sb = make_sandbox(scenario(), speed=SPEED)
    target = production(deploy_target, sb)
    states = {}
    for tag, rule in BAD_TAGS.items():
        states[tag] = state = run(target, tag)
        assert state.is_failed(), tag
        assert "stage 'tag policy' failed" in state.message
        assert rule in state.message, (tag, state.message)
        assert len(state.message) < 300
    assert ours(sb) == [], "a refused tag makes no request of ours at all"
    # a huge tag is carried cut short by the run's event and artifacts
    huge = states["9" * 5000].state_details.flow_run_id
    (event,) = deployment_events(str(huge), key="run_id")
    assert event.payload["failed_stage"] == "tag policy"
    assert event.payload["tag"] == "9" * 37 + "..."
    assert len(event.payload["image"]) < 100
    for artifact in artifacts_of(huge):
        assert len(artifact.description or "") < 200
        assert "9" * 129 not in str(artifact.data)


def test_a_tag_is_deployed_to_production(make_sandbox: Callable[..., Sandbox], deploy_target):
    sb = make_sandbox(scenario(), speed=SPEED)
    target = production(deploy_target, sb)
    sha = sb.push(STACK, "refs/tags/1.0.3", message="Release 1.0.3")

    state = run(target, "1.0.3")

    assert state.is_completed(), state.message
    report: DeploymentReport = state.result()
    digest = sb.call(sb.registry.resolve, f"{STACK}:1.0.3")
    assert report.digest == digest
    assert report.sha == sha
    assert stack_digests(sb) == {digest}
    assert stack_digests(sb, "staging-stack") != {digest}, "staging was not touched"
    stages = [row["stage"] for row in table_of(state)]
    assert stages[:2] == ["stack build", "image"]
    assert stages[-2:] == ["tag push -> roll-out start", "total (lead time)"]
    assert {"AWX job", "pod stack-1", "pod stack-0", "verify"} <= set(stages)
    remembered = recall(target.environment)
    assert remembered is not None
    assert (remembered.tag, remembered.digest, remembered.run_id) == ("1.0.3", digest, report.run_id)
    (event,) = deployment_events(report.run_id, key="run_id")
    assert event.event == "fragalysis.deployment.succeeded"
    assert event.payload["tag"] == "1.0.3"
    assert event.payload["digest"] == digest
    awx_jobs = sb.call(sb.awx.jobs)
    assert [job["extra_vars"] for job in awx_jobs][-1:] == ['{"stack_image_tag": "1.0.3"}']


def test_an_unknown_or_older_tag_is_refused(make_sandbox: Callable[..., Sandbox], deploy_target):
    sb = make_sandbox(scenario(), speed=SPEED)
    target = production(deploy_target, sb)

    unknown = run(target, "9.9.9")
    assert unknown.is_failed()
    assert f"tag 9.9.9 does not exist on {STACK}" in unknown.message

    sb.push(STACK, "refs/tags/1.0.1", message="An old line")
    older = run(target, "1.0.1")
    assert older.is_failed()
    assert "tag 1.0.1 is older than 1.0.2, which" in older.message
    assert "allow_downgrade=True" in older.message
    assert not [job for job in sb.call(sb.awx.jobs)], "nothing was launched"

    downgraded = run(target, "1.0.1", allow_downgrade=True)
    assert downgraded.is_completed(), downgraded.message
    assert stack_digests(sb) == {sb.call(sb.registry.resolve, f"{STACK}:1.0.1")}


def test_no_crossing_environments(make_sandbox: Callable[..., Sandbox], deploy_target):
    sb = make_sandbox(scenario(), speed=SPEED)
    staging = deploy_target(sb)
    prod = production(deploy_target, sb)
    sb.push(STACK, "refs/tags/1.0.3")

    into_staging = deploy_to_production(tag="1.0.3", target=target_name(staging), return_state=True)
    assert into_staging.is_failed()
    assert "stage 'environment guard' failed" in into_staging.message
    assert "is not marked production" in into_staging.message

    into_production = deploy_to_staging(source="stack", target=target_name(prod), return_state=True)
    assert into_production.is_failed()
    assert "stage 'environment guard' failed" in into_production.message
    assert ours(sb) == []


def _resume_when_paused(flow_run_id: Any, run_input: dict[str, Any]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    def paused() -> bool:
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(flow_run_id)
        assert flow_run.state is None or not flow_run.state.is_final(), flow_run.state.message
        return flow_run.state is not None and flow_run.state.is_paused()

    wait_for(paused, "the run to pause for its approval", deadline=120)
    resume_flow_run(flow_run_id, run_input=run_input)


def _run_and_decide(target: StackTarget, tag: str, run_input: dict[str, Any]) -> Any:
    """Run the flow as a plain call (it pauses in-process) and answer its question from another thread."""
    from prefect import get_client

    results: dict[str, Any] = {}

    def call() -> None:
        results["state"] = run(target, tag)

    caller = threading.Thread(target=call)
    caller.start()

    def started() -> Any:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs()
        return next((r.id for r in runs if r.name == f"{target_name(target)} <- {tag}"), None)

    _resume_when_paused(wait_for(started, "the production run to start", deadline=60), run_input)
    caller.join(timeout=300)
    return results["state"]


def test_a_plain_call_waits_for_approval_in_its_process(make_sandbox: Callable[..., Sandbox], deploy_target):
    sb = make_sandbox(scenario(), speed=SPEED)
    target = production(deploy_target, sb, approval=True)
    sb.push(STACK, "refs/tags/1.0.3")

    state = _run_and_decide(target, "1.0.3", {"decision": "approve", "who": "ana", "comment": "looks good"})

    assert state.is_completed(), state.message
    report: DeploymentReport = state.result()
    assert report.approval == "approved by ana: looks good"
    rows = {row["stage"]: row for row in table_of(state)}
    assert "approved by ana" in rows["approval"]["verdict"]
    assert "of approval left out" in rows["total (lead time)"]["verdict"]


def test_a_rejection_cancels_and_deploys_nothing(make_sandbox: Callable[..., Sandbox], deploy_target):
    sb = make_sandbox(scenario(), speed=SPEED)
    target = production(deploy_target, sb, approval=True)
    sb.push(STACK, "refs/tags/1.0.3")
    before = stack_digests(sb)

    state = _run_and_decide(target, "1.0.3", {"decision": "reject", "who": "bob", "comment": "not today"})

    assert state.is_cancelled(), state
    assert state.message == "rejected by bob: not today"
    assert not sb.call(sb.awx.jobs), "nothing was launched"
    assert stack_digests(sb) == before


def test_a_failed_roll_out_is_rolled_back_to_the_last_good_tag(make_sandbox: Callable[..., Sandbox], deploy_target):
    sb = make_sandbox(scenario(), speed=SPEED)
    target = production(deploy_target, sb)
    sb.push(STACK, "refs/tags/1.0.3")
    good = run(target, "1.0.3")
    assert good.is_completed(), good.message
    good_digest = sb.call(sb.registry.resolve, f"{STACK}:1.0.3")
    sb.set_faults(crashloop=[{"namespace": "production-stack", "image": f"{STACK}:1.0.4", "error": CRASH_ERROR}])
    sb.push(STACK, "refs/tags/1.0.4", message="A bad release")

    bad = run(target, "1.0.4")

    assert bad.is_failed()
    assert "1.0.4 failed at pod stack-1" in bad.message
    assert "CrashLoopBackOff" in bad.message
    assert f"rolled back to 1.0.3 ({good_digest}), verified" in bad.message
    # the headline says what happened and what the rollback did; the crashed container's log and the pod's events
    # follow on lines of their own
    headline, _, details = bad.message.partition("\n")
    assert headline.endswith(f"rolled back to 1.0.3 ({good_digest}), verified")
    assert details.startswith("last 10 log lines of the previous (crashed) container stack:\n")
    assert f"\n    {CRASH_ERROR}\n" in details
    assert "\n    Warning BackOff (x" in details
    assert "in pod stack-1_production-stack(" in details
    assert stack_digests(sb) == {good_digest}
    stages = [row["stage"] for row in table_of(bad)]
    assert "pod stack-1" in stages
    assert "rollback pod stack-1" in stages
    assert "rollback verify" in stages
    (event,) = deployment_events(str(bad.state_details.flow_run_id), key="run_id")
    assert event.event == "fragalysis.deployment.rolled-back"
    remembered = recall(target.environment)
    assert remembered is not None
    assert remembered.tag == "1.0.3", "a failed tag is never the last good one"


def test_no_rollback_without_a_last_good_tag(make_sandbox: Callable[..., Sandbox], deploy_target):
    sb = make_sandbox(scenario(), speed=SPEED)
    target = production(deploy_target, sb)
    sb.set_faults(crashloop=[{"namespace": "production-stack", "image": f"{STACK}:1.0.4"}])
    sb.push(STACK, "refs/tags/1.0.4", message="A bad release")

    bad = run(target, "1.0.4")

    assert bad.is_failed()
    assert f"no rollback: {target.environment} has no last good tag yet" in bad.message
    # without an error of its own, the crash fault's container ends its traceback with the sandbox's default
    default = "django.core.exceptions.ImproperlyConfigured: Error loading psycopg2 or psycopg module"
    assert f"\n    {default}\n" in bad.message
    (event,) = deployment_events(str(bad.state_details.flow_run_id), key="run_id")
    assert event.event == "fragalysis.deployment.failed"


def test_the_last_good_tag_round_trips():
    remember("round-trip", LastGood("1.2.3", "sha256:" + "a" * 64, "run", "2026-11-30T12:00:00+00:00"))
    assert recall("round-trip") == LastGood("1.2.3", "sha256:" + "a" * 64, "run", "2026-11-30T12:00:00+00:00")
    assert recall("never-deployed") is None


def test_a_first_deployment_creates_the_stack_and_is_refused_when_it_exists(
    make_sandbox: Callable[..., Sandbox], deploy_target
):
    loaded = scenario()
    namespace = next(ns for ns in loaded.kubernetes.namespaces if ns.name == "staging-stack")
    namespace.statefulsets = [sts for sts in namespace.statefulsets if sts.name != "stack"]
    sb = make_sandbox(loaded, speed=SPEED)
    target = deploy_target(sb, mode=Mode.ORCHESTRATE)

    created = first_deploy(target=target_name(target), return_state=True)

    assert created.is_completed(), created.message
    report: DeploymentReport = created.result()
    assert stack_digests(sb, "staging-stack") == {report.digest}
    stages = [row["stage"] for row in table_of(created)]
    assert {"image", "AWX job", "pod stack-0", "pod stack-1", "verify", "total (lead time)"} <= set(stages)

    again = first_deploy(target=target_name(target), return_state=True)
    assert again.is_failed()
    assert "the StatefulSet staging-stack/stack exists already" in again.message
    assert "force=True" in again.message


def test_the_deploys_records_feed_the_delivery_report(make_sandbox: Callable[..., Sandbox], deploy_target):
    """A good tag, a bad one rolled back and one whose AWX job fails: their records give the report its figures."""
    from flows.delivery_report import delivery_report

    sb = make_sandbox(scenario(), speed=SPEED)
    target = production(deploy_target, sb)
    for tag in ("1.0.3", "1.0.4", "1.0.5"):
        sb.push(STACK, f"refs/tags/{tag}")
    assert run(target, "1.0.3").is_completed()
    sb.set_faults(crashloop=[{"namespace": "production-stack", "image": f"{STACK}:1.0.4", "error": CRASH_ERROR}])
    rolled_back = run(target, "1.0.4")
    assert "verified" in rolled_back.message
    sb.set_faults(awx_jobs=[{"template": "Production Fragalysis Stack (Version Change)", "outcome": "failed"}])
    assert run(target, "1.0.5").is_failed()

    result = delivery_report(environment=target.environment, days=1)

    assert result["summary"].startswith(
        f"{target.environment}, last 1 days: 3 deploys (1 succeeded, 1 failed, 1 rolled"
    )
    rows = {row["figure"]: row["value"] for row in result["figures"]}
    assert (rows["deploys"], rows["deploys succeeded"], rows["deploys rolled-back"], rows["deploys failed"]) == (
        3,
        1,
        1,
        1,
    )
    assert (rows["changes"], rows["change failures"]) == (3, 2), "all three launched AWX"
    assert rows["lead time count"] == 1
    assert rows["lead time p50 seconds"] > 0
    assert rows["lead time target seconds"] == 15 * 60, "the target in modelled seconds"
    assert rows["time to restore count"] == 1, "the rollback restored production; the failed job has not"
    assert rows["not restored yet"] == 1
    assert rows["stage stack build p50 seconds"] > 0
    (page,) = artifacts_of_key(result["key"])
    assert "1 rolled-back" in page.data
    assert "data:image/svg+xml;base64," in page.data


def artifacts_of_key(key: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
