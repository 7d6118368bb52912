"""The GitHub emulator's REST API: auth, workflows, dispatch, runs and their filters, pagination, ETags, the rate
limit, branches, tags, commits and injected faults - over real HTTP against the in-process sandbox."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sandbox.runtime import Sandbox
from sandbox.scenario import Scenario, load_scenario
from tests.conftest import wait_for

SPEED = 1200
STACK = "xchem/fragalysis-stack"
FRONTEND = "xchem/fragalysis-frontend"
FACTS_INPUTS = {
    "be_namespace": "xchem",
    "be_image_tag": "latest",
    "fe_namespace": "xchem",
    "fe_image_tag": "latest",
    "stack_namespace": "xchem",
}


def scenario(*, downstream: bool = False, awx: bool = False, **github: Any) -> Scenario:
    """The Fragalysis scenario with the chaining secrets switched as asked and ``github`` fields replaced."""
    loaded = load_scenario("fragalysis")
    settings = loaded.github.model_copy(update={"trigger_downstream": downstream, "trigger_awx": awx, **github})
    return loaded.model_copy(update={"github": settings})


def api(sb: Sandbox, token: str | None = None) -> httpx.Client:
    token = token or sb.scenario.github.token
    return httpx.Client(base_url=sb.urls["github"], headers={"Authorization": f"Bearer {token}"}, timeout=10)


def wait_run(client: httpx.Client, repository: str, run_id: int) -> dict[str, Any]:
    def completed() -> dict[str, Any] | None:
        run = client.get(f"/repos/{repository}/actions/runs/{run_id}").json()
        return run if run["status"] == "completed" else None

    return wait_for(completed, f"run {run_id} to complete")


def push(sb: Sandbox, repository: str, ref: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{sb.urls['github']}/_sandbox/push", json={"repository": repository, "ref": ref, **body})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def quiet(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    """Fragalysis without chaining (no downstream dispatch, no AWX launch)."""
    return make_sandbox(scenario(), speed=SPEED)


@pytest.fixture
def gh(quiet: Sandbox) -> Iterator[httpx.Client]:
    with api(quiet) as client:
        yield client


# ---------------------------------------------------------------- auth, errors


def test_token_auth(quiet: Sandbox):
    url = f"{quiet.urls['github']}/repos/{STACK}"
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.json()["message"] == "Requires authentication"
    wrong = httpx.get(url, headers={"Authorization": "Bearer ghp_wrong"})
    assert wrong.status_code == 401
    assert wrong.json()["message"] == "Bad credentials"
    assert wrong.json()["documentation_url"].startswith("https://docs.github.com/")
    assert wrong.headers["x-ratelimit-limit"] == "60"  # the anonymous limit
    token = quiet.scenario.github.token
    for header in (f"Bearer {token}", f"token {token}"):
        answer = httpx.get(url, headers={"Authorization": header})
        assert answer.status_code == 200
        assert answer.json()["full_name"] == STACK
        assert answer.json()["default_branch"] == "master"


def test_unknown_things_are_not_found(gh: httpx.Client):
    for path in (
        "/repos/xchem/nothing",
        f"/repos/{STACK}/actions/workflows/nothing.yaml",
        f"/repos/{STACK}/actions/workflows/nothing.yaml/runs",
        f"/repos/{STACK}/actions/runs/1",
        f"/repos/{STACK}/actions/runs/1/jobs",
        "/no/such/path",
    ):
        answer = gh.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["message"] == "Not Found"
        assert "x-ratelimit-remaining" in answer.headers
    assert gh.get(f"/repos/{STACK}/branches/nope").json()["message"] == "Branch not found"
    unknown_commit = gh.get(f"/repos/{STACK}/commits/nope")
    assert unknown_commit.status_code == 422
    assert unknown_commit.json()["message"] == "No commit found for SHA: nope"


# ---------------------------------------------------------------- workflows and dispatch


def test_workflows_by_id_and_file_name(gh: httpx.Client):
    listed = gh.get(f"/repos/{STACK}/actions/workflows").json()
    assert listed["total_count"] == 1  # build main builds the tags too, as the real repository's does
    names = {w["path"]: w for w in listed["workflows"]}
    assert set(names) == {".github/workflows/build-main.yaml"}
    main = names[".github/workflows/build-main.yaml"]
    assert main["name"] == "build main"
    assert main["state"] == "active"
    by_file = gh.get(f"/repos/{STACK}/actions/workflows/build-main.yaml").json()
    by_id = gh.get(f"/repos/{STACK}/actions/workflows/{main['id']}").json()
    assert by_file == by_id == main


def test_workflow_ids_are_stable(make_sandbox: Callable[..., Sandbox]):
    ids = []
    for _ in range(2):
        with api(make_sandbox(scenario(), speed=SPEED)) as client:
            ids.append([w["id"] for w in client.get(f"/repos/{STACK}/actions/workflows").json()["workflows"]])
    assert ids[0] == ids[1]


def test_dispatch_answers_204_or_the_run_details(gh: httpx.Client, quiet: Sandbox):
    dispatches = f"/repos/{STACK}/actions/workflows/build-main.yaml/dispatches"
    plain = gh.post(dispatches, json={"ref": "master", "inputs": {"be_image_tag": "1.2"}})
    assert plain.status_code == 204
    assert plain.content == b""
    detailed = gh.post(dispatches, json={"ref": "refs/heads/master", "return_run_details": True})
    assert detailed.status_code == 200
    details = detailed.json()
    assert set(details) == {"workflow_run_id", "run_url", "html_url"}
    run = gh.get(details["run_url"]).json()
    assert run["id"] == details["workflow_run_id"]
    assert run["html_url"] == details["html_url"]
    assert run["event"] == "workflow_dispatch"
    assert run["head_branch"] == "master"
    assert run["head_sha"] == gh.get(f"/repos/{STACK}/branches/master").json()["commit"]["sha"]
    assert run["repository"]["full_name"] == STACK
    assert run["path"] == ".github/workflows/build-main.yaml"
    runs = gh.get(f"/repos/{STACK}/actions/workflows/build-main.yaml/runs").json()
    assert runs["total_count"] == 2
    first = quiet.call(lambda: quiet.github.state.runs[runs["workflow_runs"][1]["id"]].inputs)
    assert first == {**FACTS_INPUTS, "be_image_tag": "1.2"}


@pytest.mark.parametrize(
    ("ref", "branch"),
    [("master", "master"), ("refs/heads/master", "master"), ("1.0.2", "1.0.2"), ("refs/tags/1.0.2", "1.0.2")],
)
def test_dispatch_on_branches_and_tags(gh: httpx.Client, ref: str, branch: str):
    answer = gh.post(
        f"/repos/{STACK}/actions/workflows/build-main.yaml/dispatches", json={"ref": ref, "return_run_details": True}
    )
    assert answer.status_code == 200, answer.text
    run = gh.get(answer.json()["run_url"]).json()
    assert run["head_branch"] == branch
    kind = "branches" if branch == "master" else "tags"
    if kind == "branches":
        assert run["head_sha"] == gh.get(f"/repos/{STACK}/branches/master").json()["commit"]["sha"]
    else:
        tags = {t["name"]: t["commit"]["sha"] for t in gh.get(f"/repos/{STACK}/tags").json()}
        assert run["head_sha"] == tags["1.0.2"]


def _required_input_scenario() -> Scenario:
    loaded = scenario()
    stack = loaded.repository(STACK)
    assert stack is not None
    assert stack.workflows[0].dispatch_inputs is not None
    stack.workflows[0].dispatch_inputs["stack_namespace"] = (
        stack.workflows[0].dispatch_inputs["stack_namespace"].model_copy(update={"required": True, "default": None})
    )
    return loaded


@pytest.mark.parametrize(
    ("repository", "workflow", "body", "message"),
    [
        (
            STACK,
            "build-main.yaml",
            {"ref": "master", "inputs": {"x": "1", "y": "2"}},
            'Unexpected inputs provided: ["x", "y"]',
        ),
        (STACK, "build-main.yaml", {"ref": "master"}, "Required input 'stack_namespace' not provided"),
        (STACK, "build-main.yaml", {"ref": "nowhere"}, "No ref found for: nowhere"),
        (STACK, "build-main.yaml", {"ref": "refs/tags/master"}, "No ref found for: refs/tags/master"),
        (FRONTEND, "build-staging.yaml", {"ref": "staging"}, "Workflow does not have 'workflow_dispatch' trigger"),
    ],
)
def test_dispatch_422s(make_sandbox: Callable[..., Sandbox], repository, workflow, body, message):
    sb = make_sandbox(_required_input_scenario(), speed=SPEED)
    with api(sb) as client:
        answer = client.post(f"/repos/{repository}/actions/workflows/{workflow}/dispatches", json=body)
        assert answer.status_code == 422
        assert answer.json()["message"] == message
        assert client.get(f"/repos/{repository}/actions/runs").json()["total_count"] == 0


def test_dispatch_body_errors(gh: httpx.Client):
    url = f"/repos/{STACK}/actions/workflows/build-main.yaml/dispatches"
    assert gh.post(url, content=b"{not json").status_code == 400
    assert gh.post(url, json={"inputs": {}}).status_code == 422
    odd = gh.post(url, json={"ref": "master", "colour": "blue"})
    assert odd.status_code == 422
    assert '"colour" is not a permitted key.' in odd.json()["message"]


def test_older_enterprise_rejects_return_run_details(make_sandbox: Callable[..., Sandbox]):
    sb = make_sandbox(scenario(return_run_details=False), speed=SPEED)
    with api(sb) as client:
        url = f"/repos/{STACK}/actions/workflows/build-main.yaml/dispatches"
        rejected = client.post(url, json={"ref": "master", "return_run_details": True})
        assert rejected.status_code == 400
        assert '"return_run_details" is not a permitted key.' in rejected.json()["message"]
        assert client.get(f"/repos/{STACK}/actions/runs").json()["total_count"] == 0
        assert client.post(url, json={"ref": "master"}).status_code == 204
        assert client.get(f"/repos/{STACK}/actions/runs").json()["total_count"] == 1


# ---------------------------------------------------------------- runs and jobs


def test_run_lifecycle_with_jobs_and_steps(make_sandbox: Callable[..., Sandbox]):
    loaded = scenario()
    stack = loaded.repository(STACK)
    assert stack is not None
    stack.workflows[0].queued_seconds = 600.0  # 0.5 s at this speed, so that polling sees each status
    stack.workflows[0].duration_seconds = 1800.0
    sb = make_sandbox(loaded, speed=SPEED)
    with api(sb) as client:
        answer = client.post(
            f"/repos/{STACK}/actions/workflows/build-main.yaml/dispatches",
            json={"ref": "master", "return_run_details": True},
        )
        run_url = answer.json()["run_url"]
        seen: list[str] = []

        def done() -> dict[str, Any] | None:
            run = client.get(run_url).json()
            if not seen or seen[-1] != run["status"]:
                seen.append(run["status"])
            if run["status"] != "completed":
                assert run["conclusion"] is None
            return run if run["status"] == "completed" else None

        run = wait_for(done, "the run")
        # statuses only move forward
        order = ["queued", "in_progress", "completed"]
        assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen)
        assert "in_progress" in seen
        assert run["conclusion"] == "success"
        assert run["run_attempt"] == 1
        assert run["run_number"] == 1
        assert run["created_at"].endswith("Z")
        jobs = client.get(run["jobs_url"]).json()
        assert jobs["total_count"] == 1
        job = jobs["jobs"][0]
        assert job["run_id"] == run["id"]
        assert (job["status"], job["conclusion"]) == ("completed", "success")
        names = [step["name"] for step in job["steps"]]
        assert names == ["Set up job", "Checkout", "Build", "Push", "Trigger AWX", "Complete job"]
        assert [step["number"] for step in job["steps"]] == [1, 2, 3, 4, 5, 6]
        ran = [step for step in job["steps"] if step["conclusion"] == "success"]
        skipped = [step["name"] for step in job["steps"] if step["conclusion"] == "skipped"]
        assert skipped == ["Trigger AWX"]  # TRIGGER_AWX is not "yes" in this scenario
        times = [(step["started_at"], step["completed_at"]) for step in ran]
        flat = [moment for pair in times for moment in pair]
        assert flat == sorted(flat)
        assert run["created_at"] <= job["started_at"] <= flat[0]
        assert flat[-1] <= job["completed_at"] <= run["updated_at"]


def test_runs_filters(gh: httpx.Client, quiet: Sandbox):
    first = push(quiet, FRONTEND, "staging")
    second = push(quiet, FRONTEND, "staging")
    production = push(quiet, FRONTEND, "production")
    dispatched = gh.post(
        f"/repos/{STACK}/actions/workflows/build-main.yaml/dispatches",
        json={"ref": "master", "return_run_details": True},
    ).json()
    for run_id in (*first["runs"], *second["runs"], *production["runs"]):
        wait_run(gh, FRONTEND, run_id)
    wait_run(gh, STACK, dispatched["workflow_run_id"])
    runs = f"/repos/{FRONTEND}/actions/runs"

    def ids(path: str, **params: str) -> list[int]:
        answer = gh.get(path, params=params).json()
        assert answer["total_count"] == len(answer["workflow_runs"])
        return [run["id"] for run in answer["workflow_runs"]]

    everything = ids(runs)
    assert everything == sorted(everything, reverse=True)  # newest first
    assert len(everything) == 3
    assert ids(runs, branch="staging") == [*second["runs"], *first["runs"]]
    assert ids(runs, branch="production") == production["runs"]
    assert ids(runs, head_sha=first["sha"]) == first["runs"]
    assert ids(runs, event="push") == everything
    assert ids(runs, event="workflow_dispatch") == []
    assert ids(f"/repos/{STACK}/actions/runs", event="workflow_dispatch") == [dispatched["workflow_run_id"]]
    assert ids(runs, status="completed") == everything
    assert ids(runs, status="success") == everything
    assert ids(runs, status="failure") == []
    assert ids(runs, status="in_progress") == []
    assert ids(f"/repos/{FRONTEND}/actions/workflows/build-production.yaml/runs") == production["runs"]
    now = datetime.now(UTC)
    today = now.date().isoformat()
    yesterday = (now - timedelta(days=1)).date().isoformat()
    tomorrow = (now + timedelta(days=1)).date().isoformat()
    minute_ago = (now - timedelta(minutes=1)).isoformat(timespec="seconds").replace("+00:00", "Z")
    assert ids(runs, created=today) == everything
    assert ids(runs, created=f">={today}") == everything
    assert ids(runs, created=f">{today}") == []
    assert ids(runs, created=f"<{today}") == []
    assert ids(runs, created=f"<={today}") == everything
    assert ids(runs, created=f">{minute_ago}") == everything
    assert ids(runs, created=f"{yesterday}..{tomorrow}") == everything
    assert ids(runs, created=f"{yesterday}..{yesterday}") == []
    assert ids(runs, created=f"{minute_ago}..*") == everything


def test_pagination_link_headers(gh: httpx.Client, quiet: Sandbox):
    pushed = [push(quiet, FRONTEND, "staging")["runs"][0] for _ in range(5)]
    first = gh.get(f"/repos/{FRONTEND}/actions/runs", params={"per_page": 2})
    assert first.json()["total_count"] == 5
    assert set(first.links) == {"next", "last"}
    assert "page=3" in first.links["last"]["url"]
    seen = [run["id"] for run in first.json()["workflow_runs"]]
    url = first.links["next"]["url"]
    while True:
        page = gh.get(url)
        assert "prev" in page.links
        assert "first" in page.links
        seen += [run["id"] for run in page.json()["workflow_runs"]]
        if "next" not in page.links:
            break
        url = page.links["next"]["url"]
    assert seen == sorted(pushed, reverse=True)


def test_etag_and_304_do_not_count(gh: httpx.Client):
    url = f"/repos/{STACK}/branches/master"
    first = gh.get(url)
    etag = first.headers["etag"]
    used = int(first.headers["x-ratelimit-used"])
    again = gh.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert int(again.headers["x-ratelimit-used"]) == used
    third = gh.get(url, headers={"If-None-Match": 'W/"something-else"'})
    assert third.status_code == 200
    assert int(third.headers["x-ratelimit-used"]) == used + 1
    assert int(third.headers["x-ratelimit-remaining"]) == 5000 - used - 1


def test_rate_limit_exceeded(make_sandbox: Callable[..., Sandbox]):
    sb = make_sandbox(scenario(rate_limit=3, rate_limit_window_seconds=600.0), speed=SPEED)
    with api(sb) as client:
        remaining = [int(client.get(f"/repos/{STACK}").headers["x-ratelimit-remaining"]) for _ in range(3)]
        assert remaining == [2, 1, 0]
        over = client.get(f"/repos/{STACK}")
        assert over.status_code == 403
        assert over.json()["message"].startswith("API rate limit exceeded for ")
        assert over.headers["x-ratelimit-remaining"] == "0"
        assert over.headers["x-ratelimit-limit"] == "3"
        assert int(over.headers["x-ratelimit-reset"]) > time.time() + 500
        limits = client.get("/rate_limit")  # does not count, as on GitHub
        assert limits.status_code == 200
        assert limits.json()["resources"]["core"]["remaining"] == 0


# ---------------------------------------------------------------- branches, tags, commits


def test_branches_tags_and_commits(gh: httpx.Client, quiet: Sandbox):
    branch = gh.get(f"/repos/{STACK}/branches/master").json()
    assert branch["name"] == "master"
    assert branch["protected"] is False
    committed = datetime.fromisoformat(branch["commit"]["commit"]["committer"]["date"].replace("Z", "+00:00"))
    assert committed < datetime.now(UTC) - timedelta(hours=23)  # the initial commit is a day old
    pushed = push(quiet, STACK, "refs/tags/1.0.3", message="Release 1.0.3\n\nnotes")
    tags = gh.get(f"/repos/{STACK}/tags").json()
    assert [t["name"] for t in tags] == ["1.0.3", "1.0.2"]
    assert tags[0]["commit"]["sha"] == pushed["sha"]
    commit = gh.get(f"/repos/{STACK}/commits/{pushed['sha']}").json()
    assert commit["sha"] == pushed["sha"]
    assert commit["commit"]["message"] == "Release 1.0.3\n\nnotes"
    assert set(commit["commit"]["author"]) == {"name", "email", "date"}
    assert gh.get(f"/repos/{STACK}/commits/1.0.3").json()["sha"] == pushed["sha"]
    assert gh.get(f"/repos/{STACK}/commits/{pushed['sha'][:7]}").json()["sha"] == pushed["sha"]
    assert gh.get(f"/repos/{STACK}/commits/master").json()["sha"] == branch["commit"]["sha"]
    sha = "ab" * 20
    push(quiet, STACK, "master", sha=sha, message="Fix the thing")
    moved = gh.get(f"/repos/{STACK}/branches/master").json()
    assert moved["commit"]["sha"] == sha
    assert moved["commit"]["commit"]["message"] == "Fix the thing"


def test_control_push_errors(quiet: Sandbox):
    url = f"{quiet.urls['github']}/_sandbox/push"
    assert httpx.post(url, json={"repository": "xchem/nothing", "ref": "master"}).status_code == 404
    assert httpx.post(url, json={"repository": STACK, "ref": "master", "sha": "xyz"}).status_code == 400
    assert httpx.post(url, json={"repository": STACK}).status_code == 400
    assert httpx.post(url, content=b"{oops").status_code == 400
    bad_ref = httpx.post(url, json={"repository": STACK, "ref": "refs/heads/a..b"})
    assert bad_ref.status_code == 400
    assert "message" in bad_ref.json()


# ---------------------------------------------------------------- injected faults


def test_injected_faults_look_like_github(quiet: Sandbox, gh: httpx.Client):
    quiet.set_faults(github={"fail_next": 1, "error_status": 502})
    failed = gh.get(f"/repos/{STACK}")
    assert failed.status_code == 502
    assert failed.json()["message"] == "Server Error"
    quiet.set_faults(github={"rate_limit_rate": 1.0, "retry_after_seconds": 9})
    limited = gh.get(f"/repos/{STACK}")
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "9"
    assert "secondary rate limit" in limited.json()["message"]
    quiet.set_faults(github={"rate_limit_rate": 0.0})
    assert gh.get(f"/repos/{STACK}").status_code == 200
