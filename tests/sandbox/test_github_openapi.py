"""The GitHub emulator against GitHub's own OpenAPI descriptions (npm ``@octokit/openapi`` and
``@octokit/openapi-webhooks``, fetched by ``make specs``): every route it serves is a described operation, every
answer it gives - successes in each state of a run, and 304, 400, 401, 403, 404, 409, 422, 429 and 5xx - validates
against the described response for that path, method and status (a status the description does not list against
its generic ``basic-error``/``validation-error``), and every webhook delivery against the described payload of its
event and action. The routes are read from the emulator itself, so that a route added without coverage fails here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from sandbox.runtime import Sandbox
from sandbox.scenario import BuildFault, Scenario, Webhook
from tests.conftest import wait_for
from tests.sandbox.openapi import (
    PARAMETER,
    REST_FILE,
    WEBHOOKS_FILE,
    RestDescription,
    WebhookDescription,
    load,
    schema_errors,
)
from tests.sandbox.test_github import FACTS_INPUTS, FRONTEND, SPEED, STACK, push, scenario

BACKEND = "xchem/fragalysis-backend"
CONTROL_PREFIX = "/_sandbox/"
"""The sandbox's own control routes: ours, not GitHub's."""
FOREVER = 10**9
"""Modelled seconds that outlast any test."""


@pytest.fixture(scope="module")
def rest() -> RestDescription:
    return RestDescription(load(REST_FILE))


@pytest.fixture(scope="module")
def webhook_description() -> WebhookDescription:
    return WebhookDescription(load(WEBHOOKS_FILE))


def tour_scenario(**github: Any) -> Scenario:
    """Fragalysis without chaining, where the backend's production build stays queued and its staging build stays
    in progress (until cancelled), so that runs in every state can be read."""
    loaded = scenario(**github)
    backend = loaded.repository(BACKEND)
    assert backend is not None
    workflows = {workflow.file: workflow for workflow in backend.workflows}
    workflows["build-production.yaml"].queued_seconds = FOREVER
    workflows["build-staging.yaml"].queued_seconds = 0
    workflows["build-staging.yaml"].duration_seconds = FOREVER
    return loaded


# ---------------------------------------------------------------- the emulator's routes


@dataclass(frozen=True)
class ServedRoute:
    method: str
    path: str
    """The emulator's path, e.g. ``/repos/{owner}/{repo}/actions/runs/{run_id:int}``."""

    def fill(self, values: dict[str, str]) -> str:
        def value(match: Any) -> str:
            name = match.group(0)[1:-1].split(":")[0]
            if name not in values:
                raise AssertionError(f"{self.method} {self.path}: the tour has no value for {{{name}}}")
            return values[name]

        return PARAMETER.sub(value, self.path)


def served_routes(sb: Sandbox) -> list[ServedRoute]:
    """Every method and path the GitHub emulator serves, except the sandbox's control routes."""
    emulator = sb.github
    routes = sb.call(lambda: [*emulator.routes(), *emulator.control_routes()])
    served = []
    for route in routes:
        assert isinstance(route, Route), route
        if route.path.startswith(CONTROL_PREFIX):
            continue
        served += [ServedRoute(method, route.path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return served


def test_every_served_route_is_a_described_operation(make_sandbox: Callable[..., Sandbox], rest: RestDescription):
    routes = served_routes(make_sandbox(scenario(), speed=SPEED))
    assert len(routes) >= 14
    unknown = [
        f"{route.method} {route.path}"
        for route in routes
        if (template := rest.template_of_route(route.path)) is None or route.method not in rest.methods(template)
    ]
    assert not unknown, f"routes that GitHub's description ({rest.version}) does not know: {unknown}"


# ---------------------------------------------------------------- recording and checking answers


@dataclass
class Answer:
    method: str
    path: str
    status: int
    content_type: str | None
    body: bytes


class Recorder:
    """Keeps every answer that a client got, to check them all against the description at the end."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        method, path = response.request.method, response.request.url.path
        content_type = response.headers.get("content-type")
        self.answers.append(Answer(method, path, response.status_code, content_type, response.content))

    def client(self, sb: Sandbox, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=sb.urls["github"], headers=headers, timeout=10, event_hooks={"response": [self]})


def expect(response: httpx.Response, status: int) -> httpx.Response:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text[:300]}"
    return response


Key = tuple[str, str, int]
"""(method, path template, status)"""


def check_answers(rest: RestDescription, answers: list[Answer]) -> tuple[dict[Key, list[list[str]]], set[Key]]:
    """The errors of each answer per (method, template, status), and which (method, template, status) were seen."""
    errors: dict[Key, list[list[str]]] = defaultdict(list)
    seen = set()
    for answer in answers:
        template = rest.template_of(answer.path)
        if template is None:
            key = (answer.method, answer.path, answer.status)
            found = rest.check_generic_error(answer.status, answer.content_type, answer.body)
            if answer.status != 404:
                found.append(f"{answer.path} is no described path, yet the answer is {answer.status}")
        else:
            key = (answer.method, template, answer.status)
            found = rest.check(answer.method, template, answer.status, answer.content_type, answer.body)
        seen.add(key)
        errors[key].append([f"{answer.path}: {error}" for error in found])
    return {key: found for key, found in errors.items() if any(found)}, seen


def report(errors: dict[Key, list[list[str]]]) -> str:
    """Per route and status: the errors in all, the answers, and the errors of the worst answer; then examples."""
    total = sum(len(one) for found in errors.values() for one in found)
    lines = [f"{total} validation errors (all / answers / worst answer):"]
    for (method, template, status), found in sorted(errors.items()):
        counts = [len(one) for one in found]
        lines.append(f"  {sum(counts):5d} {len(counts):4d} {max(counts):4d}  {method} {template} -> {status}")
    for (method, template, status), found in sorted(errors.items()):
        lines.append(f"{method} {template} -> {status}:")
        lines += [f"    {error}" for error in list(dict.fromkeys(e for one in found for e in one))[:8]]
    return "\n".join(lines)


# ---------------------------------------------------------------- the tour


def wait_status(gh: httpx.Client, repository: str, run_id: int, status: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        run = gh.get(f"/repos/{repository}/actions/runs/{run_id}").json()
        return run if run["status"] == status else None

    return wait_for(reached, f"run {run_id} {status}")


def tour_successes(sb: Sandbox, gh: httpx.Client) -> dict[str, str]:
    """Every route's successful answers, with runs queued, in progress, succeeded, failed and cancelled. Returns
    values for the routes' path parameters."""
    sb.set_faults(failing_builds=[BuildFault(repository=FRONTEND, workflow="build-staging.yaml").model_dump()])
    expect(gh.get("/rate_limit"), 200)
    expect(gh.get(f"/repos/{STACK}"), 200)
    workflows = expect(gh.get(f"/repos/{STACK}/actions/workflows"), 200).json()["workflows"]
    expect(gh.get(f"/repos/{STACK}/actions/workflows/{workflows[0]['id']}"), 200)
    expect(gh.get(f"/repos/{FRONTEND}/actions/workflows/build-production.yaml"), 200)
    expect(gh.get(f"/repos/{FRONTEND}/actions/workflows", params={"per_page": 1}), 200)

    dispatches = f"/repos/{STACK}/actions/workflows/build-main.yaml/dispatches"
    expect(gh.post(dispatches, json={"ref": "master", "inputs": FACTS_INPUTS}), 204)
    detailed = expect(gh.post(dispatches, json={"ref": "refs/tags/1.0.2", "return_run_details": True}), 200).json()
    succeeded = detailed["workflow_run_id"]
    [failed] = push(sb, FRONTEND, "staging", message="Break the build\n\nwith a body")["runs"]
    [queued] = push(sb, BACKEND, "production")["runs"]
    [running] = push(sb, BACKEND, "staging")["runs"]
    tagged = push(sb, STACK, "refs/tags/1.0.3", message="Release 1.0.3")

    wait_status(gh, BACKEND, running, "in_progress")
    for repository, run_id in ((BACKEND, queued), (BACKEND, running)):
        expect(gh.get(f"/repos/{repository}/actions/runs/{run_id}"), 200)
        job = expect(gh.get(f"/repos/{repository}/actions/runs/{run_id}/jobs"), 200).json()["jobs"][0]
        expect(gh.get(job["url"]), 200)
    expect(gh.get(f"/repos/{BACKEND}/actions/runs"), 200)
    expect(gh.get(f"/repos/{BACKEND}/actions/runs", params={"status": "queued"}), 200)
    assert wait_status(gh, STACK, succeeded, "completed")["conclusion"] == "success"
    assert wait_status(gh, FRONTEND, failed, "completed")["conclusion"] == "failure"
    for run_id in (queued, running):
        expect(gh.post(f"/repos/{BACKEND}/actions/runs/{run_id}/cancel"), 202)
        assert wait_status(gh, BACKEND, run_id, "completed")["conclusion"] == "cancelled"
    for repository, run_id in ((STACK, succeeded), (FRONTEND, failed), (BACKEND, queued), (BACKEND, running)):
        expect(gh.get(f"/repos/{repository}/actions/runs/{run_id}"), 200)
        job = expect(gh.get(f"/repos/{repository}/actions/runs/{run_id}/jobs"), 200).json()["jobs"][0]
        expect(gh.get(job["url"]), 200)
    for repository in (STACK, FRONTEND, BACKEND):
        expect(gh.get(f"/repos/{repository}/actions/runs"), 200)
    expect(gh.get(f"/repos/{STACK}/actions/runs", params={"per_page": 1, "page": 2}), 200)
    expect(gh.get(f"/repos/{STACK}/actions/runs", params={"event": "workflow_dispatch", "status": "success"}), 200)
    expect(gh.get(f"/repos/{STACK}/actions/workflows/build-main.yaml/runs", params={"branch": "master"}), 200)
    expect(gh.get(f"/repos/{FRONTEND}/actions/workflows/build-staging.yaml/runs"), 200)

    expect(gh.get(f"/repos/{FRONTEND}/branches"), 200)
    expect(gh.get(f"/repos/{FRONTEND}/branches", params={"per_page": 1}), 200)
    master = expect(gh.get(f"/repos/{STACK}/branches/master"), 200)
    expect(gh.get(f"/repos/{FRONTEND}/branches/staging"), 200)
    expect(gh.get(f"/repos/{STACK}/tags"), 200)
    expect(gh.get(f"/repos/{STACK}/commits/{tagged['sha']}"), 200)
    job_id = gh.get(f"/repos/{STACK}/actions/runs/{succeeded}/jobs").json()["jobs"][0]["id"]
    expect(gh.get(f"/repos/{STACK}/commits/{tagged['sha'][:7]}"), 200)
    expect(gh.get(f"/repos/{FRONTEND}/commits/staging"), 200)
    expect(gh.get(f"/repos/{STACK}/branches/master", headers={"If-None-Match": master.headers["etag"]}), 304)
    limits = expect(gh.get("/rate_limit"), 200)
    expect(gh.get("/rate_limit", headers={"If-None-Match": limits.headers["etag"]}), 304)
    return {
        "owner": STACK.split("/")[0],
        "repo": STACK.split("/")[1],
        "workflow": "build-main.yaml",
        "run_id": str(succeeded),
        "job_id": str(job_id),
        "branch": "master",
        "ref": "master",
    }


def tour_errors(gh: httpx.Client) -> None:
    """The error answers of single routes: unknown things, bad input, conflicts."""
    for path in (
        f"/repos/{STACK}/actions/workflows/nothing.yaml",
        f"/repos/{STACK}/actions/workflows/nothing.yaml/runs",
        f"/repos/{STACK}/actions/runs/1",
        f"/repos/{STACK}/actions/runs/1/jobs",
        f"/repos/{STACK}/actions/jobs/1",
        f"/repos/{STACK}/branches/nowhere",
        "/no/such/path",
    ):
        expect(gh.get(path), 404)
    expect(gh.post(f"/repos/{STACK}/actions/runs/1/cancel"), 404)
    expect(gh.delete(f"/repos/{STACK}/actions/runs/1"), 404)  # described, not served: GitHub's answer to both
    expect(gh.post(f"/repos/{STACK}/actions/workflows/nothing.yaml/dispatches", json={"ref": "master"}), 404)
    expect(gh.get(f"/repos/{STACK}/commits/nothing"), 422)
    dispatches = f"/repos/{STACK}/actions/workflows/build-main.yaml/dispatches"
    for body in (
        {"ref": "master", "inputs": {"colour": "blue"}},
        {"ref": "nowhere"},
        {"inputs": {}},
        {"ref": 7},
        {"ref": "master", "colour": "blue"},
    ):
        expect(gh.post(dispatches, json=body), 422)
    expect(gh.post(f"/repos/{FRONTEND}/actions/workflows/build-staging.yaml/dispatches", json={"ref": "staging"}), 422)
    expect(gh.post(dispatches, content=b"{not json"), 400)
    completed = gh.get(f"/repos/{STACK}/actions/runs", params={"status": "completed"}).json()["workflow_runs"][0]
    expect(gh.post(f"/repos/{STACK}/actions/runs/{completed['id']}/cancel"), 409)


def request(client: httpx.Client, route: ServedRoute, values: dict[str, str]) -> httpx.Response:
    body = {"json": {"ref": "master"}} if route.path.endswith("/dispatches") else {}
    return client.request(route.method, route.fill(values), **body)


def test_every_answer_validates(make_sandbox: Callable[..., Sandbox], rest: RestDescription):
    sb = make_sandbox(tour_scenario(), speed=SPEED)
    routes = served_routes(sb)
    recorder = Recorder()
    token = sb.scenario.github.token
    with recorder.client(sb, token) as gh, recorder.client(sb, "ghp_wrong") as wrong, recorder.client(sb) as nobody:
        values = tour_successes(sb, gh)
        tour_errors(gh)
        unknown_repo = {**values, "owner": "xchem", "repo": "nothing"}
        for route in routes:
            expect(request(wrong, route, values), 401)
            expect(request(nobody, route, values), 401)
            if "{owner}" in route.path:
                expect(request(gh, route, unknown_repo), 404)
            for status in (500, 502, 503, 504):
                sb.set_faults(github={"fail_next": 1, "error_status": status})
                expect(request(gh, route, values), status)
            sb.set_faults(github={"rate_limit_rate": 1.0, "retry_after_seconds": 3})
            expect(request(gh, route, values), 429)
            sb.set_faults(github={"rate_limit_rate": 0.0})

    limited = make_sandbox(tour_scenario(rate_limit=1), speed=SPEED)
    with recorder.client(limited, token) as gh:
        expect(gh.get(f"/repos/{STACK}"), 200)
        for route in routes:
            expect(request(gh, route, values), 200 if route.path == "/rate_limit" else 403)

    errors, seen = check_answers(rest, recorder.answers)
    assert not errors, report(errors)
    for route in routes:
        template = rest.template_of_route(route.path)
        statuses = {status for method, path, status in seen if (method, path) == (route.method, template)}
        assert any(200 <= status < 300 for status in statuses), f"no success of {route.method} {route.path} checked"
        assert {401, 429, 500, 502, 503, 504} <= statuses, f"{route.method} {route.path}: only {sorted(statuses)}"


# ---------------------------------------------------------------- webhooks


def test_webhook_deliveries_validate(
    make_sandbox: Callable[..., Sandbox], webhook_description: WebhookDescription, receiver
):
    url, received = receiver
    sb = make_sandbox(tour_scenario(webhook=Webhook(url=url, secret="webhook-secret")), speed=SPEED)
    sb.set_faults(failing_builds=[BuildFault(repository=FRONTEND, workflow="build-staging.yaml").model_dump()])
    with httpx.Client(
        base_url=sb.urls["github"], headers={"Authorization": f"Bearer {sb.scenario.github.token}"}
    ) as gh:
        [failed] = push(sb, FRONTEND, "staging")["runs"]  # a new commit on a branch; the build fails
        [tag_run] = push(sb, STACK, "refs/tags/1.0.3", message="Release 1.0.3")["runs"]  # a new tag
        [running] = push(sb, BACKEND, "staging")["runs"]
        wait_status(gh, BACKEND, running, "in_progress")
        expect(gh.post(f"/repos/{BACKEND}/actions/runs/{running}/cancel"), 202)
        dispatched = gh.post(
            f"/repos/{STACK}/actions/workflows/build-main.yaml/dispatches",
            json={"ref": "master", "return_run_details": True},
        ).json()["workflow_run_id"]
        for repository, run_id in ((FRONTEND, failed), (STACK, tag_run), (BACKEND, running), (STACK, dispatched)):
            wait_status(gh, repository, run_id, "completed")
    deliveries = wait_for(
        lambda: (lambda made: made if all(d.delivered.is_set() for d in made) else None)(
            sb.call(lambda: list(sb.github.deliveries))
        ),
        "every delivery",
    )
    assert len(received) == len(deliveries)
    kinds = {webhook_description.key(d.event, d.action) for d in deliveries}
    assert kinds == {"push", "workflow-run-requested", "workflow-run-in-progress", "workflow-run-completed"}
    errors: dict[Key, list[list[str]]] = defaultdict(list)
    for headers, body in received:
        delivery = next(d for d in deliveries if d.body == body)
        key = ("POST", webhook_description.key(delivery.event, delivery.action), 200)
        errors[key].append(webhook_description.check(headers, body))
    found = {key: value for key, value in errors.items() if any(value)}
    assert not found, report(found)


# ---------------------------------------------------------------- the checks themselves


def test_the_checks_catch_what_github_would_not_send(rest: RestDescription, webhook_description: WebhookDescription):
    runs = "/repos/{owner}/{repo}/actions/runs"
    thin_run = b'{"total_count": 1, "workflow_runs": [{"id": 1, "repository": {"id": 3}}]}'
    errors = rest.check("GET", runs, 200, "application/json; charset=utf-8", thin_run)
    assert "workflow_runs/0/repository: 'archive_url' is a required property" in errors
    assert rest.check("GET", runs, 200, "application/json", b'{"total_count": 0, "workflow_runs": []}') == []
    assert rest.check("GET", runs, 200, "text/html", b"{}") != []
    assert rest.check("GET", runs, 201, "application/json", b"{}") != []  # a success the description does not list
    assert rest.check("GET", runs, 401, "application/json", b'{"message": "Bad credentials"}') == [
        "(body): the error has no 'documentation_url'"
    ]
    assert rest.check("POST", f"{runs}/{{run_id}}/cancel", 409, "application/json", b'{"message": 1}') != []
    assert rest.template_of_route("/repos/{owner}/{repo}/actions/nonsense/{x:int}") is None
    assert rest.template_of("/repos/a/b/actions/runs/7/jobs") == "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs"
    assert rest.check("GET", f"{runs}/{{run_id}}", 304, None, b"{}") == ["304 Not Modified with a body"]
    conclusion = rest.validator(("components", "schemas", "job", "properties", "conclusion"))
    assert schema_errors(conclusion, None) == []  # nullable beside an enum: null until the job completes
    assert schema_errors(conclusion, "success") == []
    assert schema_errors(conclusion, "finished") != []
    created = rest.validator(("components", "schemas", "workflow-run", "properties", "created_at"))
    assert schema_errors(created, "2026-11-26T10:00:00Z") == []
    assert schema_errors(created, "yesterday") != []  # formats are checked
    push_headers = {"X-GitHub-Event": "push", "Content-Type": "application/json"}
    assert "header X-Hub-Signature-256 is missing" in webhook_description.check(push_headers, b"{}")
    run_headers = {**push_headers, "X-GitHub-Event": "workflow_run"}
    assert webhook_description.check(run_headers, b'{"action": "exploded"}') == [
        "the description has no webhook 'workflow-run-exploded'"
    ]
