"""The AWX client: find a job template, launch it, follow the job, read its output, cancel it.

Follows FACTS.md "AWX REST API v2". Every request goes through ``HttpService`` (timeouts, TLS, retries of
idempotent requests, logging without secrets). The launch POST is the one request that is never repeated blindly:
after an unknown outcome the client first looks for the job that the lost launch may have created.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin

import httpx
from pydantic import SecretStr

from clients.awx_events import StatusWatch, websocket_url
from clients.awx_models import Job, JobStatus, JobTemplate, OutputChunk
from clients.errors import (
    AmbiguousName,
    ApiError,
    DeadlineExceeded,
    JobFailed,
    LaunchRejected,
    NotFound,
)
from clients.http import DEFAULT_TIMEOUT, BasicAuth, Closable, HttpService, TokenAuth
from clients.retry import RetryPolicy
from clients.waiting import Deadline, Poll, Relaxed, poll_until

__all__ = ["AwxClient", "Job", "JobStatus", "JobTemplate", "OutputChunk"]

logger = logging.getLogger(__name__)

PAGE_SIZE = 200
"""AWX's largest page (FACTS.md): fewer round trips when listing."""

WEBSOCKET_RELAX = 4.0
"""How many times longer a job follow's poll intervals are while AWX's websocket is live (it wakes the follow on
every status change; the poll then reads the output for the logs and is the safety net)."""
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

StatusCallback = Callable[[Job], None]
OutputCallback = Callable[[list[str]], None]


class AwxClient(Closable):
    """A client of one AWX server's REST API v2.

    Args:
        base_url: the server's root URL (``https://awx.example.org``).
        api_path: ``/api/v2/`` (AWX) or ``/api/controller/v2/`` (Ansible Automation Platform 2.5+).
        token: an OAuth2 token (``write`` scope to launch); preferred over Basic auth.
        username: a user for Basic auth, when no token is given.
        password: that user's password.
        verify: verify TLS (True), not (False), or the path of a CA bundle.
        timeout: the timeout of one HTTP request.
        retry: the retry policy of idempotent requests.
        transport: an httpx transport (``httpx.MockTransport`` in tests).
        launch_attempts: launches tried in all when the answer is lost (each after a look-up found no job).
        launch_lookup_seconds: how long to look for the job of a launch whose answer was lost.
        clock_skew_seconds: how far the server's clock may be behind ours when looking jobs up by time.
        websocket_path: where AWX serves its websocket (``/websocket/``), whose status messages wake ``follow``
            at once; None to follow by polling alone. A websocket that cannot be used changes nothing but speed.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_path: str = "/api/v2/",
        token: SecretStr | str | None = None,
        username: str | None = None,
        password: SecretStr | str | None = None,
        verify: bool | str = True,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        launch_attempts: int = 3,
        launch_lookup_seconds: float = 5.0,
        clock_skew_seconds: float = 5.0,
        websocket_path: str | None = "/websocket/",
    ) -> None:
        auth: httpx.Auth | None
        if token is not None and (not isinstance(token, SecretStr) or token.get_secret_value()):
            auth = TokenAuth(token, "Bearer")
        elif username and password is not None:
            auth = BasicAuth(username, password)
        else:
            auth = None
        self.base_url = base_url.rstrip("/")
        self.api_path = "/" + api_path.strip("/") + "/"
        self.launch_attempts = max(1, launch_attempts)
        self.launch_lookup_seconds = launch_lookup_seconds
        self.clock_skew_seconds = clock_skew_seconds
        self.websocket_path = websocket_path
        self._auth = auth
        self._verify = verify
        self._http = HttpService(
            self.base_url,
            service="AWX",
            auth=auth,
            headers={"Accept": "application/json"},
            timeout=timeout,
            verify=verify,
            retry=retry,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"AwxClient(base_url={self.base_url!r}, api_path={self.api_path!r})"

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    # ------------------------------------------------------------ templates

    def ping(self) -> dict[str, Any]:
        """``GET ping/`` (no auth needed): the server's version and instances."""
        data: dict[str, Any] = self._http.get_json(self._api("ping/"))
        return data

    def template(self, template_id: int) -> JobTemplate:
        """The job template with this id.

        Raises:
            NotFound: no such template (or no permission to see it).
        """
        path = self._api(f"job_templates/{template_id}/")
        return JobTemplate.from_api(self._http.get_json(path), self._http.url(path))

    def find_template(self, name: str) -> JobTemplate:
        """The job template with exactly this name.

        Raises:
            NotFound: no template has this name (the message names the server and the name).
            AmbiguousName: several have it (names are unique per organisation only): the message names their
                organisations.
        """
        path = self._api("job_templates/")
        found = [
            JobTemplate.from_api(item, self._http.url(self._api(f"job_templates/{item['id']}/")))
            for item in self._paged(path, {"name": name, "page_size": PAGE_SIZE})
            if item.get("name") == name  # the query is exact already; a proxy that drops it must not mislead us
        ]
        url = self._http.url(path)
        if not found:
            raise NotFound(f"AWX at {self.base_url} has no job template named {name!r} (searched {url})", url=url)
        if len(found) > 1:
            organisations = ", ".join(f"{t.organization or 'no organisation'} (id {t.id})" for t in found)
            raise AmbiguousName(
                f"AWX at {self.base_url} has {len(found)} job templates named {name!r}, in organisations "
                f"{organisations}: configure the template by id or rename one"
            )
        return found[0]

    # ------------------------------------------------------------ launching

    def launch(
        self,
        template: JobTemplate | int,
        extra_vars: Mapping[str, Any] | None = None,
        *,
        cancel_if_ignored: bool = True,
    ) -> Job:
        """Launch a job from ``template`` with ``extra_vars``.

        The POST is repeated only when AWX says it did not act (429). After a lost or failed answer (no answer,
        a timeout, a 5xx) the client looks for the job that launch may have created (jobs of the template created
        since just before it, with the same extra_vars) and returns it; only when none turns up does it launch
        again, at most ``launch_attempts`` times in all. So a launch is never doubled.

        Args:
            template: the template, or its id.
            extra_vars: variables for the job (the template needs "Prompt on launch" for variables).
            cancel_if_ignored: when AWX ignores the extra_vars it still starts a job with the template's own
                variables (which may deploy the wrong tag); cancel that job before raising.

        Raises:
            LaunchRejected: AWX answered 400 (its field errors are quoted), or ignored fields of the launch
                (``ignored_fields``; the message says which and why).
            ApiError: any other refusal, or no job after every attempt.
        """
        if isinstance(template, int):
            template = self.template(template)
        path = self._api(f"job_templates/{template.id}/launch/")
        url = self._http.url(path)
        body: dict[str, Any] = {"extra_vars": dict(extra_vars)} if extra_vars else {}
        last_error: ApiError | None = None
        for attempt in range(1, self.launch_attempts + 1):
            since = datetime.now(UTC) - timedelta(seconds=self.clock_skew_seconds)
            try:
                response = self._http.request("POST", path, json=body, expected=(201, 400), idempotent=False)
            except ApiError as error:
                if error.status is not None and error.status < 500:
                    raise  # 401/403/404/405/409/429 past the cap: AWX did not act
                last_error = error
                logger.warning(
                    "AWX launch of template %s (attempt %d) got %s; looking for its job before trying again",
                    template.id,
                    attempt,
                    error.status or "no answer",
                )
                job = self._find_lost_launch(template, since, extra_vars or {})
                if job is not None:
                    logger.info("AWX launch of template %s had created job %s", template.id, job.id)
                    return job
                continue
            if response.status_code == 400:
                fields = _body(response)
                raise LaunchRejected(
                    f"AWX refused to launch job template {template.name!r} ({url}): {_quote(fields)}",
                    url=url,
                    fields=fields,
                )
            return self._accept_launch(template, url, response.json(), extra_vars or {}, cancel_if_ignored)
        raise ApiError(
            f"AWX could not launch job template {template.name!r} ({url}) after {self.launch_attempts} attempts, "
            f"and no job of it turned up: {last_error}",
            status=last_error.status if last_error else None,
            url=url,
        )

    def _accept_launch(
        self,
        template: JobTemplate,
        url: str,
        data: Mapping[str, Any],
        extra_vars: Mapping[str, Any],
        cancel_if_ignored: bool,
    ) -> Job:
        job_id = int(data.get("job") or data["id"])
        ignored = data.get("ignored_fields") or {}
        if ignored:
            # AWX silently drops extra_vars the template does not prompt for, and launches anyway (FACTS.md).
            names = ", ".join(sorted(ignored))
            why = (
                "; the template lacks 'Prompt on launch' for variables (ask_variables_on_launch is false)"
                if "extra_vars" in ignored
                else ""
            )
            canceled = ""
            if cancel_if_ignored:
                try:
                    canceled = " It was canceled." if self.cancel(job_id) else " It could no longer be canceled."
                except ApiError as error:
                    canceled = f" Canceling it failed: {error}"
            raise LaunchRejected(
                f"AWX ignored the launch fields {names} of job template {template.name!r} ({url}): "
                f"ignored_fields={ignored}{why}. AWX started job {job_id} ({self._ui_url(job_id)}) "
                f"with the template's own values.{canceled}",
                url=url,
                fields=ignored,
                job_id=job_id,
            )
        if "status" in data:
            job = self._job_from({**data, "id": job_id})
        else:
            job = self.job(job_id)
        if job.extra_vars is None and extra_vars:
            job = self.job(job_id)
        return job

    def _find_lost_launch(self, template: JobTemplate, since: datetime, extra_vars: Mapping[str, Any]) -> Job | None:
        """The job a launch whose answer was lost created, looked for until ``launch_lookup_seconds`` pass.

        A failed look-up raises: when we cannot tell whether the launch happened we must not launch again.
        """

        def newest() -> Job | None:
            found = self.jobs_since(template, since, extra_vars)
            return found[0] if found else None

        return poll_until(newest, Deadline(self.launch_lookup_seconds), Poll(initial=0.25, factor=2.0, cap=2.0))

    # ------------------------------------------------------------ jobs

    def job(self, job: Job | int) -> Job:
        """The job as it is now."""
        job_id = job.id if isinstance(job, Job) else job
        return self._job_from(self._http.get_json(self._api(f"jobs/{job_id}/")))

    def jobs_since(
        self, template: JobTemplate | int, since: datetime, extra_vars: Mapping[str, Any] | None = None
    ) -> list[Job]:
        """The jobs of ``template`` created after ``since``, newest first; with ``extra_vars``, only those whose
        variables include these values. Finds a job something else launched, or ours after a restart."""
        template_id = template.id if isinstance(template, JobTemplate) else template
        params = {
            "created__gt": since.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "order_by": "-created",
            "page_size": PAGE_SIZE,
        }
        jobs = [self._job_from(item) for item in self._paged(self._api(f"job_templates/{template_id}/jobs/"), params)]
        if not extra_vars:
            return jobs
        # AWX lists may leave extra_vars out: read those jobs one by one
        jobs = [job if job.extra_vars is not None else self.job(job.id) for job in jobs]
        return [job for job in jobs if job.matches(extra_vars)]

    def wait_for_job(
        self,
        template: JobTemplate | int,
        *,
        since: datetime,
        deadline_seconds: float,
        extra_vars: Mapping[str, Any] | None = None,
        poll: Poll | None = None,
    ) -> Job:
        """Wait for a job of ``template`` created after ``since`` (with ``extra_vars``, when given) that something
        else launched (the stack build's trigger), and return the first one created.

        Raises:
            DeadlineExceeded: no such job appeared before the deadline.
        """

        def first() -> Job | None:
            jobs = self.jobs_since(template, since, extra_vars)
            return jobs[-1] if jobs else None

        job = poll_until(first, Deadline(deadline_seconds), poll or Poll(initial=1.0, factor=1.5, cap=10.0))
        if job is not None:
            return job
        template_id = template.id if isinstance(template, JobTemplate) else template
        url = self._http.url(self._api(f"job_templates/{template_id}/jobs/"))
        wanted = f" with {dict(extra_vars)}" if extra_vars else ""
        raise DeadlineExceeded(
            f"no AWX job of template {template_id}{wanted} was launched after {since.isoformat()} within "
            f"{deadline_seconds:.0f} s ({url})",
            url=url,
        )

    def follow(
        self,
        job: Job | int,
        deadline_seconds: float,
        *,
        on_status: StatusCallback | None = None,
        on_output: OutputCallback | None = None,
        poll: Poll | None = None,
        output_wait_seconds: float = 10.0,
        tail_lines: int = 30,
        stop: threading.Event | None = None,
    ) -> Job:
        """Follow a job until it finishes, calling ``on_status`` on each status change (and once at the start).

        The job is read on an adaptive poll, and at once whenever AWX's websocket says its status changed (when
        the websocket can be used: see ``websocket_path``); the poll is the source of truth either way.
        When ``stop`` is set (e.g. another stage of the deployment failed) it returns the job as it is, unfinished.

        Args:
            job: the job or its id.
            deadline_seconds: give up after this long.
            on_status: called with the job whenever its status changes.
            on_output: called with new output lines as they appear (json ranges), for streaming into logs.
            poll: the adaptive poll (default 0.5 s growing to 5 s; fast again after each change), its intervals
                ``WEBSOCKET_RELAX`` times longer while the websocket is live.
            output_wait_seconds: how long to wait for ``event_processing_finished`` before reading the output.
            tail_lines: how many output lines a ``JobFailed`` carries.
            stop: an event that ends the wait early.

        Returns:
            The job, ``successful`` (or unfinished, when ``stop`` was set).

        Raises:
            JobFailed: it ended failed, error or canceled (status, explanation, URL and the output's tail).
            DeadlineExceeded: it had not finished by the deadline (names the job URL and its last status).
        """
        poll = poll or Poll(initial=0.5, factor=1.5, cap=5.0)
        job_id = job.id if isinstance(job, Job) else job
        last: list[Job] = []  # the job as last read (a list, so that the check can replace it)
        next_line = 0

        def finished() -> Job | None:
            nonlocal next_line
            current = self.job(job_id)
            if not last or current.status != last[0].status:
                poll.reset()
                if on_status is not None:
                    on_status(current)
            last[:] = [current]
            # the output so far, while the job runs (once it has finished, it is read once, when AWX has stored it all)
            running = current.status not in (JobStatus.NEW, JobStatus.PENDING) and not current.status.finished
            if on_output is not None and running:
                next_line = self._stream(current, next_line, on_output)
            return current if current.status.finished else None

        wake = threading.Event()
        watch = self._watch(job_id, wake) if not (isinstance(job, Job) and job.status.finished) else None
        # while the websocket is live it wakes the wait on every change: the poll (which also streams the output
        # into the logs) relaxes, and takes over again at its own pace if the websocket drops
        intervals = Relaxed(poll, lambda: watch is not None and watch.live, WEBSOCKET_RELAX)
        try:
            ended = poll_until(finished, Deadline(deadline_seconds), intervals, stop, wake)
            current = last[0]
            if ended is not None and (on_output is not None or not current.status.succeeded):
                # AWX's "summary" message says every event is stored: the websocket wakes this wait too
                current = self._await_events(current, output_wait_seconds, wake)
        finally:
            if watch is not None:
                watch.close()
        if ended is None and stop is not None and stop.is_set():
            return current
        if ended is None:
            raise DeadlineExceeded(
                f"AWX job {current.id} ({current.name}) was still {current.status} after "
                f"{deadline_seconds:.0f} s: {current.ui_url}",
                url=current.ui_url,
                last_status=str(current.status),
            )
        if on_output is not None:
            self._stream(current, next_line, on_output)
        if current.status.succeeded:
            return current
        tail = self.output_tail(current, tail_lines)
        traceback = current.result_traceback.strip().splitlines()
        explanation = current.job_explanation or (traceback[-1] if traceback else "")
        raise JobFailed(
            f"AWX job {current.id} ({current.name}) ended {current.status}"
            + (f": {explanation}" if explanation else " (no explanation from AWX)")
            + f" - {current.ui_url}"
            + (f"\nlast lines of its output:\n{tail}" if tail else ""),
            status=str(current.status),
            explanation=explanation,
            url=current.ui_url,
            output_tail=tail,
        )

    def _watch(self, job_id: int, wake: threading.Event) -> StatusWatch | None:
        """A started ``StatusWatch`` of the job on AWX's websocket, or None when there is none to use."""
        if not self.websocket_path:
            return None
        authorization = None
        if self._auth is not None:
            # the same header the REST requests carry, written by the same auth object
            probe = httpx.Request("GET", self.base_url)
            next(self._auth.auth_flow(probe))
            authorization = probe.headers.get("Authorization")
        url = websocket_url(self.base_url, self.websocket_path)
        return StatusWatch(url, job_id, wake, authorization=authorization, verify=self._verify).start()

    def _await_events(self, job: Job, seconds: float, wake: threading.Event | None = None) -> Job:
        """Poll until AWX has stored every output event (``event_processing_finished``), for at most ``seconds``;
        ``wake`` (AWX's websocket said so) cuts a sleep short."""
        if job.event_processing_finished is not False:
            return job
        last = [job]  # the job as last read (a list, so that the check can replace it)

        def processed() -> Job | None:
            last[:] = [self.job(job.id)]
            return last[0] if last[0].event_processing_finished is not False else None

        return poll_until(processed, Deadline(seconds), Poll(initial=0.25, factor=1.5, cap=2.0), None, wake) or last[0]

    def _stream(self, job: Job, start_line: int, on_output: OutputCallback) -> int:
        for chunk in self.iter_output(job, start_line):
            if chunk.lines:
                on_output(chunk.lines)
            start_line = chunk.end
        return start_line

    # ------------------------------------------------------------ output

    def read_output(self, job: Job | int, start_line: int = 0, end_line: int | None = None) -> OutputChunk:
        """One range of the job's output lines (``stdout/?format=json&start_line=&end_line=``).

        Start the next read at the chunk's ``end``. Lines come without ANSI colour codes.
        """
        job_id = job.id if isinstance(job, Job) else job
        params: dict[str, Any] = {"format": "json", "start_line": start_line}
        if end_line is not None:
            params["end_line"] = end_line
        data = self._http.get_json(self._api(f"jobs/{job_id}/stdout/"), params=params)
        content = _ANSI.sub("", str(data.get("content") or ""))
        lines = content.splitlines()
        span = data.get("range") or {}
        end = int(span.get("end", start_line + len(lines)))
        return OutputChunk(
            lines=lines,
            start=int(span.get("start", start_line)),
            end=max(end, start_line),
            absolute_end=int(span.get("absolute_end", end)),
        )

    def iter_output(self, job: Job | int, start_line: int = 0, *, page_lines: int = 500) -> Iterator[OutputChunk]:
        """The output from ``start_line`` up to what exists now, in chunks of at most ``page_lines`` lines."""
        while True:
            chunk = self.read_output(job, start_line, start_line + page_lines)
            yield chunk
            if chunk.end <= start_line or chunk.end >= chunk.absolute_end:
                return
            start_line = chunk.end

    def output_text(self, job: Job | int) -> str:
        """The whole output as plain text (``stdout/?format=txt``)."""
        job_id = job.id if isinstance(job, Job) else job
        return self._http.request("GET", self._api(f"jobs/{job_id}/stdout/"), params={"format": "txt"}).text

    def output_tail(self, job: Job | int, lines: int = 30) -> str:
        """The last ``lines`` lines of the output (empty when it cannot be read: this is for error messages)."""
        try:
            text = self.output_text(job)
        except ApiError as error:
            logger.warning(
                "could not read the output of AWX job %s: %s", job.id if isinstance(job, Job) else job, error
            )
            return ""
        return "\n".join(_ANSI.sub("", text).rstrip("\n").splitlines()[-lines:])

    # ------------------------------------------------------------ cancel

    def can_cancel(self, job: Job | int) -> bool:
        """``GET jobs/<id>/cancel/`` -> ``can_cancel``."""
        job_id = job.id if isinstance(job, Job) else job
        return bool(self._http.get_json(self._api(f"jobs/{job_id}/cancel/")).get("can_cancel", False))

    def cancel(self, job: Job | int, *, wait_seconds: float | None = None) -> bool:
        """Ask AWX to cancel the job.

        AWX cancels asynchronously: the status turns ``canceled`` later. With ``wait_seconds`` this waits (at
        most that long) until the job has finished.

        Returns:
            True when AWX accepted the request (202); False when the job can no longer be canceled (it has
            finished: ``can_cancel`` false, or 405).
        """
        job_id = job.id if isinstance(job, Job) else job
        path = self._api(f"jobs/{job_id}/cancel/")
        if not self.can_cancel(job_id):
            return False
        # A repeated cancel is harmless (AWX answers 202 or 405), so the POST may be retried.
        response = self._http.request("POST", path, expected=(202, 405), idempotent=True)
        if response.status_code == 405:
            logger.info("AWX job %s can no longer be canceled", job_id)
            return False
        if wait_seconds is not None:
            poll_until(
                lambda: True if self.job(job_id).status.finished else None,
                Deadline(wait_seconds),
                Poll(initial=0.25, factor=1.5, cap=2.0),
            )
        return True

    # ------------------------------------------------------------ helpers

    def _api(self, relative: str) -> str:
        return self.api_path + relative.lstrip("/")

    def _ui_url(self, job_id: int) -> str:
        # AAP 2.5+ (the controller path) moved the job page; AWX keeps its hash route.
        if "/controller/" in self.api_path:
            return f"{self.base_url}/execution/jobs/playbook/{job_id}/output"
        return f"{self.base_url}/#/jobs/playbook/{job_id}/output"

    def _job_from(self, data: Mapping[str, Any]) -> Job:
        job_id = int(data["id"])
        return Job.from_api(data, url=self._http.url(self._api(f"jobs/{job_id}/")), ui_url=self._ui_url(job_id))

    def _paged(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a list, following AWX's ``next`` (a path relative to the server)."""
        page: str | None = path
        query: Mapping[str, Any] | None = params
        while page:
            data = self._http.get_json(page, params=query)
            yield from data.get("results") or []
            nxt = data.get("next")
            page = urljoin(self.base_url + "/", nxt) if nxt else None
            query = None  # ``next`` carries the query


def _body(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]


def _quote(fields: object) -> str:
    """AWX's 400 body in its own words, e.g. ``variables_needed_to_start: ['...']``."""
    if isinstance(fields, dict):
        if isinstance(fields.get("detail"), str):
            return str(fields["detail"])
        return "; ".join(f"{key}: {value}" for key, value in fields.items())
    return str(fields)
