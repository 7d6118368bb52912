"""A workflow dispatch whose run never appears is sent again (a bounded number of times), and the client follows
one run: against the sandbox's GitHub with its drop / lose-answer faults aimed at the dispatch path (seeded), and
on a strict MockTransport for a second dispatch that ends up with two runs."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import httpx
import pytest

from clients.errors import ApiError
from clients.github import GitHubClient, RunConclusion
from sandbox.runtime import Sandbox
from tests.clients.routes import Routes, reply
from tests.clients.test_github import CANARY, REPO, WF, run_body, runs_list
from tests.clients.test_github import FAST as MOCK_FAST
from tests.clients.test_github import fast_poll as mock_poll
from tests.clients.test_github_sandbox import INPUTS, SPEED, STACK, fast_poll, scenario, served

DISPATCHES = "/dispatches$"
DROP_RATE = 0.5


def seed_where(*dropped: bool) -> int:
    """A scenario seed under which the dispatches are dropped (True) or let through (False) in this order.

    The fault middleware draws one number from ``random.Random(seed)`` per request its faults are aimed at, for
    ``drop_rate`` alone when no other rate is set; the tests check the outcome in the request log all the same.
    """

    def pattern(seed: int) -> tuple[bool, ...]:
        rng = random.Random(seed)
        return tuple(rng.random() < DROP_RATE for _ in dropped)

    return next(seed for seed in range(10_000) if pattern(seed) == dropped)


def dispatch_runs(github: GitHubClient) -> list[int]:
    return [run.id for run in github.runs(STACK, "build main", event="workflow_dispatch")]


def test_a_dispatch_dropped_before_github_acted_is_sent_again_and_its_run_followed(
    make_sandbox: Callable[..., Sandbox],
    github_of: Callable[[Sandbox], GitHubClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="clients.github")
    loaded = scenario(duration=60.0).model_copy(update={"seed": seed_where(True, False)})
    sb = make_sandbox(loaded, speed=SPEED, faults={"github": {"drop_rate": DROP_RATE, "paths": DISPATCHES}})
    github = github_of(sb)

    run = github.dispatch(STACK, "build main", "master", INPUTS, poll=fast_poll())

    # the first dispatch never reached GitHub (status 0: dropped), the second did
    assert [r.status for r in served(sb, "POST", "/dispatches", at_least=2)] == [0, 200]
    assert dispatch_runs(github) == [run.id]
    followed = github.follow_run(run, 60, poll=fast_poll())
    assert followed.conclusion is RunConclusion.SUCCESS
    messages = [record.getMessage() for record in caplog.records]
    assert any("dispatching it again (dispatch 2 of 3" in message for message in messages), messages
    following = [message for message in messages if "2 dispatches of build-main.yaml" in message]
    assert len(following) == 1, messages
    assert f"following run {run.id}" in following[0]
    assert "no other run has appeared" in following[0]


def test_a_dispatch_whose_answer_was_lost_after_github_acted_follows_that_one_run(
    make_sandbox: Callable[..., Sandbox],
    github_of: Callable[[Sandbox], GitHubClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="clients.github")
    sb = make_sandbox(
        scenario(duration=60.0), speed=SPEED, faults={"github": {"lose_answer_rate": 1.0, "paths": DISPATCHES}}
    )
    github = github_of(sb)

    run = github.dispatch(STACK, "build main", "master", INPUTS, poll=fast_poll())

    assert [r.status for r in served(sb, "POST", "/dispatches", at_least=1)] == [0], "one dispatch, answer lost"
    assert dispatch_runs(github) == [run.id]
    assert github.follow_run(run, 60, poll=fast_poll()).conclusion is RunConclusion.SUCCESS
    messages = [record.getMessage() for record in caplog.records]
    assert not any("dispatching it again" in message for message in messages), messages
    assert len(served(sb, "POST", "/dispatches")) == 1, "no second dispatch after the run was found"


def test_every_dispatch_dropped_fails_after_the_bound_naming_it(
    make_sandbox: Callable[..., Sandbox], github_of: Callable[[Sandbox], GitHubClient]
) -> None:
    sb = make_sandbox(scenario(), speed=SPEED, faults={"github": {"drop_rate": 1.0, "paths": DISPATCHES}})
    github = github_of(sb)
    with pytest.raises(ApiError, match=r"got no answer.*any of 3 dispatches; not dispatching again") as caught:
        github.dispatch(STACK, "build main", "master", INPUTS, poll=fast_poll())
    assert f"{sb.urls['github']}/repos/{STACK}/actions/workflows/" in str(caught.value)
    assert [r.status for r in served(sb, "POST", "/dispatches", at_least=3)] == [0, 0, 0]
    assert dispatch_runs(github) == []


def test_when_two_dispatches_both_start_a_run_one_is_followed_and_the_other_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first dispatch's answer is lost and its run shows only after the look-up window; the second dispatch
    answers with its run id: that run is followed, and the warning names the other as a duplicate build."""
    caplog.set_level(logging.INFO, logger="clients.github")
    routes = Routes()
    dispatches = f"/repos/{REPO}/actions/workflows/51/dispatches"
    routes.add("GET", f"/repos/{REPO}/actions/workflows/build-main.yaml", reply(200, WF))
    details = {"workflow_run_id": 907, "run_url": f"https://api.github.com/repos/{REPO}/actions/runs/907"}
    routes.add("POST", dispatches, httpx.ReadError("connection reset"), reply(200, {**details, "html_url": "h"}))

    def listing(request: httpx.Request) -> httpx.Response:
        late = routes.count("POST", dispatches) >= 2  # the first dispatch's run shows up late
        return runs_list(run_body(907), run_body(906)) if late else runs_list()

    routes.add("GET", f"/repos/{REPO}/actions/workflows/51/runs", listing)
    routes.add("GET", f"/repos/{REPO}/actions/runs/907", reply(200, run_body(907)))
    with GitHubClient(CANARY, retry=MOCK_FAST, transport=routes.transport(), lost_dispatch_seconds=0.1) as github:
        run = github.dispatch(REPO, "build-main.yaml", "master", poll=mock_poll())

    assert run.id == 907
    assert routes.count("POST", dispatches) == 2
    (following,) = [r.getMessage() for r in caplog.records if "2 dispatches of build-main.yaml" in r.getMessage()]
    assert f"following run 907 (https://github.com/{REPO}/actions/runs/907)" in following
    assert f"not followed (a duplicate build): run 906 (https://github.com/{REPO}/actions/runs/906)" in following
