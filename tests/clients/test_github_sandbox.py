"""GitHubClient against the sandbox's GitHub emulator over real HTTP: dispatch (and its fallback on a server that
rejects ``return_run_details``), 422s, runs for a commit, following with ETags, failing builds, branches, tags,
commits, the rate limit and injected faults, with the attempts counted from the emulator's request log."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from clients.errors import ApiError, BuildFailed, DeadlineExceeded, RateLimited
from clients.github import GitHubClient, RunConclusion, RunStatus
from clients.waiting import Poll
from sandbox.runtime import Sandbox
from sandbox.scenario import Scenario, load_scenario
from tests.clients.conftest import FAST

SPEED = 1200
STACK = "xchem/fragalysis-stack"
INPUTS = {
    "be_namespace": "xchem",
    "be_image_tag": "latest",
    "fe_namespace": "xchem",
    "fe_image_tag": "latest",
    "stack_namespace": "xchem",
}


def fast_poll() -> Poll:
    return Poll(initial=0.02, factor=1.5, cap=0.1)


def scenario(*, duration: float = 240.0, **github: Any) -> Scenario:
    """Fragalysis without chaining (no downstream dispatch, no AWX launch); ``build main`` takes ``duration``."""
    loaded = load_scenario("fragalysis")
    settings = loaded.github.model_copy(update={"trigger_downstream": False, "trigger_awx": False, **github})
    loaded = loaded.model_copy(update={"github": settings})
    stack = loaded.repository(STACK)
    assert stack is not None
    stack.workflows[0].duration_seconds = duration
    return loaded


def served(sb: Sandbox, method: str, pattern: str, *, at_least: int = 0) -> list[Any]:
    """The requests the emulator served whose path ends with ``pattern`` (waits a moment for the log)."""
    end = time.monotonic() + 5.0
    while True:
        found = [r for r in sb.requests("github") if r.method == method and r.path.endswith(pattern)]
        if len(found) >= at_least or time.monotonic() > end:
            return found
        time.sleep(0.02)


def test_dispatch_by_name_and_follow_with_etags(
    make_sandbox: Callable[..., Sandbox], github_of: Callable[[Sandbox], GitHubClient]
) -> None:
    sb = make_sandbox(scenario(duration=1800.0), speed=SPEED)  # 1.5 s: several unchanged polls
    github = github_of(sb)
    run = github.dispatch(STACK, "build main", "refs/heads/master", INPUTS)
    assert (run.event, run.head_branch, run.repository) == ("workflow_dispatch", "master", STACK)
    assert run.head_sha == github.branch_head(STACK, "master")
    seen: list[RunStatus] = []
    done = github.follow_run(run, 60, on_status=lambda r: seen.append(r.status), poll=fast_poll())
    assert done.conclusion is RunConclusion.SUCCESS
    assert seen[-1] is RunStatus.COMPLETED
    assert len(seen) == len(set(seen))  # called back on changes only
    polls = served(sb, "GET", f"/actions/runs/{run.id}")
    assert any(r.status == 304 for r in polls)  # unchanged answers came back as 304
    jobs = github.run_jobs(done)
    assert [step.name for step in jobs[0].steps][:2] == ["Set up job", "Checkout"]
    ran = [step for step in jobs[0].steps if step.conclusion is RunConclusion.SUCCESS]
    assert ran
    assert all(step.seconds is not None for step in ran)
    assert jobs[0].seconds is not None
    assert len(served(sb, "POST", "/dispatches")) == 1


def rate_limit_used(sb: Sandbox) -> int:
    """GitHub's count of the requests made against the rate limit (``/rate_limit`` itself is not counted)."""
    endpoint = sb.endpoints()["github"]
    answer = httpx.get(f"{endpoint['url']}/rate_limit", headers={"Authorization": f"Bearer {endpoint['token']}"})
    return int(answer.json()["rate"]["used"])


def test_following_an_unchanged_run_costs_one_request_against_the_rate_limit(
    make_sandbox: Callable[..., Sandbox], github_of: Callable[[Sandbox], GitHubClient]
) -> None:
    # at speed 1 the dispatched run stays queued, unchanged, for its 10 s in GitHub's queue
    sb = make_sandbox(scenario(), speed=1)
    github = github_of(sb)
    run = github.dispatch(STACK, "build-main.yaml", "refs/heads/master", INPUTS)
    used = rate_limit_used(sb)
    with pytest.raises(DeadlineExceeded):
        github.follow_run(run, 0.5, poll=Poll(initial=0.05, factor=1.0, cap=0.05))
    polls = served(sb, "GET", f"/actions/runs/{run.id}")[1:]  # the first was dispatch's read of the new run
    assert len(polls) >= 3
    # the first read of the follow is counted; every later one sent the ETag and was answered 304, which is free
    assert [r.status for r in polls] == [200] + [304] * (len(polls) - 1)
    assert rate_limit_used(sb) - used == 1


def test_dispatch_falls_back_when_return_run_details_is_rejected(
    make_sandbox: Callable[..., Sandbox], github_of: Callable[[Sandbox], GitHubClient]
) -> None:
    sb = make_sandbox(scenario(return_run_details=False), speed=SPEED)
    github = github_of(sb)
    # someone else dispatched the same workflow a moment before us
    endpoint = sb.endpoints()["github"]
    other = httpx.post(
        f"{endpoint['url']}/repos/{STACK}/actions/workflows/build-main.yaml/dispatches",
        json={"ref": "master"},
        headers={"Authorization": f"Bearer {endpoint['token']}"},
        timeout=10,
    )
    assert other.status_code == 204
    run = github.dispatch(STACK, "build-main.yaml", "master", INPUTS, poll=fast_poll())
    assert run.event == "workflow_dispatch"
    runs = list(github.runs(STACK, "build-main.yaml", event="workflow_dispatch"))
    assert len(runs) == 2
    assert run.id == max(r.id for r in runs)  # ours, not the other one
    assert [r.status for r in served(sb, "POST", "/dispatches", at_least=3)] == [204, 400, 204]


def test_dispatch_refusals_quote_github(
    make_sandbox: Callable[..., Sandbox], github_of: Callable[[Sandbox], GitHubClient]
) -> None:
    sb = make_sandbox(scenario(), speed=SPEED)
    github = github_of(sb)
    with pytest.raises(ApiError, match=r'422 Unexpected inputs provided: \["colour"\]') as caught:
        github.dispatch(STACK, "build main", "master", {"colour": "red"})
    assert caught.value.status == 422
    with pytest.raises(ApiError, match="No ref found for: nowhere"):
        github.dispatch(STACK, "build main", "nowhere")
    with pytest.raises(ApiError, match="does not have 'workflow_dispatch' trigger"):
        github.dispatch("xchem/fragalysis-frontend", "build-staging.yaml", "staging")
    assert list(github.runs(STACK, "build-main.yaml")) == []


def test_find_and_wait_for_the_run_of_a_push(
    make_sandbox: Callable[..., Sandbox], github_of: Callable[[Sandbox], GitHubClient]
) -> None:
    sb = make_sandbox(scenario(), speed=SPEED)
    github = github_of(sb)
    sha = sb.push(STACK, "master", message="Bump the stack")
    run = github.wait_for_run(STACK, "build main", sha, event="push", branch="master", deadline_seconds=30)
    assert (run.head_sha, run.event) == (sha, "push")
    assert github.find_run(STACK, "build-main.yaml", sha, event="workflow_dispatch") is None
    assert github.follow_run(run, 60, poll=fast_poll()).conclusion is RunConclusion.SUCCESS
    assert github.branch_head(STACK, "master") == sha
    commit = github.commit(STACK, sha)
    assert commit.message == "Bump the stack"
    assert commit.timestamp is not None
    assert run.created_at is not None
    assert commit.timestamp <= run.created_at
    assert "1.0.2" in [tag.name for tag in github.tags(STACK)]


def test_a_failing_build_names_its_job_and_step(
    make_sandbox: Callable[..., Sandbox], github_of: Callable[[Sandbox], GitHubClient]
) -> None:
    faults = {"failing_builds": [{"repository": STACK, "workflow": "build main", "step": "Build"}]}
    sb = make_sandbox(scenario(), speed=SPEED, faults=faults)
    github = github_of(sb)
    run = github.dispatch(STACK, "build main", "master", INPUTS)
    with pytest.raises(BuildFailed, match=r"ended failure: job '.+' failed at step 'Build'") as caught:
        github.follow_run(run, 60, poll=fast_poll())
    assert caught.value.step == "Build"
    assert caught.value.url == run.html_url
    assert run.html_url in str(caught.value)


def test_the_rate_limit_is_waited_for_up_to_the_cap(
    make_sandbox: Callable[..., Sandbox], github_of: Callable[[Sandbox], GitHubClient]
) -> None:
    sb = make_sandbox(scenario(rate_limit=2, rate_limit_window_seconds=1.0), speed=SPEED)
    github = github_of(sb)
    heads = [github.branch_head(STACK, "master") for _ in range(3)]  # the third waits for the reset
    assert len(set(heads)) == 1
    statuses = [r.status for r in served(sb, "GET", "/branches/master", at_least=4)]
    assert statuses[:3] == [200, 200, 403]
    assert statuses[-1] == 200
    assert len(statuses) <= 2 + FAST.attempts

    sb2 = make_sandbox(scenario(rate_limit=1, rate_limit_window_seconds=600.0), speed=SPEED)
    github2 = github_of(sb2)
    github2.branch_head(STACK, "master")
    with pytest.raises(RateLimited, match="API rate limit exceeded") as caught:
        github2.branch_head(STACK, "master")
    assert caught.value.retry_after > FAST.max_retry_after
    assert len(served(sb2, "GET", "/branches/master", at_least=2)) == 2  # past the cap: no waiting, no retry


def test_injected_faults_are_retried_with_bounded_attempts(
    make_sandbox: Callable[..., Sandbox], github_of: Callable[[Sandbox], GitHubClient]
) -> None:
    sb = make_sandbox(scenario(), speed=SPEED, faults={"github": {"fail_next": 2, "error_status": 502}})
    github = github_of(sb)
    assert github.branch_head(STACK, "master")
    assert [r.status for r in served(sb, "GET", "/branches/master", at_least=3)] == [502, 502, 200]

    sb.set_faults(github={"drop_rate": 1.0, "paths": "/tags$"})
    with pytest.raises(ApiError, match="got no answer"):
        github.tags(STACK)
    assert len(served(sb, "GET", "/tags", at_least=FAST.attempts)) == FAST.attempts

    sb.set_faults(github={"drop_rate": 0.0, "rate_limit_rate": 1.0, "retry_after_seconds": 1, "paths": "/commits/"})
    with pytest.raises(RateLimited):
        github.commit(STACK, "master")
    assert [r.status for r in served(sb, "GET", "/commits/master", at_least=FAST.attempts)] == [429] * FAST.attempts

    # a POST is not retried as a GET is; it is sent again only when no run has appeared, a bounded number of times
    sb.set_faults(github={"rate_limit_rate": 0.0, "fail_next": 3, "error_status": 500, "paths": "/dispatches$"})
    with pytest.raises(ApiError, match=r"answered 500.*any of 3 dispatches; not dispatching again"):
        github.dispatch(STACK, "build-main.yaml", "master", INPUTS, poll=fast_poll())
    assert [r.status for r in served(sb, "POST", "/dispatches", at_least=3)] == [500] * github.dispatch_attempts


def test_wait_for_a_run_that_something_else_started(
    make_sandbox: Callable[..., Sandbox], github_of: Callable[[Sandbox], GitHubClient]
) -> None:
    """Observe mode: the frontend build dispatches the stack build; we find it by time, not by sha."""
    loaded = load_scenario("fragalysis")
    loaded.github.trigger_awx = False  # the frontend build chains to the stack build, and no further
    sb = make_sandbox(loaded, speed=SPEED)
    github = github_of(sb)
    before = datetime.now(UTC) - timedelta(seconds=1)
    old = github.dispatch(STACK, "build main", "master", INPUTS, poll=fast_poll())
    github.follow_run(old, 60, poll=fast_poll())
    sha = sb.push("xchem/fragalysis-frontend", "staging")
    frontend = github.wait_for_run("xchem/fragalysis-frontend", "build-staging.yaml", sha, deadline_seconds=30)
    frontend = github.follow_run(frontend, 60, poll=fast_poll())
    assert frontend.updated_at is not None
    after = frontend.updated_at - timedelta(seconds=1)
    chained = github.wait_for_run(
        STACK,
        "build main",
        None,
        created_after=after,
        event="workflow_dispatch",
        deadline_seconds=30,
        poll=fast_poll(),
    )
    assert chained.id != old.id
    assert chained.created_at is not None
    assert chained.created_at >= after
    # without a bound in time, the earlier dispatch of the same commit would match too
    assert github.find_run(STACK, "build main", None, created_after=before, event="workflow_dispatch") is not None
    with pytest.raises(ValueError, match="head_sha or created_after"):
        github.find_run(STACK, "build main", None)


def test_a_lost_dispatch_answer_is_looked_up_not_dispatched_again(
    make_sandbox: Callable[..., Sandbox], github_of: Callable[[Sandbox], GitHubClient]
) -> None:
    """GitHub starts the run but the answer never arrives: the client finds that run instead of a second build."""
    sb = make_sandbox(scenario(), speed=SPEED, faults={"github": {"lose_answer_rate": 1.0, "paths": "/dispatches$"}})
    github = github_of(sb)
    run = github.dispatch(STACK, "build main", "master", INPUTS, poll=fast_poll())
    assert len(served(sb, "POST", "/dispatches", at_least=1)) == 1
    runs = list(github.runs(STACK, "build main", event="workflow_dispatch"))
    assert [found.id for found in runs] == [run.id]
