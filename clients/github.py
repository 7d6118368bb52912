"""The GitHub client: dispatch a workflow, find and follow its runs, read branches, tags and commits.

Follows FACTS.md "GitHub REST API (Actions)". Every request goes through ``HttpService`` (timeouts, TLS, retries of
idempotent requests, rate limits up to a cap, logging without secrets). Following a run and polling branch heads and
tags use conditional requests (``If-None-Match``; a 304 costs no rate limit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import SecretStr

from clients.errors import AmbiguousName, ApiError, BuildFailed, DeadlineExceeded, NotFound
from clients.github_models import (
    BranchHead,
    Commit,
    PageMark,
    RunConclusion,
    RunJob,
    RunStatus,
    Step,
    Tag,
    TagPages,
    Workflow,
    WorkflowRun,
)
from clients.http import DEFAULT_TIMEOUT, Closable, HttpService, TokenAuth, service_detail
from clients.retry import RetryPolicy
from clients.timestamps import format_time
from clients.waiting import Deadline, Poll, poll_until

__all__ = [
    "BranchHead",
    "Commit",
    "GitHubClient",
    "PageMark",
    "RunConclusion",
    "RunJob",
    "RunStatus",
    "Step",
    "Tag",
    "TagPages",
    "Workflow",
    "WorkflowRun",
]

logger = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
PER_PAGE = 100
RunCallback = Callable[[WorkflowRun], None]


class GitHubClient(Closable):
    """A client of the GitHub REST API (github.com or GitHub Enterprise Server).

    Args:
        token: a token that can read Actions and dispatch workflows.
        api_url: ``https://api.github.com``, or ``https://HOST/api/v3`` for GitHub Enterprise Server.
        api_version: the ``X-GitHub-Api-Version`` header.
        verify: verify TLS (True), not (False), or the path of a CA bundle.
        timeout: the timeout of one HTTP request.
        retry: the retry policy (idempotent requests; rate limits up to its ``max_retry_after``).
        transport: an httpx transport (``httpx.MockTransport`` in tests).
        clock_skew_seconds: how far GitHub's clock may be behind ours when finding a run by creation time.
        lost_dispatch_seconds: how long to look for the run of a dispatch whose answer was lost (or a 5xx)
            before dispatching again.
        dispatch_attempts: dispatches in all, the first included, while no run of them has appeared.
    """

    def __init__(
        self,
        token: SecretStr | str,
        *,
        api_url: str = "https://api.github.com",
        api_version: str = API_VERSION,
        verify: bool | str = True,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        clock_skew_seconds: float = 5.0,
        lost_dispatch_seconds: float = 10.0,
        dispatch_attempts: int = 3,
    ) -> None:
        if dispatch_attempts < 1:
            raise ValueError(f"dispatch_attempts must be at least 1, not {dispatch_attempts}")
        self.api_url = api_url.rstrip("/")
        self.clock_skew_seconds = clock_skew_seconds
        self.lost_dispatch_seconds = lost_dispatch_seconds
        self.dispatch_attempts = dispatch_attempts
        self._http = HttpService(
            self.api_url,
            service="GitHub",
            auth=TokenAuth(token, "Bearer"),
            headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": api_version},
            timeout=timeout,
            verify=verify,
            retry=retry,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"GitHubClient(api_url={self.api_url!r})"

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    # ------------------------------------------------------------ workflows

    def workflow(self, repo: str, workflow: str | int) -> Workflow:
        """A workflow by id, file name (``build-main.yaml``) or display name (``build main``).

        Raises:
            NotFound: no such workflow (the message lists the repository's workflows when a name was given).
            AmbiguousName: several workflows have that display name.
        """
        key = str(workflow)
        if key.isdigit() or key.endswith((".yml", ".yaml")):
            path = f"/repos/{repo}/actions/workflows/{key}"
            try:
                return Workflow.from_api(self._http.get_json(path), repo)
            except NotFound as error:
                raise NotFound(
                    f"GitHub repository {repo} has no workflow {key!r} ({error.url})", status=404, url=error.url
                ) from None
        workflows = [Workflow.from_api(item, repo) for item in self._paged(f"/repos/{repo}/actions/workflows", {})]
        found = [w for w in workflows if w.name == key]
        if not found:
            url = self._http.url(f"/repos/{repo}/actions/workflows")
            names = ", ".join(f"{w.name!r} ({w.file})" for w in workflows) or "none"
            raise NotFound(f"GitHub repository {repo} has no workflow named {key!r}; it has {names} ({url})", url=url)
        if len(found) > 1:
            files = ", ".join(w.file for w in found)
            raise AmbiguousName(f"GitHub repository {repo} has {len(found)} workflows named {key!r}: {files}")
        return found[0]

    def dispatch(
        self,
        repo: str,
        workflow: str | int,
        ref: str,
        inputs: Mapping[str, str] | None = None,
        *,
        deadline_seconds: float = 60.0,
        poll: Poll | None = None,
    ) -> WorkflowRun:
        """Dispatch a ``workflow_dispatch`` workflow and return its new run.

        Asks for ``return_run_details`` (FACTS.md: 200 with the run's id); where the server rejects that field
        (older GitHub Enterprise: 400, or a 422 naming it) it dispatches again without it and finds the new
        ``workflow_dispatch`` run created after the dispatch on that branch, waiting for it until
        ``deadline_seconds``.

        A dispatch without a clear answer (the connection dropped, a timeout, a 5xx) may or may not have started a
        run: the client looks for one for ``lost_dispatch_seconds``, and when none has appeared it dispatches again,
        up to ``dispatch_attempts`` dispatches in all (a duplicate build costs little; a lost one costs the deploy).
        It follows the first matching run that appears, and logs a warning naming any other run the dispatches
        started (a duplicate build, left to finish).

        Args:
            repo: ``owner/name``.
            workflow: the workflow's id, file name or display name.
            ref: the branch or tag (``master``, ``refs/heads/master``, ``refs/tags/1.0.3``).
            inputs: the workflow's inputs (strings).
            deadline_seconds: how long to wait for the run to appear (fallback only).
            poll: the poll while waiting for it.

        Raises:
            ApiError: GitHub refused (422: unexpected or missing inputs, no such ref, no dispatch trigger; its
                message is quoted), or gave no clear answer to any of the dispatches and no run turned up.
            NotFound: no such repository or workflow.
            DeadlineExceeded: the dispatch was accepted but no run appeared in time.
        """
        wf = self.workflow(repo, workflow)
        path = f"/repos/{repo}/actions/workflows/{wf.id}/dispatches"
        body: dict[str, Any] = {"ref": ref, "inputs": dict(inputs or {})}
        since = datetime.now(UTC) - timedelta(seconds=self.clock_skew_seconds)
        with_details = True
        known: set[int] = set()  # runs that were there before the dispatch (found by listing only)
        attempt = 1
        while True:
            # A dispatch is not idempotent: HttpService repeats it only when GitHub says it did not act (429/403).
            expected = (200, 204, 400, 422) if with_details else (204, 422)
            try:
                response = self._http.request(
                    "POST",
                    path,
                    json={**body, "return_run_details": True} if with_details else body,
                    expected=expected,
                    idempotent=False,
                )
            except ApiError as error:
                if error.status is not None and error.status < 500:
                    raise
                lost = self._find_lost_dispatch(wf, ref, since, known, error, attempt, poll)
                if lost is not None:
                    return self._followed(lost, wf, ref, since, known, attempt)
                attempt += 1
                continue
            if response.status_code == 200:
                run = self.run(repo, int(response.json()["workflow_run_id"]))
                return self._followed(run, wf, ref, since, known, attempt)
            if response.status_code in (400, 422) and with_details:
                detail = service_detail(response) or ""
                if response.status_code == 422 and "return_run_details" not in detail:
                    raise self._dispatch_refused(wf, ref, path, response)
                logger.info(
                    "GitHub at %s rejects return_run_details; finding the dispatched run by listing", self.api_url
                )
                with_details = False
                known = {run.id for run in self._dispatched_runs(wf, ref, since)}
                continue  # the same attempt: GitHub acted on none of it
            if response.status_code == 422:
                raise self._dispatch_refused(wf, ref, path, response)
            run = self._await_dispatched_run(wf, ref, since, known, Deadline(deadline_seconds), poll)
            return self._followed(run, wf, ref, since, known, attempt)

    def _find_lost_dispatch(
        self,
        wf: Workflow,
        ref: str,
        since: datetime,
        known: set[int],
        error: ApiError,
        attempt: int,
        poll: Poll | None,
    ) -> WorkflowRun | None:
        """After a dispatch without a clear answer (none, or a 5xx), the run it (or an earlier dispatch) may have
        started; None when none appeared within ``lost_dispatch_seconds`` and another dispatch may be sent."""
        got = error.status or "no answer"
        logger.warning(
            "GitHub dispatch %d of %d of %s at %s got %s; looking for its run for %.3g s",
            attempt,
            self.dispatch_attempts,
            wf.file,
            ref,
            got,
            self.lost_dispatch_seconds,
        )
        try:
            return self._await_dispatched_run(wf, ref, since, known, Deadline(self.lost_dispatch_seconds), poll)
        except DeadlineExceeded:
            pass
        if attempt < self.dispatch_attempts:
            logger.warning(
                "GitHub: no run of %s at %s appeared within %.3g s of dispatch %d (%s): dispatching it again "
                "(dispatch %d of %d; should both start, the first run to appear is followed)",
                wf.file,
                ref,
                self.lost_dispatch_seconds,
                attempt,
                got,
                attempt + 1,
                self.dispatch_attempts,
            )
            return None
        raise ApiError(
            f"{error} - and no new workflow_dispatch run of {wf.name!r} at {ref} appeared within "
            f"{self.lost_dispatch_seconds:.3g} s of {_dispatches(attempt)}; not dispatching again (one may yet "
            f"start: check {self._http.url(f'/repos/{wf.repository}/actions/workflows/{wf.id}/runs')})",
            status=error.status,
            url=error.url,
            detail=error.detail,
        )

    def _followed(
        self, run: WorkflowRun, wf: Workflow, ref: str, since: datetime, known: set[int], attempt: int
    ) -> WorkflowRun:
        """``run``, after a warning naming the other runs that our dispatches may have started (only when more
        than one dispatch was sent)."""
        if attempt == 1:
            return run
        try:
            others = [found for found in self._dispatched_runs(wf, ref, since) if found.id not in known | {run.id}]
        except ApiError as error:  # the run to follow is known: a failed look at the others must not lose it
            others_said = f"; could not list the others ({error})"
        else:
            others_said = (
                "; also started, not followed (a duplicate build): "
                + ", ".join(f"run {other.id} ({other.html_url})" for other in others)
                if others
                else "; no other run has appeared"
            )
        logger.warning(
            "GitHub: %d dispatches of %s at %s were sent; following run %s (%s)%s",
            attempt,
            wf.file,
            ref,
            run.id,
            run.html_url,
            others_said,
        )
        return run

    def _dispatched_runs(self, wf: Workflow, ref: str, since: datetime) -> list[WorkflowRun]:
        created = ">=" + format_time(since)
        return list(self.runs(wf.repository, wf.id, event="workflow_dispatch", branch=_ref_name(ref), created=created))

    def _await_dispatched_run(
        self, wf: Workflow, ref: str, since: datetime, known: set[int], deadline: Deadline, poll: Poll | None
    ) -> WorkflowRun:

        def oldest_new() -> WorkflowRun | None:
            fresh = [run for run in self._dispatched_runs(wf, ref, since) if run.id not in known]
            # the oldest new one is ours: a later dispatch by someone else cannot have been created first
            return min(fresh, key=lambda run: (run.created_at or since, run.id)) if fresh else None

        run = poll_until(oldest_new, deadline, poll or Poll(initial=1.0, factor=1.5, cap=5.0))
        if run is not None:
            return run
        raise DeadlineExceeded(
            f"GitHub accepted the dispatch of workflow {wf.name!r} ({wf.file}) of {wf.repository} at {ref}, "
            f"but no new workflow_dispatch run appeared within {deadline.seconds:.0f} s",
            url=self._http.url(f"/repos/{wf.repository}/actions/workflows/{wf.id}/runs"),
        )

    def _dispatch_refused(self, wf: Workflow, ref: str, path: str, response: httpx.Response) -> ApiError:
        url = self._http.url(path)
        detail = service_detail(response)
        return ApiError(
            f"GitHub refused to dispatch workflow {wf.name!r} ({wf.file}) of {wf.repository} at {ref}: "
            f"{response.status_code} {detail} ({url})",
            status=response.status_code,
            url=url,
            detail=detail,
        )

    # ------------------------------------------------------------ runs

    def run(self, repo: str, run_id: int) -> WorkflowRun:
        """A workflow run by id."""
        return WorkflowRun.from_api(self._http.get_json(f"/repos/{repo}/actions/runs/{run_id}"), repo)

    def runs(
        self,
        repo: str,
        workflow: str | int | Workflow,
        *,
        head_sha: str | None = None,
        event: str | None = None,
        branch: str | None = None,
        status: str | None = None,
        created: str | None = None,
    ) -> Iterator[WorkflowRun]:
        """The runs of a workflow, newest first, filtered as GitHub filters them (``created`` uses its date
        syntax, e.g. ``>=2024-05-01T10:00:00Z``)."""
        wf_id = workflow.id if isinstance(workflow, Workflow) else self._workflow_key(repo, workflow)
        params = {"head_sha": head_sha, "event": event, "branch": branch, "status": status, "created": created}
        query = {key: value for key, value in params.items() if value}
        path = f"/repos/{repo}/actions/workflows/{wf_id}/runs"
        for item in self._paged(path, query, key="workflow_runs"):
            run = WorkflowRun.from_api(item, repo)
            if head_sha and run.head_sha != head_sha:
                continue  # a server that ignored the filter must not hand us another commit's run
            yield run

    def find_run(
        self,
        repo: str,
        workflow: str | int | Workflow,
        head_sha: str | None,
        *,
        event: str | None = None,
        branch: str | None = None,
        created_after: datetime | None = None,
    ) -> WorkflowRun | None:
        """The newest run of ``workflow`` for commit ``head_sha`` (optionally of one event and branch, and created
        at or after ``created_after``), or None. Without a sha, ``created_after`` is required: it finds the run
        that something else started, e.g. the stack build dispatched by the frontend build."""
        if head_sha is None and created_after is None:
            raise ValueError("find_run needs a head_sha or created_after")
        created = None
        if created_after is not None:
            created = ">=" + format_time(created_after)
        found = [
            run
            for run in self.runs(repo, workflow, head_sha=head_sha, event=event, branch=branch, created=created)
            if created_after is None or run.created_at is None or run.created_at >= created_after
        ]
        if not found:
            return None
        return max(found, key=lambda run: (run.created_at or datetime.min.replace(tzinfo=UTC), run.id))

    def wait_for_run(
        self,
        repo: str,
        workflow: str | int | Workflow,
        head_sha: str | None,
        *,
        deadline_seconds: float,
        event: str | None = None,
        branch: str | None = None,
        created_after: datetime | None = None,
        poll: Poll | None = None,
    ) -> WorkflowRun:
        """Poll until a run of ``workflow`` for ``head_sha`` (or created after ``created_after``) exists, and
        return it.

        Raises:
            DeadlineExceeded: none appeared before the deadline.
        """
        wf: str | int | Workflow = self.workflow(repo, workflow) if not isinstance(workflow, Workflow) else workflow
        run = poll_until(
            lambda: self.find_run(repo, wf, head_sha, event=event, branch=branch, created_after=created_after),
            Deadline(deadline_seconds),
            poll or Poll(initial=2.0, factor=1.5, cap=15.0),
        )
        if run is not None:
            return run
        name = wf.name if isinstance(wf, Workflow) else str(workflow)
        url = self._http.url(f"/repos/{repo}/actions/workflows/{self._workflow_key(repo, wf)}/runs")
        which = f"commit {head_sha[:12]}" if head_sha else f"a run created since {created_after}"
        raise DeadlineExceeded(
            f"no run of workflow {name!r} of {repo} for {which} appeared within {deadline_seconds:.0f} s ({url})",
            url=url,
        )

    def follow_run(
        self,
        run: WorkflowRun,
        deadline_seconds: float,
        *,
        on_status: RunCallback | None = None,
        poll: Poll | None = None,
    ) -> WorkflowRun:
        """Follow a run until it completes, calling ``on_status`` on each change of status or conclusion.

        Uses conditional requests: the last ``ETag`` goes out as ``If-None-Match`` and a 304 means unchanged
        (and costs no rate limit).

        Returns:
            The completed run, when its conclusion is ``success``.

        Raises:
            BuildFailed: it completed with another conclusion (names the run URL, the failing job and step).
            DeadlineExceeded: it had not completed by the deadline (names the run URL and its last status).
        """
        poll = poll or Poll(initial=1.0, factor=1.5, cap=10.0)
        path = f"/repos/{run.repository}/actions/runs/{run.id}"
        etag: str | None = None
        last: list[WorkflowRun] = []  # the run as last read (a list, so that the check can replace it)

        def completed() -> WorkflowRun | None:
            nonlocal etag
            current = last[0] if last else run
            response, etag = self._get_if_changed(path, etag)
            if response is not None:
                current = WorkflowRun.from_api(response.json(), run.repository)
            if not last or (current.status, current.conclusion) != (last[0].status, last[0].conclusion):
                poll.reset()
                if on_status is not None:
                    on_status(current)
            last[:] = [current]
            return current if current.status.finished else None

        current = poll_until(completed, Deadline(deadline_seconds), poll)
        if current is None:
            current = last[0]
            raise DeadlineExceeded(
                f"GitHub Actions run {current.describe()} was still {current.status} after "
                f"{deadline_seconds:.0f} s: {current.html_url}",
                url=current.html_url,
                last_status=str(current.status),
            )
        if current.conclusion is not None and current.conclusion.succeeded:
            return current
        raise self._build_failed(current)

    def _build_failed(self, run: WorkflowRun) -> BuildFailed:
        job_name = step_name = None
        try:
            jobs = self.run_jobs(run)
        except ApiError as error:
            logger.warning("could not read the jobs of GitHub run %s: %s", run.id, error)
            jobs = []
        failing = next((job for job in jobs if job.conclusion is not None and job.conclusion.failed), None)
        where = ""
        if failing is not None:
            job_name = failing.name
            step = failing.failing_step
            step_name = step.name if step else None
            where = f": job {job_name!r} failed" + (f" at step {step_name!r}" if step_name else "")
        return BuildFailed(
            f"GitHub Actions run {run.describe()} ended {run.conclusion or 'without a conclusion'}{where} - "
            f"{run.html_url}",
            url=run.html_url,
            conclusion=str(run.conclusion) if run.conclusion else None,
            job=job_name,
            step=step_name,
        )

    def run_jobs(self, run: WorkflowRun) -> list[RunJob]:
        """The jobs of the run's latest attempt, with their steps and timings."""
        path = f"/repos/{run.repository}/actions/runs/{run.id}/jobs"
        return [RunJob.from_api(item) for item in self._paged(path, {}, key="jobs")]

    # ------------------------------------------------------------ git

    def branch_head(self, repo: str, branch: str) -> str:
        """The sha of the branch's head commit."""
        data = self._http.get_json(f"/repos/{repo}/branches/{_ref_name(branch)}")
        return str(data["commit"]["sha"])

    def branch_head_if_changed(self, repo: str, branch: str, etag: str | None = None) -> BranchHead:
        """The branch's head, read with a conditional request: ``etag`` (from the last read) goes out as
        ``If-None-Match``, and a 304 (unchanged; it costs no rate limit) gives a ``BranchHead`` without a sha."""
        response, etag = self._get_if_changed(f"/repos/{repo}/branches/{_ref_name(branch)}", etag)
        return BranchHead(str(response.json()["commit"]["sha"]) if response is not None else None, etag)

    def tags_if_changed(self, repo: str, pages: Sequence[PageMark] = ()) -> TagPages:
        """The repository's tags, read page by page (by page number) with conditional requests: a page whose
        ``ETag`` is remembered in ``pages`` and that has not changed answers 304 (no items, no rate limit).

        A page with fewer than a full page of items is the last; after a full last page the next (empty) page is
        read too, so that a tag added after it is seen. GitHub does not promise an order of tags, so a new tag may
        change any page: the tags returned are those of the pages that changed.
        """
        path = f"/repos/{repo}/tags"
        found: list[Tag] = []
        marks: list[PageMark] = []
        changed = False
        number = 1
        while True:
            old = pages[number - 1] if number <= len(pages) else None
            response, etag = self._get_if_changed(
                path, old.etag if old else None, params={"per_page": PER_PAGE, "page": number}
            )
            if response is None:
                count = old.count if old else 0
            else:
                items = response.json()
                found += [Tag(name=str(item["name"]), sha=str(item["commit"]["sha"])) for item in items]
                count = len(items)
                changed = True
            marks.append(PageMark(etag, count))
            if count < PER_PAGE:
                break
            number += 1
        return TagPages(found, marks, changed or len(marks) != len(pages))

    def tags(self, repo: str) -> list[Tag]:
        """The repository's tags (newest first, as GitHub orders them)."""
        return [
            Tag(name=str(item["name"]), sha=str(item["commit"]["sha"]))
            for item in self._paged(f"/repos/{repo}/tags", {})
        ]

    def commit(self, repo: str, sha: str) -> Commit:
        """A commit (by sha, branch or tag): its sha, committer timestamp and message."""
        return Commit.from_api(self._http.get_json(f"/repos/{repo}/commits/{sha}"))

    # ------------------------------------------------------------ helpers

    def _get_if_changed(
        self, path: str, etag: str | None, *, params: Mapping[str, Any] | None = None
    ) -> tuple[httpx.Response | None, str | None]:
        """A conditional GET (FACTS.md: a 304 costs no rate limit): ``etag`` goes out as ``If-None-Match``.
        Returns None and the same ``etag`` when GitHub answers 304 Not Modified, else the response and its ETag."""
        headers = {"If-None-Match": etag} if etag else None
        response = self._http.request("GET", path, params=params, headers=headers, expected=(200, 304))
        if response.status_code == 304:
            return None, etag
        return response, response.headers.get("etag")

    def _workflow_key(self, repo: str, workflow: str | int | Workflow) -> str:
        if isinstance(workflow, Workflow):
            return str(workflow.id)
        key = str(workflow)
        if key.isdigit() or key.endswith((".yml", ".yaml")):
            return key
        return str(self.workflow(repo, key).id)

    def _paged(self, path: str, params: Mapping[str, Any], *, key: str | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a list, following ``Link: rel="next"``. ``key`` names the list in an object body
        (``workflow_runs``, ``jobs``); None means the body is a list (tags) or the key is ``workflows``."""
        url: str | None = path
        query: Mapping[str, Any] | None = {**params, "per_page": PER_PAGE}
        while url:
            response = self._http.request("GET", url, params=query)
            data = response.json()
            if isinstance(data, list):
                yield from data
            else:
                yield from data.get(key or "workflows") or []
            url = response.links.get("next", {}).get("url")
            query = None  # the next link carries the query


def _dispatches(count: int) -> str:
    return "the dispatch" if count == 1 else f"any of {count} dispatches"


def _ref_name(ref: str) -> str:
    """``refs/heads/master`` -> ``master``; ``refs/tags/1.0.3`` -> ``1.0.3`` (a run's ``head_branch``)."""
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref
