"""Launching jobs and running them through AWX's statuses.

A job is ``pending`` when the launch answers, moves to ``waiting`` when the task manager assigns it (a template
without ``allow_simultaneous`` keeps a job ``pending`` while another of its jobs is waiting or running), to
``running`` when the execution environment has started (together ``start_seconds`` of the template), runs its
playbook, and ends ``successful``, ``failed`` (a task failed, or the template's timeout passed: "Job terminated
due to timeout"), ``error`` or ``canceled``. ``event_processing_finished`` turns true shortly after the end.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

import yaml

from sandbox.awx.models import Job, JobStatus, Template
from sandbox.awx.output import PlaybookOutput
from sandbox.awx.playbooks import Kube, Playbook, PlaybookFailed
from sandbox.emulator import Runtime

PENDING_SHARE = 0.3
"""The part of ``start_seconds`` a job spends ``pending`` (the task manager); the rest it is ``waiting``."""
EVENT_PROCESSING_SECONDS = 2.0
"""Modelled seconds after the end until AWX has saved every event (``event_processing_finished``)."""
CANCEL_SECONDS = 2.0
"""Modelled seconds from a cancel request until the job is ``canceled`` (AWX cancels asynchronously)."""

# Launch-time fields that a template must prompt for (``ask_*_on_launch``); the emulated templates prompt for none
# of them, so AWX puts them in ``ignored_fields``.
PROMPT_FIELDS = (
    "inventory",
    "limit",
    "job_tags",
    "skip_tags",
    "job_type",
    "verbosity",
    "diff_mode",
    "credentials",
    "scm_branch",
    "execution_environment",
    "labels",
    "forks",
    "job_slice_count",
    "timeout",
    "instance_groups",
)

ERROR_EXPLANATION = "Job terminated due to error"
ERROR_TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/var/lib/awx/venv/awx/lib/python3.11/site-packages/awx/main/tasks/jobs.py", line 604, in run\n'
    "    res = receptor_job.run()\n"
    "RuntimeError: sandbox fault: the execution environment failed to start\n"
)


class LaunchError(Exception):
    """A 400 from the launch endpoint; ``errors`` is AWX's field-error body."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(json.dumps(errors))
        self.errors = errors


def parse_extra_vars(value: Any) -> dict[str, Any]:
    """AWX's ``parse_yaml_or_json``: a dict, or text holding a JSON or YAML mapping."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise LaunchError(
            {"extra_vars": [f"Cannot parse as JSON or YAML: expected a dictionary, not {type(value).__name__}."]}
        )
    try:
        parsed = json.loads(value)
        if isinstance(parsed, dict):
            return parsed
        json_error = f"Input type `{type(parsed).__name__}` is not a dictionary"
    except ValueError as error:
        json_error = str(error)
    try:
        parsed = yaml.safe_load(value)
        if isinstance(parsed, dict):
            return parsed
        yaml_error = f"Input type `{type(parsed).__name__}` is not a dictionary"
    except yaml.YAMLError as error:
        yaml_error = str(error)
    raise LaunchError({"extra_vars": [f"Cannot parse as JSON (error: {json_error}) or YAML (error: {yaml_error})."]})


def accept_launch(tpl: Template, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job's extra vars and the ``ignored_fields``, as AWX's ``JobLaunchSerializer`` decides them.

    AWX silently ignores extra_vars when the template does not prompt for variables (FACTS.md); with a survey,
    only the survey's variables are accepted.
    """
    given = parse_extra_vars(payload.get("extra_vars"))
    ignored: dict[str, Any] = {field: payload[field] for field in PROMPT_FIELDS if field in payload}
    spec = tpl.spec
    if spec.ask_variables_on_launch:
        accepted = dict(given)
    else:
        survey = set(spec.survey_required)
        accepted = {key: value for key, value in given.items() if key in survey}
        rejected = {key: value for key, value in given.items() if key not in survey}
        if rejected:
            ignored["extra_vars"] = rejected
    missing = [f"'{name}' value missing" for name in spec.survey_required if name not in accepted]
    if missing:
        raise LaunchError({"variables_needed_to_start": missing})
    return {**spec.extra_vars, **accepted}, ignored


class JobRunner:
    """Keeps the jobs and runs each one's life as a background task on the sandbox's loop."""

    def __init__(
        self,
        runtime: Runtime,
        kube: Callable[[], Kube],
        on_status: Callable[[Job], None] | None = None,
        on_events_processed: Callable[[Job], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self._kube = kube
        self._on_status = on_status
        """Told of every status a job takes, its first (``pending``) included: AWX's websocket pushes each."""
        self._on_events_processed = on_events_processed
        """Told when a job's events are all stored (AWX's callback receiver then sends ``jobs-summary``)."""
        self.jobs: dict[int, Job] = {}
        self._tasks: dict[int, asyncio.Task[Any]] = {}
        self._event_ids = itertools.count(1)
        self._changed = asyncio.Event()

    def launch(self, tpl: Template, payload: dict[str, Any]) -> tuple[Job, dict[str, Any]]:
        """Create the job (``pending``) and start its life; raises ``LaunchError`` for a 400."""
        extra_vars, ignored = accept_launch(tpl, payload)
        now = self.runtime.clock.now()
        job = Job(id=len(self.jobs) + 1, template=tpl, extra_vars=extra_vars, created=now, modified=now)
        job.launched_by = self.runtime.scenario.awx.username
        job.fault = self._take_fault(tpl.name)
        self.jobs[job.id] = job
        self._tasks[job.id] = self.runtime.spawn(self._life(job), name=f"awx-job-{job.id}")
        if self._on_status is not None:
            self._on_status(job)
        return job, ignored

    def cancel(self, job: Job) -> bool:
        """Request the cancel; False when the job can no longer be canceled (the API's 405)."""
        if not job.status.can_cancel:
            return False
        job.cancel_flag = True
        task = self._tasks.get(job.id)
        if task is not None and not task.done():
            task.cancel()
        return True

    async def stop(self) -> None:
        tasks = [task for task in self._tasks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------ faults and blocking

    def _take_fault(self, template: str) -> str | None:
        """The scenario's fault for this launch, read now; ``count`` says how many launches get it."""
        for fault in self.runtime.faults.awx_jobs:
            if fault.template != template:
                continue
            if fault.count is None:
                return fault.outcome
            if fault.count > 0:
                fault.count -= 1
                return fault.outcome
        return None

    def _blocked(self, job: Job) -> bool:
        """AWX's task manager: without allow_simultaneous, one job of a template at a time, oldest first."""
        if job.template.spec.allow_simultaneous:
            return False
        for other in self.jobs.values():
            if other is job or other.template is not job.template:
                continue
            if other.status in (JobStatus.WAITING, JobStatus.RUNNING):
                return True
            if other.status == JobStatus.PENDING and other.id < job.id and other.fault != "pending":
                return True
        return False

    def _set(self, job: Job, status: JobStatus) -> None:
        job.status = status
        job.modified = self.runtime.clock.now()
        self._changed.set()
        self._changed = asyncio.Event()
        if self._on_status is not None:
            self._on_status(job)

    async def _wait_for_change(self) -> None:
        await self._changed.wait()

    # ------------------------------------------------------------ a job's life

    async def _life(self, job: Job) -> None:
        clock = self.runtime.clock
        spec = job.template.spec
        try:
            await clock.sleep(spec.start_seconds * PENDING_SHARE)
            if job.fault == "pending":
                await asyncio.Event().wait()  # never assigned: stays pending until canceled
            while self._blocked(job):
                await self._wait_for_change()
            job.assigned = True
            self._set(job, JobStatus.WAITING)
            await clock.sleep(spec.start_seconds * (1 - PENDING_SHARE))
            job.started = clock.now()
            self._set(job, JobStatus.RUNNING)
            await self._run(job)
        except asyncio.CancelledError:
            if not job.cancel_flag:
                raise
            await clock.sleep(CANCEL_SECONDS)
            job.canceled_on = clock.now()
            self._finish(job, JobStatus.CANCELED)
        await clock.sleep(EVENT_PROCESSING_SECONDS)
        job.event_processing_finished = True
        if self._on_events_processed is not None:
            self._on_events_processed(job)

    async def _run(self, job: Job) -> None:
        clock = self.runtime.clock
        if job.fault == "error":
            await clock.sleep(2.0)
            job.job_explanation = ERROR_EXPLANATION
            job.result_traceback = ERROR_TRACEBACK
            self._finish(job, JobStatus.ERROR)
            return
        if job.fault == "canceled":
            # someone else cancels it in AWX (the UI's Cancel) a little after it starts: AWX's own cancel path
            await clock.sleep(2.0)
            job.cancel_flag = True
            await clock.sleep(CANCEL_SECONDS)
            job.canceled_on = clock.now()
            self._finish(job, JobStatus.CANCELED)
            return
        out = PlaybookOutput(job, lambda: next(self._event_ids), clock.now)
        playbook = Playbook(job, out, self._kube(), clock)
        try:
            async with asyncio.timeout(clock.scaled(job.template.spec.timeout_seconds)):
                await playbook.run()
        except PlaybookFailed:
            out.recap()
            self._finish(job, JobStatus.FAILED)
            return
        except TimeoutError:
            # AWX kills ansible-runner: no recap
            job.job_explanation = "Job terminated due to timeout"
            self._finish(job, JobStatus.FAILED)
            return
        out.recap()
        self._finish(job, JobStatus.SUCCESSFUL)

    def _finish(self, job: Job, status: JobStatus) -> None:
        job.finished = self.runtime.clock.now()
        self._set(job, status)
