"""The GitHub emulator: the REST API for Actions that the Fragalysis delivery chain uses (FACTS.md "GitHub REST API
(Actions)"), pushes that start workflows, runs that chain themselves like the real workflows, and webhooks.

In-process interface (call on the sandbox's loop, e.g. through ``Sandbox.run``/``Sandbox.call``):

- ``await push(repository, ref, sha=None, message="") -> sha`` (also ``POST /_sandbox/push``)
- ``dispatch(repository, workflow, ref, inputs) -> Run`` (what ``POST .../dispatches`` does)
- ``state.runs`` (``Run``s by id, with the private ``image_digest``, ``image_tags``, ``awx_jobs``, ``error``)
- ``deliveries`` (the webhook ``Delivery``s made so far)
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.emulator import Emulator, ImageStore, Runtime
from sandbox.github.api import build_routes, not_found_handler
from sandbox.github.errors import DOCS, ApiError, not_found
from sandbox.github.patterns import matches_any
from sandbox.github.ratelimit import RateLimiter
from sandbox.github.runs import Runner, new_job
from sandbox.github.state import Commit, GitHubState, RepoState, Run, WorkflowState
from sandbox.github.webhooks import Delivery, WebhookSender, push_payload, workflow_run_payload

__all__ = ["GitHubEmulator"]

DISPATCH_DOCS = "https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event"
ANONYMOUS_RATE_LIMIT = 60
"""GitHub's limit for unauthenticated requests, per hour."""
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
FAULT_MESSAGES = {
    500: "Server Error",
    502: "Server Error",
    503: "Service Unavailable",
    504: "We couldn't respond to your request in time. Sorry about that. Please try resubmitting your request and "
    "contact us if the problem persists.",
}


class GitHubEmulator(Emulator):
    """GitHub's REST API for Actions, with workflows that run on a modelled clock."""

    name = "github"

    def __init__(self, runtime: Runtime, *, images: ImageStore) -> None:
        super().__init__(runtime)
        settings = runtime.scenario.github
        self.state = GitHubState(settings, runtime.clock.now())
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_limit_window_seconds)
        self.anonymous_limiter = RateLimiter(ANONYMOUS_RATE_LIMIT, 3600.0)
        self.runner = Runner(self, images)
        self.webhooks: WebhookSender | None = None
        if settings.webhook.url and settings.webhook.secret:
            self.webhooks = WebhookSender(settings.webhook.url, settings.webhook.secret, settings.webhook.events)

    # ------------------------------------------------------------ Emulator

    def routes(self) -> list[BaseRoute]:
        return build_routes(self)

    def control_routes(self) -> list[BaseRoute]:
        return [Route("/_sandbox/push", self._push_endpoint, methods=["POST"])]

    def exception_handlers(self) -> dict[Any, Any]:
        async def unknown(request: Request, exc: Exception) -> Response:
            response = await not_found_handler(request, exc)
            response.headers.update(self.limiter.headers())
            return response

        return {HTTPException: unknown}

    def fault_response(self, status: int, message: str, headers: dict[str, str]) -> Response:
        """Injected faults answered as GitHub does: a JSON message; 429 is its secondary rate limit."""
        if status == 429:
            text = (
                f"You have exceeded a secondary rate limit. Please wait a few minutes before you try again. ({message})"
            )
            docs = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
        else:
            text, docs = FAULT_MESSAGES.get(status, "Server Error"), DOCS
        body = {"message": text, "documentation_url": docs, "status": str(status)}
        return JSONResponse(body, status_code=status, headers=headers)

    async def start(self) -> None:
        if self.webhooks is not None:
            self.webhooks.start()

    async def stop(self) -> None:
        for run in self.state.runs.values():
            if run.task is not None:
                run.task.cancel()
        if self.webhooks is not None:
            await self.webhooks.stop()

    # ------------------------------------------------------------ in-process interface

    @property
    def deliveries(self) -> list[Delivery]:
        """Webhook deliveries made so far (empty when no webhook is configured)."""
        return self.webhooks.deliveries if self.webhooks is not None else []

    def repository(self, full_name: str) -> RepoState:
        repo = self.state.repository(full_name)
        if repo is None:
            raise not_found("https://docs.github.com/rest/repos/repos#get-a-repository")
        return repo

    async def push(self, repository: str, ref: str, *, sha: str | None = None, message: str = "") -> str:
        """Push a commit to a branch (``staging``, ``refs/heads/staging``) or a tag (``refs/tags/1.0.3``, or a bare
        name that is already a tag); starts the workflows whose ``push`` trigger matches. Returns the sha."""
        return self.push_commit(repository, ref, sha=sha, message=message)[0]

    def push_commit(
        self, repository: str, ref: str, *, sha: str | None = None, message: str = ""
    ) -> tuple[str, list[Run]]:
        """``push`` without the coroutine: returns the sha and the runs it started. Raises ``ApiError``."""
        repo = self.repository(repository)
        kind, name = self._parse_push_ref(repo, ref)
        now = self.runtime.clock.now()
        if sha is None:
            sha = self.state.new_sha(repo.full_name, ref, now)
        elif not SHA_RE.match(sha.lower()):
            raise ApiError(400, f"sha must be 40 hexadecimal characters, not {sha!r}")
        sha = sha.lower()
        refs = repo.branches if kind == "branch" else repo.tags
        before = refs.get(name)
        if sha not in repo.commits:
            parents = [before] if before else [repo.branches[repo.default_branch]]
            repo.commits[sha] = Commit(sha=sha, message=message or f"Update {name}", date=now, parents=parents)
        refs[name] = sha
        commit = repo.commits[sha]
        full_ref = f"refs/heads/{name}" if kind == "branch" else f"refs/tags/{name}"
        if self.webhooks is not None:
            forced = bool(before) and before not in commit.parents and before != sha
            self.webhooks.send("push", push_payload(repo, full_ref, before, commit, forced=forced, api=self.url), repo)
        title = commit.message.splitlines()[0] if commit.message else ""
        runs = [
            self.start_run(repo, workflow, "push", full_ref, sha, {}, title)
            for workflow in repo.workflows
            if _push_matches(workflow, kind, name)
        ]
        return sha, runs

    def dispatch(
        self,
        repository: str,
        workflow_key: str,
        ref: str,
        inputs: dict[str, Any] | None = None,
        *,
        by_name: bool = False,
    ) -> Run:
        """Start a ``workflow_dispatch`` run, with GitHub's 404/422 checks. Raises ``ApiError``.

        ``workflow_key`` is an id or a file name, as in the API; ``by_name`` also accepts the workflow's name
        (the scenario's downstream links may use names)."""
        repo = self.repository(repository)
        workflow = repo.workflow(workflow_key) or (_workflow_by_name(repo, workflow_key) if by_name else None)
        if workflow is None:
            raise not_found(DISPATCH_DOCS)
        declared = workflow.spec.dispatch_inputs
        if declared is None:
            raise ApiError(422, "Workflow does not have 'workflow_dispatch' trigger", DISPATCH_DOCS)
        resolved = _resolve_ref(repo, ref)
        if resolved is None:
            raise ApiError(422, f"No ref found for: {ref}", DISPATCH_DOCS)
        full_ref, sha = resolved
        given = {key: _input_text(value) for key, value in (inputs or {}).items()}
        unexpected = [key for key in given if key not in declared]
        if unexpected:
            raise ApiError(422, f"Unexpected inputs provided: {json.dumps(unexpected)}", DISPATCH_DOCS)
        for key, spec in declared.items():
            if spec.required and key not in given and spec.default is None:
                raise ApiError(422, f"Required input '{key}' not provided", DISPATCH_DOCS)
        values = {key: spec.default or "" for key, spec in declared.items()}
        values.update(given)
        return self.start_run(repo, workflow, "workflow_dispatch", full_ref, sha, values, workflow.spec.name)

    def start_run(
        self,
        repo: RepoState,
        workflow: WorkflowState,
        event: str,
        ref: str,
        sha: str,
        inputs: dict[str, str],
        title: str,
    ) -> Run:
        """Create a queued run for ``ref`` (``refs/heads/x`` or ``refs/tags/x``) and start driving it in the
        background. Its ``head_branch`` is the branch or tag name, as GitHub shows a tag push's run."""
        now = self.runtime.clock.now()
        run_id = self.state.next_run_id()
        run = Run(
            id=run_id,
            repository=repo.full_name,
            workflow=workflow,
            event=event,
            head_branch=ref.removeprefix("refs/heads/").removeprefix("refs/tags/"),
            head_sha=sha,
            ref=ref,
            inputs=inputs,
            display_title=title or workflow.spec.name,
            run_number=next(workflow.run_numbers),
            created_at=now,
            updated_at=now,
            run_started_at=now,
            jobs=[new_job(run_id, self.state.next_job_id(), workflow, now)],
        )
        self.state.runs[run_id] = run
        self.notify_run("requested", run)
        run.task = self.runtime.spawn(self.runner.execute(run), name=f"github-run-{run_id}")
        return run

    def notify_run(self, action: str, run: Run) -> None:
        """Deliver a ``workflow_run`` webhook (when one is configured)."""
        if self.webhooks is not None:
            repo = self.repository(run.repository)
            self.webhooks.send("workflow_run", workflow_run_payload(action, run, repo, self.url), repo)

    # ------------------------------------------------------------ control endpoint

    async def _push_endpoint(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return JSONResponse({"message": "Problems parsing JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"message": "the body must be a JSON object"}, status_code=400)
        repository, ref = body.get("repository"), body.get("ref")
        sha, message = body.get("sha"), body.get("message") or ""
        if not isinstance(repository, str) or not isinstance(ref, str) or not ref:
            return JSONResponse({"message": "repository and ref (strings) are required"}, status_code=400)
        if (sha is not None and not isinstance(sha, str)) or not isinstance(message, str):
            return JSONResponse({"message": "sha and message must be strings"}, status_code=400)
        try:
            sha, runs = self.push_commit(repository, ref, sha=sha, message=message)
        except ApiError as error:
            detail = error.message if error.status != 404 else f"no repository {repository!r}"
            return JSONResponse({"message": detail}, status_code=error.status)
        return JSONResponse({"sha": sha, "ref": ref, "runs": [run.id for run in runs]})

    @staticmethod
    def _parse_push_ref(repo: RepoState, ref: str) -> tuple[str, str]:
        if ref.startswith("refs/heads/"):
            kind, name = "branch", ref.removeprefix("refs/heads/")
        elif ref.startswith("refs/tags/"):
            kind, name = "tag", ref.removeprefix("refs/tags/")
        elif ref in repo.tags and ref not in repo.branches:
            kind, name = "tag", ref
        else:
            kind, name = "branch", ref
        if not name or name.startswith(("/", "-")) or ".." in name or re.search(r"[\s~^:?*\[\\]", name):
            raise ApiError(400, f"invalid ref {ref!r}")
        return kind, name


def _push_matches(workflow: WorkflowState, kind: str, name: str) -> bool:
    """GitHub's ``on: push`` filters: with only ``branches`` tags do not trigger and vice versa; with neither,
    everything does. Both are GitHub filter patterns (scenario.PushTrigger, ``patterns.py``)."""
    trigger = workflow.spec.push
    if trigger is None:
        return False
    if not trigger.branches and not trigger.tags:
        return True
    return matches_any(trigger.branches if kind == "branch" else trigger.tags, name)


def _workflow_by_name(repo: RepoState, key: str) -> WorkflowState | None:
    """Downstream dispatches in the scenario may name a workflow; the HTTP API accepts only ids and file names."""
    return next((w for w in repo.workflows if w.spec.name == key), None)


def _resolve_ref(repo: RepoState, ref: str) -> tuple[str, str] | None:
    """A dispatch ref (branch, ``refs/heads/x``, tag, ``refs/tags/x``) -> (full ref, sha); a bare name is a
    branch first, as git resolves it."""
    if ref.startswith("refs/heads/"):
        name = ref.removeprefix("refs/heads/")
        return (ref, repo.branches[name]) if name in repo.branches else None
    if ref.startswith("refs/tags/"):
        name = ref.removeprefix("refs/tags/")
        return (ref, repo.tags[name]) if name in repo.tags else None
    if ref in repo.branches:
        return f"refs/heads/{ref}", repo.branches[ref]
    if ref in repo.tags:
        return f"refs/tags/{ref}", repo.tags[ref]
    return None


def _input_text(value: Any) -> str:
    # Inputs arrive in the run as strings; booleans as GitHub renders them.
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)
