"""GitHubClient on a strict MockTransport: every request a test does not declare fails it."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from clients.errors import AmbiguousName, ApiError, BuildFailed, DeadlineExceeded, NotFound, RateLimited
from clients.github import GitHubClient, RunConclusion, RunStatus, WorkflowRun
from clients.retry import RetryPolicy
from clients.waiting import Poll
from tests.clients.routes import Routes, body_of, reply

API = "https://api.github.com"
REPO = "xchem/fragalysis-stack"
CANARY = "ghp_canaryTOKEN0000aaaa1111bbbb2222cccc"
FAST = RetryPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.02, jitter=0.0, max_retry_after=2.0)
WF = {"id": 51, "name": "build main", "path": ".github/workflows/build-main.yaml", "state": "active"}
SHA = "a" * 40


def fast_poll() -> Poll:
    return Poll(initial=0.01, factor=1.5, cap=0.03)


@pytest.fixture
def routes() -> Routes:
    return Routes()


@pytest.fixture
def github(routes: Routes) -> Iterator[GitHubClient]:
    with GitHubClient(CANARY, retry=FAST, transport=routes.transport(), lost_dispatch_seconds=0.1) as client:
        yield client


def run_body(run_id: int, status: str = "queued", conclusion: str | None = None, **extra: Any) -> dict[str, Any]:
    data = {
        "id": run_id,
        "name": "build main",
        "workflow_id": 51,
        "head_sha": SHA,
        "head_branch": "master",
        "event": "workflow_dispatch",
        "status": status,
        "conclusion": conclusion,
        "created_at": "2026-11-26T10:00:00Z",
        "run_started_at": "2026-11-26T10:00:10Z",
        "updated_at": "2026-11-26T10:00:10Z",
        "html_url": f"https://github.com/{REPO}/actions/runs/{run_id}",
        "url": f"{API}/repos/{REPO}/actions/runs/{run_id}",
        "run_attempt": 1,
        "run_number": 7,
        "repository": {"full_name": REPO},
    }
    data.update(extra)
    return data


def runs_list(*runs: dict[str, Any]) -> httpx.Response:
    return reply(200, {"total_count": len(runs), "workflow_runs": list(runs)})


# ---------------------------------------------------------------- dispatch


def test_dispatch_by_file_returns_the_run_from_return_run_details(routes: Routes, github: GitHubClient) -> None:
    routes.add("GET", f"/repos/{REPO}/actions/workflows/build-main.yaml", reply(200, WF))
    details = {"workflow_run_id": 900, "run_url": f"{API}/repos/{REPO}/actions/runs/900", "html_url": "h"}
    routes.add("POST", f"/repos/{REPO}/actions/workflows/51/dispatches", reply(200, details))
    routes.add("GET", f"/repos/{REPO}/actions/runs/900", reply(200, run_body(900)))
    run = github.dispatch(REPO, "build-main.yaml", "refs/heads/master", {"be_image_tag": "latest"})
    assert (run.id, run.status, run.repository, run.event) == (900, RunStatus.QUEUED, REPO, "workflow_dispatch")
    sent = routes.sent("POST", f"/repos/{REPO}/actions/workflows/51/dispatches")[0]
    assert body_of(sent) == {
        "ref": "refs/heads/master",
        "inputs": {"be_image_tag": "latest"},
        "return_run_details": True,
    }
    assert sent.headers["x-github-api-version"] == "2022-11-28"
    assert sent.headers["accept"] == "application/vnd.github+json"


def test_dispatch_by_display_name_resolves_it_across_pages(routes: Routes, github: GitHubClient) -> None:
    other = {"id": 50, "name": "build tag", "path": ".github/workflows/build-tag.yaml", "state": "active"}
    page2 = f"{API}/repos/{REPO}/actions/workflows?per_page=100&page=2"
    routes.add(
        "GET",
        f"/repos/{REPO}/actions/workflows",
        lambda r: (
            reply(200, {"total_count": 2, "workflows": [other]}, {"link": f'<{page2}>; rel="next"'})
            if "page" not in r.url.params
            else reply(200, {"total_count": 2, "workflows": [WF]})
        ),
    )
    routes.add("POST", f"/repos/{REPO}/actions/workflows/51/dispatches", reply(200, {"workflow_run_id": 901}))
    routes.add("GET", f"/repos/{REPO}/actions/runs/901", reply(200, run_body(901)))
    assert github.dispatch(REPO, "build main", "master").id == 901
    assert routes.count("GET", f"/repos/{REPO}/actions/workflows") == 2


def test_an_unknown_workflow_name_lists_the_workflows(routes: Routes, github: GitHubClient) -> None:
    routes.add("GET", f"/repos/{REPO}/actions/workflows", reply(200, {"total_count": 1, "workflows": [WF]}))
    with pytest.raises(NotFound, match=r"no workflow named 'build it'; it has 'build main' \(build-main.yaml\)"):
        github.workflow(REPO, "build it")
    routes.add("GET", f"/repos/{REPO}/actions/workflows", reply(200, {"workflows": [WF, WF | {"id": 52}]}))
    with pytest.raises(AmbiguousName):
        github.workflow(REPO, "build main")


@pytest.mark.parametrize(
    "rejection",
    [
        reply(400, {"message": "Problems parsing JSON"}),
        reply(422, {"message": 'Invalid request.\n\n"return_run_details" is not a permitted key.'}),
    ],
)
def test_dispatch_falls_back_to_listing_when_return_run_details_is_rejected(
    routes: Routes, github: GitHubClient, rejection: httpx.Response
) -> None:
    routes.add("GET", f"/repos/{REPO}/actions/workflows/build-main.yaml", reply(200, WF))
    routes.add("POST", f"/repos/{REPO}/actions/workflows/51/dispatches", rejection, reply(204))
    older = run_body(800, "in_progress")  # someone else's dispatch just before ours
    ours = run_body(801, created_at="2026-11-26T10:00:02Z")
    routes.add(
        "GET", f"/repos/{REPO}/actions/workflows/51/runs", runs_list(older), runs_list(older), runs_list(ours, older)
    )
    run = github.dispatch(REPO, "build-main.yaml", "refs/heads/master", {"fe_image_tag": "latest"}, poll=fast_poll())
    assert run.id == 801
    first, second = routes.sent("POST", f"/repos/{REPO}/actions/workflows/51/dispatches")
    assert "return_run_details" in body_of(first)
    assert body_of(second) == {"ref": "refs/heads/master", "inputs": {"fe_image_tag": "latest"}}
    query = routes.sent("GET", f"/repos/{REPO}/actions/workflows/51/runs")[0].url.params
    assert (query["event"], query["branch"]) == ("workflow_dispatch", "master")
    assert query["created"].startswith(">=")
    assert datetime.fromisoformat(query["created"][2:]) <= datetime.now(UTC)


def test_dispatch_fallback_waits_with_a_deadline(routes: Routes, github: GitHubClient) -> None:
    routes.add("GET", f"/repos/{REPO}/actions/workflows/build-main.yaml", reply(200, WF))
    routes.add("POST", f"/repos/{REPO}/actions/workflows/51/dispatches", reply(400, {"message": "bad"}), reply(204))
    routes.add("GET", f"/repos/{REPO}/actions/workflows/51/runs", runs_list())
    with pytest.raises(DeadlineExceeded, match="no new workflow_dispatch run appeared"):
        github.dispatch(REPO, "build-main.yaml", "master", deadline_seconds=0.1, poll=fast_poll())


def test_a_422_quotes_github(routes: Routes, github: GitHubClient) -> None:
    routes.add("GET", f"/repos/{REPO}/actions/workflows/build-main.yaml", reply(200, WF))
    message = 'Unexpected inputs provided: ["colour"]'
    routes.add("POST", f"/repos/{REPO}/actions/workflows/51/dispatches", reply(422, {"message": message}))
    with pytest.raises(ApiError, match=r"refused to dispatch workflow 'build main' .* 422 Unexpected inputs") as caught:
        github.dispatch(REPO, "build-main.yaml", "master", {"colour": "red"})
    assert caught.value.status == 422
    assert routes.count("POST", f"/repos/{REPO}/actions/workflows/51/dispatches") == 1


def test_a_dispatch_after_a_5xx_is_sent_again_only_after_a_look_and_a_bounded_number_of_times(
    routes: Routes, github: GitHubClient
) -> None:
    routes.add("GET", f"/repos/{REPO}/actions/workflows/build-main.yaml", reply(200, WF))
    routes.add("POST", f"/repos/{REPO}/actions/workflows/51/dispatches", reply(502, {"message": "Server Error"}))
    routes.add("GET", f"/repos/{REPO}/actions/workflows/51/runs", runs_list())
    with pytest.raises(ApiError, match=r"answered 502.*any of 3 dispatches; not dispatching again"):
        github.dispatch(REPO, "build-main.yaml", "master", poll=fast_poll())
    # never blindly repeated (HttpService's retries leave a POST alone): one dispatch per look-up window
    assert routes.count("POST", f"/repos/{REPO}/actions/workflows/51/dispatches") == github.dispatch_attempts == 3
    order = ",".join(r.url.path.rpartition("/")[2] for r in routes.requests[1:])  # after the workflow's GET
    assert order.startswith("dispatches,runs")
    assert "dispatches,dispatches" not in order, f"each dispatch after the first follows a look for the run: {order}"


def test_a_dispatch_whose_answer_was_lost_finds_its_run(routes: Routes, github: GitHubClient) -> None:
    routes.add("GET", f"/repos/{REPO}/actions/workflows/build-main.yaml", reply(200, WF))
    routes.add("POST", f"/repos/{REPO}/actions/workflows/51/dispatches", httpx.ReadError("connection reset"))
    routes.add("GET", f"/repos/{REPO}/actions/workflows/51/runs", runs_list(), runs_list(run_body(906)))
    assert github.dispatch(REPO, "build-main.yaml", "master", poll=fast_poll()).id == 906
    assert routes.count("POST", f"/repos/{REPO}/actions/workflows/51/dispatches") == 1


# ---------------------------------------------------------------- runs


def test_find_run_takes_the_newest_for_the_commit(routes: Routes, github: GitHubClient) -> None:
    routes.add("GET", f"/repos/{REPO}/actions/workflows/build-main.yaml", reply(200, WF))
    stray = run_body(703, head_sha="b" * 40, created_at="2026-11-26T11:00:00Z")  # a server that ignored head_sha
    routes.add(
        "GET",
        f"/repos/{REPO}/actions/workflows/build-main.yaml/runs",
        runs_list(stray, run_body(702, created_at="2026-11-26T10:05:00Z"), run_body(701)),
    )
    run = github.find_run(REPO, "build-main.yaml", SHA, event="push", branch="master")
    assert run is not None
    assert run.id == 702
    query = routes.requests[0].url.params
    assert (query["head_sha"], query["event"], query["branch"]) == (SHA, "push", "master")


def test_wait_for_run_polls_until_it_appears(routes: Routes, github: GitHubClient) -> None:
    routes.add("GET", f"/repos/{REPO}/actions/workflows/build-main.yaml", reply(200, WF))
    routes.add("GET", f"/repos/{REPO}/actions/workflows/51/runs", runs_list(), runs_list(), runs_list(run_body(705)))
    assert github.wait_for_run(REPO, "build-main.yaml", SHA, deadline_seconds=5, poll=fast_poll()).id == 705
    assert routes.count("GET", f"/repos/{REPO}/actions/workflows/51/runs") == 3
    routes.add("GET", f"/repos/{REPO}/actions/workflows/51/runs", runs_list())
    with pytest.raises(DeadlineExceeded, match=f"no run of workflow 'build main' of {REPO} for commit aaaaaaaaaaaa"):
        github.wait_for_run(REPO, "build-main.yaml", SHA, deadline_seconds=0.1, poll=fast_poll())


def a_run(status: str = "queued") -> WorkflowRun:
    return WorkflowRun.from_api(run_body(900, status), REPO)


def test_follow_run_uses_etags_and_calls_back_on_changes(routes: Routes, github: GitHubClient) -> None:
    path = f"/repos/{REPO}/actions/runs/900"
    routes.add(
        "GET",
        path,
        reply(200, run_body(900, "queued"), {"etag": 'W/"q1"'}),
        reply(304, None, {"etag": 'W/"q1"'}),
        reply(200, run_body(900, "in_progress"), {"etag": 'W/"p1"'}),
        reply(304),
        reply(200, run_body(900, "completed", "success"), {"etag": 'W/"c1"'}),
    )
    seen: list[tuple[RunStatus, RunConclusion | None]] = []
    run = github.follow_run(a_run(), 5.0, on_status=lambda r: seen.append((r.status, r.conclusion)), poll=fast_poll())
    assert run.conclusion is RunConclusion.SUCCESS
    assert seen == [
        (RunStatus.QUEUED, None),
        (RunStatus.IN_PROGRESS, None),
        (RunStatus.COMPLETED, RunConclusion.SUCCESS),
    ]
    sent = [request.headers.get("if-none-match") for request in routes.sent("GET", path)]
    assert sent == [None, 'W/"q1"', 'W/"q1"', 'W/"p1"', 'W/"p1"']


def test_a_failed_run_names_the_failing_job_and_step(routes: Routes, github: GitHubClient) -> None:
    routes.add("GET", f"/repos/{REPO}/actions/runs/900", reply(200, run_body(900, "completed", "failure")))
    steps = [
        {"name": "Checkout", "number": 1, "status": "completed", "conclusion": "success"},
        {"name": "Build", "number": 2, "status": "completed", "conclusion": "failure"},
        {"name": "Push", "number": 3, "status": "completed", "conclusion": "skipped"},
    ]
    jobs = [
        {"id": 1, "name": "lint", "status": "completed", "conclusion": "success", "steps": []},
        {"id": 2, "name": "build", "status": "completed", "conclusion": "failure", "steps": steps,
         "started_at": "2026-11-26T10:00:10Z", "completed_at": "2026-11-26T10:04:10Z"},
    ]  # fmt: skip
    routes.add("GET", f"/repos/{REPO}/actions/runs/900/jobs", reply(200, {"total_count": 2, "jobs": jobs}))
    with pytest.raises(BuildFailed, match=r"ended failure: job 'build' failed at step 'Build'") as caught:
        github.follow_run(a_run(), 5.0, poll=fast_poll())
    error = caught.value
    assert (error.job, error.step, error.conclusion) == ("build", "Build", "failure")
    assert error.url == f"https://github.com/{REPO}/actions/runs/900"
    assert error.url in str(error)


def test_follow_run_past_the_deadline(routes: Routes, github: GitHubClient) -> None:
    routes.add("GET", f"/repos/{REPO}/actions/runs/900", reply(200, run_body(900, "in_progress"), {"etag": '"x"'}))
    with pytest.raises(DeadlineExceeded, match=r"still in_progress after 0 s: https://github.com/") as caught:
        github.follow_run(a_run(), 0.1, poll=fast_poll())
    assert caught.value.last_status == "in_progress"


def test_run_jobs_with_step_timings(routes: Routes, github: GitHubClient) -> None:
    step = {"name": "Build", "number": 3, "status": "completed", "conclusion": "success",
            "started_at": "2026-11-26T10:00:10Z", "completed_at": "2026-11-26T10:03:40Z"}  # fmt: skip
    job = {"id": 3, "name": "build", "status": "completed", "conclusion": "success", "steps": [step],
           "started_at": "2026-11-26T10:00:05Z", "completed_at": "2026-11-26T10:04:00Z", "html_url": "j"}  # fmt: skip
    routes.add("GET", f"/repos/{REPO}/actions/runs/900/jobs", reply(200, {"total_count": 1, "jobs": [job]}))
    (found,) = github.run_jobs(a_run())
    assert found.seconds == 235.0
    assert found.steps[0].seconds == 210.0
    assert found.failing_step is None


# ---------------------------------------------------------------- git


def test_branch_head_tags_and_commit(routes: Routes, github: GitHubClient) -> None:
    routes.add("GET", f"/repos/{REPO}/branches/master", reply(200, {"name": "master", "commit": {"sha": SHA}}))
    page2 = f"{API}/repos/{REPO}/tags?per_page=100&page=2"
    routes.add(
        "GET",
        f"/repos/{REPO}/tags",
        lambda r: (
            reply(200, [{"name": "1.0.3", "commit": {"sha": "c" * 40}}], {"link": f'<{page2}>; rel="next"'})
            if "page" not in r.url.params
            else reply(200, [{"name": "1.0.2", "commit": {"sha": "d" * 40}}])
        ),
    )
    commit = {
        "sha": SHA,
        "html_url": "c",
        "commit": {"message": "Fix it", "committer": {"date": "2026-11-26T09:58:00Z"}, "author": {"date": "x"}},
    }
    routes.add("GET", f"/repos/{REPO}/commits/{SHA}", reply(200, commit))
    assert github.branch_head(REPO, "refs/heads/master") == SHA
    assert [(t.name, t.sha[0]) for t in github.tags(REPO)] == [("1.0.3", "c"), ("1.0.2", "d")]
    found = github.commit(REPO, SHA)
    assert (found.sha, found.message, found.timestamp) == (SHA, "Fix it", datetime(2026, 11, 26, 9, 58, tzinfo=UTC))


def test_branch_head_if_changed_sends_the_etag_and_reads_304_as_unchanged(routes: Routes, github: GitHubClient) -> None:
    path = f"/repos/{REPO}/branches/master"
    routes.add(
        "GET",
        path,
        reply(200, {"name": "master", "commit": {"sha": SHA}}, {"etag": 'W/"b1"'}),
        reply(304, None, {"etag": 'W/"b1"'}),
        reply(200, {"name": "master", "commit": {"sha": "b" * 40}}, {"etag": 'W/"b2"'}),
    )
    first = github.branch_head_if_changed(REPO, "refs/heads/master")
    assert (first.sha, first.etag, first.changed) == (SHA, 'W/"b1"', True)
    quiet = github.branch_head_if_changed(REPO, "master", first.etag)
    assert (quiet.sha, quiet.etag, quiet.changed) == (None, 'W/"b1"', False)
    moved = github.branch_head_if_changed(REPO, "master", quiet.etag)
    assert (moved.sha, moved.etag) == ("b" * 40, 'W/"b2"')
    sent = [request.headers.get("if-none-match") for request in routes.sent("GET", path)]
    assert sent == [None, 'W/"b1"', 'W/"b1"']


class TagServer:
    """GitHub's tag listing by page number, with an ETag per page that honours ``If-None-Match``."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.served: list[tuple[int, int]] = []  # (page, status)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        per_page, page = int(request.url.params["per_page"]), int(request.url.params["page"])
        items = [{"name": n, "commit": {"sha": "c" * 40}} for n in self.names[(page - 1) * per_page : page * per_page]]
        etag = f'W/"{hash(tuple(item["name"] for item in items)) & 0xFFFFFFFF:x}"'
        status = 304 if request.headers.get("if-none-match") == etag else 200
        self.served.append((page, status))
        return reply(status, items if status == 200 else None, {"etag": etag})


def test_tags_if_changed_reads_every_page_conditionally(routes: Routes, github: GitHubClient) -> None:
    server = TagServer([f"1.0.{n}" for n in range(150, 0, -1)])
    routes.add("GET", f"/repos/{REPO}/tags", server)
    first = github.tags_if_changed(REPO)
    assert (first.changed, len(first.tags), [mark.count for mark in first.pages]) == (True, 150, [100, 50])
    quiet = github.tags_if_changed(REPO, first.pages)
    assert (quiet.changed, quiet.tags, quiet.pages) == (False, [], first.pages)
    assert server.served[2:] == [(1, 304), (2, 304)]
    server.names.insert(0, "1.0.151")  # GitHub promises no order: a new tag can shift every page
    moved = github.tags_if_changed(REPO, quiet.pages)
    assert moved.changed
    assert "1.0.151" in {tag.name for tag in moved.tags}


def test_tags_if_changed_sees_a_tag_after_a_full_last_page(routes: Routes, github: GitHubClient) -> None:
    server = TagServer([f"1.0.{n}" for n in range(100, 0, -1)])
    routes.add("GET", f"/repos/{REPO}/tags", server)
    first = github.tags_if_changed(REPO)
    assert [mark.count for mark in first.pages] == [100, 0]  # the empty page after a full one is remembered too
    assert github.tags_if_changed(REPO, first.pages).changed is False
    server.names.append("0.9.0")
    added = github.tags_if_changed(REPO, first.pages)
    assert (added.changed, [tag.name for tag in added.tags]) == (True, ["0.9.0"])
    assert server.served[-2:] == [(1, 304), (2, 200)]


def test_github_enterprise_base_path() -> None:
    routes = Routes().add("GET", f"/api/v3/repos/{REPO}/branches/master", reply(200, {"commit": {"sha": SHA}}))
    with GitHubClient(CANARY, api_url="https://ghe.example.org/api/v3", transport=routes.transport()) as github:
        assert github.branch_head(REPO, "master") == SHA
    assert str(routes.requests[0].url) == f"https://ghe.example.org/api/v3/repos/{REPO}/branches/master"


# ---------------------------------------------------------------- rate limits and secrets


def test_rate_limits_are_waited_for_up_to_the_cap(routes: Routes, github: GitHubClient) -> None:
    near = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) - 1)}
    routes.add(
        "GET",
        f"/repos/{REPO}/branches/master",
        reply(429, {"message": "secondary rate limit"}, {"retry-after": "0"}),
        reply(403, {"message": "API rate limit exceeded"}, near),
        reply(200, {"commit": {"sha": SHA}}),
    )
    assert github.branch_head(REPO, "master") == SHA
    assert routes.count("GET", f"/repos/{REPO}/branches/master") == 3

    far = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 1800)}
    routes.add("GET", f"/repos/{REPO}/tags", reply(403, {"message": "API rate limit exceeded"}, far))
    with pytest.raises(RateLimited, match="API rate limit exceeded"):
        github.tags(REPO)
    assert routes.count("GET", f"/repos/{REPO}/tags") == 1


def test_the_token_is_never_logged_or_shown(
    routes: Routes, github: GitHubClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    routes.add("GET", f"/repos/{REPO}/branches/master", reply(401, {"message": "Bad credentials"}))
    with pytest.raises(ApiError, match="Bad credentials") as caught:
        github.branch_head(REPO, "master")
    assert routes.requests[0].headers["authorization"] == f"Bearer {CANARY}"
    texts = [str(caught.value), repr(caught.value), repr(github), str(github)]
    texts += [record.getMessage() for record in caplog.records]
    assert all(CANARY not in text for text in texts)
