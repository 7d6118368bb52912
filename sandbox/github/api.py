"""The HTTP side of the GitHub emulator: routes, token auth, the rate limit, ETags and pagination.

Every API answer carries ``x-ratelimit-*`` headers; every 200 GET an ``ETag`` (a hash of the body), and a
matching ``If-None-Match`` gets 304 without counting against the limit (FACTS.md "Rate limits").
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.emulator import Runtime
from sandbox.github.errors import DOCS, ApiError, not_found
from sandbox.github.ratelimit import RateLimiter
from sandbox.github.runs import Runner
from sandbox.github.state import ACTOR, CONCLUSIONS, GitHubState, RepoState, Run
from sandbox.github.views import (
    branch_json,
    commit_json,
    job_json,
    repository_json,
    run_json,
    short_branch_json,
    tag_json,
    workflow_json,
)

RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
WORKFLOW_DOCS = "https://docs.github.com/rest/actions/workflows"
RUN_DOCS = "https://docs.github.com/rest/actions/workflow-runs"
JOB_DOCS = "https://docs.github.com/rest/actions/workflow-jobs#list-jobs-for-a-workflow-run"
ONE_JOB_DOCS = "https://docs.github.com/rest/actions/workflow-jobs#get-a-job-for-a-workflow-run"
SEARCH_LIMIT, GRAPHQL_LIMIT = 30, 5000
"""GitHub's per-minute search and per-hour GraphQL limits, reported by ``/rate_limit`` (neither is served here)."""
DEFAULT_PER_PAGE, MAX_PER_PAGE = 30, 100


class ApiHost(Protocol):
    """What the HTTP side needs of its emulator (``GitHubEmulator`` is one)."""

    runtime: Runtime
    state: GitHubState
    runner: Runner
    limiter: RateLimiter
    anonymous_limiter: RateLimiter

    @property
    def url(self) -> str: ...

    def dispatch(self, repository: str, workflow_key: str, ref: str, inputs: dict[str, Any] | None = None) -> Run: ...


@dataclass
class Reply:
    status: int = 200
    data: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Reply]]


async def not_found_handler(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods: GitHub answers 404 Not Found for both."""
    return JSONResponse(ApiError(404, "Not Found").body(), status_code=404)


def build_routes(emulator: ApiHost) -> list[BaseRoute]:
    api = Api(emulator)
    repo = "/repos/{owner}/{repo}"
    table: list[tuple[str, str, Handler, str, bool]] = [
        ("GET", "/rate_limit", api.rate_limit, RATE_DOCS, False),
        ("GET", repo, api.get_repository, "https://docs.github.com/rest/repos/repos#get-a-repository", True),
        ("GET", f"{repo}/actions/workflows", api.list_workflows, WORKFLOW_DOCS, True),
        ("GET", f"{repo}/actions/workflows/{{workflow}}", api.get_workflow, WORKFLOW_DOCS, True),
        ("POST", f"{repo}/actions/workflows/{{workflow}}/dispatches", api.dispatch, WORKFLOW_DOCS, True),
        ("GET", f"{repo}/actions/workflows/{{workflow}}/runs", api.list_runs, RUN_DOCS, True),
        ("GET", f"{repo}/actions/runs", api.list_runs, RUN_DOCS, True),
        ("GET", f"{repo}/actions/runs/{{run_id:int}}", api.get_run, RUN_DOCS, True),
        ("GET", f"{repo}/actions/runs/{{run_id:int}}/jobs", api.list_jobs, JOB_DOCS, True),
        ("POST", f"{repo}/actions/runs/{{run_id:int}}/cancel", api.cancel_run, RUN_DOCS, True),
        ("GET", f"{repo}/actions/jobs/{{job_id:int}}", api.get_job, ONE_JOB_DOCS, True),
        ("GET", f"{repo}/branches", api.list_branches, "https://docs.github.com/rest/branches/branches", True),
        (
            "GET",
            f"{repo}/branches/{{branch:path}}",
            api.get_branch,
            "https://docs.github.com/rest/branches/branches#get-a-branch",
            True,
        ),
        ("GET", f"{repo}/tags", api.list_tags, "https://docs.github.com/rest/repos/repos#list-repository-tags", True),
        (
            "GET",
            f"{repo}/commits/{{ref:path}}",
            api.get_commit,
            "https://docs.github.com/rest/commits/commits#get-a-commit",
            True,
        ),
    ]
    return [
        Route(path, api.endpoint(handler, docs, counted), methods=[method])
        for method, path, handler, docs, counted in table
    ]


class Api:
    """The handlers; each returns a ``Reply`` or raises ``ApiError``."""

    def __init__(self, emulator: ApiHost) -> None:
        self.emulator = emulator

    @property
    def url(self) -> str:
        return self.emulator.url

    # ------------------------------------------------------------ the envelope of every answer

    def endpoint(self, handler: Handler, docs: str, counted: bool) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            denied = self._authenticate(request)
            if denied is not None:
                # GitHub counts such requests against the anonymous limit of the client's address
                anonymous = self.emulator.anonymous_limiter
                anonymous.count()
                return _json(denied.status, denied.body(DOCS), anonymous.headers())
            limiter = self.emulator.limiter
            if counted and limiter.exhausted():
                error = ApiError(
                    403,
                    "API rate limit exceeded for user ID 4242424. If you reach out to GitHub Support for help, please "
                    "include the request ID and timestamp of your request.",
                    RATE_DOCS,
                )
                return _json(403, error.body(), limiter.headers())
            try:
                reply = await handler(request)
            except ApiError as error:
                reply = Reply(error.status, error.body(docs))
            headers = dict(reply.headers)
            body = b"" if reply.status in (202, 204) and reply.data is None else _encode(reply.data)
            if request.method == "GET" and reply.status == 200:
                etag = 'W/"' + hashlib.sha256(body).hexdigest() + '"'
                headers["ETag"] = etag
                headers["Cache-Control"] = "private, max-age=60, s-maxage=60"
                headers["Vary"] = "Accept, Authorization, Cookie, X-GitHub-OTP"
                if _etag_matches(request.headers.get("if-none-match"), etag):
                    # a conditional request answered 304 does not count against the rate limit
                    return Response(status_code=304, headers={**headers, **limiter.headers()})
            if counted:
                limiter.count()
            headers.update(limiter.headers())
            headers["X-GitHub-Api-Version-Selected"] = "2022-11-28"
            media = "application/json; charset=utf-8" if body else None
            return Response(body, status_code=reply.status, headers=headers, media_type=media)

        return answer

    def _authenticate(self, request: Request) -> ApiError | None:
        header = request.headers.get("authorization")
        if not header:
            return ApiError(401, "Requires authentication")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "token") or token.strip() != self.emulator.runtime.scenario.github.token:
            return ApiError(401, "Bad credentials")
        return None

    def _repo(self, request: Request) -> RepoState:
        repo = self.emulator.state.repository(request.path_params["owner"], request.path_params["repo"])
        if repo is None:
            raise not_found()
        return repo

    def _run(self, request: Request, repo: RepoState) -> Run:
        run = self.emulator.state.runs.get(request.path_params["run_id"])
        if run is None or run.repository != repo.full_name:
            raise not_found()
        return run

    # ------------------------------------------------------------ repository, branches, tags, commits

    async def rate_limit(self, request: Request) -> Reply:
        core = self.emulator.limiter.resource_json()
        minute = math.ceil(time.time() / 60) * 60
        resources = {
            "core": core,
            "search": {"limit": SEARCH_LIMIT, "used": 0, "remaining": SEARCH_LIMIT, "reset": minute},
            "graphql": {"limit": GRAPHQL_LIMIT, "used": 0, "remaining": GRAPHQL_LIMIT, "reset": core["reset"]},
        }
        return Reply(data={"resources": resources, "rate": core})

    async def get_repository(self, request: Request) -> Reply:
        return Reply(data=repository_json(self._repo(request), self.url, full=True))

    async def list_branches(self, request: Request) -> Reply:
        repo = self._repo(request)
        items = [short_branch_json(name, sha, repo, self.url) for name, sha in sorted(repo.branches.items())]
        page, headers = _paginate(request, items)
        return Reply(data=page, headers=headers)

    async def get_branch(self, request: Request) -> Reply:
        repo = self._repo(request)
        name = request.path_params["branch"]
        if name not in repo.branches:
            raise ApiError(404, "Branch not found")
        return Reply(data=branch_json(name, repo.commits[repo.branches[name]], repo, self.url, ACTOR))

    async def list_tags(self, request: Request) -> Reply:
        repo = self._repo(request)
        items = [tag_json(name, sha, repo, self.url) for name, sha in reversed(repo.tags.items())]
        page, headers = _paginate(request, items)
        return Reply(data=page, headers=headers)

    async def get_commit(self, request: Request) -> Reply:
        repo = self._repo(request)
        ref = request.path_params["ref"]
        commit = repo.commit(ref)
        if commit is None:
            raise ApiError(422, f"No commit found for SHA: {ref}")
        return Reply(data=commit_json(commit, repo, self.url, ACTOR))

    # ------------------------------------------------------------ workflows and dispatch

    async def list_workflows(self, request: Request) -> Reply:
        repo = self._repo(request)
        items = [workflow_json(workflow, repo, self.url) for workflow in repo.workflows]
        page, headers = _paginate(request, items)
        return Reply(data={"total_count": len(items), "workflows": page}, headers=headers)

    async def get_workflow(self, request: Request) -> Reply:
        repo = self._repo(request)
        workflow = repo.workflow(request.path_params["workflow"])
        if workflow is None:
            raise not_found()
        return Reply(data=workflow_json(workflow, repo, self.url))

    async def dispatch(self, request: Request) -> Reply:
        repo = self._repo(request)
        if repo.workflow(request.path_params["workflow"]) is None:
            raise not_found()
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError as error:
            raise ApiError(400, "Problems parsing JSON") from error
        if not isinstance(body, dict):
            raise ApiError(400, "Problems parsing JSON")
        allowed = {"ref", "inputs"}
        if self.emulator.runtime.scenario.github.return_run_details:
            allowed.add("return_run_details")
        extra = [key for key in body if key not in allowed]
        if extra:
            # GitHub's request-schema validation; an older GHES does not know return_run_details (400 there)
            status = 400 if "return_run_details" in extra else 422
            raise ApiError(
                status, "Invalid request.\n\n" + "\n".join(f'"{key}" is not a permitted key.' for key in extra)
            )
        ref, inputs = body.get("ref"), body.get("inputs", {})
        if ref is None:
            raise ApiError(422, 'Invalid request.\n\n"ref" wasn\'t supplied.')
        if not isinstance(ref, str):
            raise ApiError(422, f"Invalid request.\n\nFor 'properties/ref', {json.dumps(ref)} is not a string.")
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, dict):
            raise ApiError(422, f"Invalid request.\n\nFor 'properties/inputs', {json.dumps(inputs)} is not an object.")
        run = self.emulator.dispatch(repo.full_name, request.path_params["workflow"], ref, inputs)
        if body.get("return_run_details") is True:
            data = run_json(run, repo, self.url)
            return Reply(200, {"workflow_run_id": run.id, "run_url": data["url"], "html_url": data["html_url"]})
        return Reply(204)

    # ------------------------------------------------------------ runs and jobs

    async def list_runs(self, request: Request) -> Reply:
        repo = self._repo(request)
        runs = [run for run in self.emulator.state.runs.values() if run.repository == repo.full_name]
        key = request.path_params.get("workflow")
        if key is not None:
            workflow = repo.workflow(key)
            if workflow is None:
                raise not_found()
            runs = [run for run in runs if run.workflow is workflow]
        runs = [run for run in runs if _run_matches(run, request.query_params)]
        runs.sort(key=lambda run: (run.created_at, run.id), reverse=True)
        page, headers = _paginate(request, runs)
        data = {"total_count": len(runs), "workflow_runs": [run_json(run, repo, self.url) for run in page]}
        return Reply(data=data, headers=headers)

    async def get_run(self, request: Request) -> Reply:
        repo = self._repo(request)
        return Reply(data=run_json(self._run(request, repo), repo, self.url))

    async def list_jobs(self, request: Request) -> Reply:
        repo = self._repo(request)
        run = self._run(request, repo)
        page, headers = _paginate(request, run.jobs)
        jobs = [job_json(job, run, repo, self.url) for job in page]
        return Reply(data={"total_count": len(run.jobs), "jobs": jobs}, headers=headers)

    async def get_job(self, request: Request) -> Reply:
        repo = self._repo(request)
        job_id = request.path_params["job_id"]
        for run in self.emulator.state.runs.values():
            if run.repository == repo.full_name:
                for job in run.jobs:
                    if job.id == job_id:
                        return Reply(data=job_json(job, run, repo, self.url))
        raise not_found()

    async def cancel_run(self, request: Request) -> Reply:
        repo = self._repo(request)
        run = self._run(request, repo)
        if run.status == "completed":
            raise ApiError(409, "Cannot cancel a workflow run that is completed.")
        self.emulator.runner.cancel(run)
        return Reply(202, {})


# ---------------------------------------------------------------- helpers


def _encode(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(_encode(data), status_code=status, headers=headers, media_type="application/json; charset=utf-8")


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == wanted for candidate in header.split(","))


def _paginate(request: Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
    """A page of ``items`` and GitHub's ``Link`` header (rel prev, next, last, first)."""
    per_page = _int(request.query_params.get("per_page"), DEFAULT_PER_PAGE)
    per_page = min(max(per_page, 1), MAX_PER_PAGE)
    page = max(_int(request.query_params.get("page"), 1), 1)
    last = max(1, -(-len(items) // per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    links = []

    def link(number: int, rel: str) -> str:
        return f'<{request.url.include_query_params(per_page=per_page, page=number)}>; rel="{rel}"'

    if page > 1:
        links.append(link(min(page - 1, last), "prev"))
    if page < last:
        links.append(link(page + 1, "next"))
        links.append(link(last, "last"))
    if page > 1:
        links.append(link(1, "first"))
    return chunk, ({"Link": ", ".join(links)} if links else {})


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _run_matches(run: Run, query: Any) -> bool:
    branch, event, head_sha = query.get("branch"), query.get("event"), query.get("head_sha")
    status, actor, created = query.get("status"), query.get("actor"), query.get("created")
    if branch and run.head_branch != branch:
        return False
    if event and run.event != event:
        return False
    if head_sha and run.head_sha != head_sha.lower():
        return False
    if actor and run.actor["login"].lower() != actor.lower():
        return False
    if status:
        # ``status`` takes a status or a conclusion
        if (run.conclusion if status in CONCLUSIONS else run.status) != status:
            return False
    return not created or created_filter(created)(run.created_at)


def created_filter(expression: str) -> Callable[[datetime], bool]:
    """GitHub's search syntax for ``created``: ``>=D``, ``<=D``, ``>D``, ``<D``, ``A..B`` (``*`` open), or ``D``;
    ``D`` an ISO date (a whole day) or date-time. An unreadable expression matches nothing."""
    try:
        if ".." in expression:
            low, high = expression.split("..", 1)
            lower = (lambda t: True) if low in ("", "*") else _compare(">=", low)
            upper = (lambda t: True) if high in ("", "*") else _compare("<=", high)
            return lambda t: lower(t) and upper(t)
        for op in (">=", "<=", ">", "<"):
            if expression.startswith(op):
                return _compare(op, expression[len(op) :])
        return _compare("=", expression)
    except ValueError:
        return lambda t: False


def _compare(op: str, text: str) -> Callable[[datetime], bool]:
    text = text.strip()
    is_date = len(text) == 10
    start = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    end = start + timedelta(days=1) if is_date else start
    if op == ">=":
        return lambda t: t >= start
    if op == ">":
        return (lambda t: t >= end) if is_date else (lambda t: t > start)
    if op == "<":
        return lambda t: t < start
    if op == "<=":
        return (lambda t: t < end) if is_date else (lambda t: t <= start)
    return (lambda t: start <= t < end) if is_date else (lambda t: t == start)
