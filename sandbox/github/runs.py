"""Workflow runs: created queued, then in_progress with one job whose steps advance over the workflow's modelled
duration, then completed (success, failure or cancelled).

What a step does beyond taking time follows the Fragalysis workflows: the "Push" step pushes the image to the
registry emulator (``tag``, or ``tag_when_tagged`` for a run of a git tag), "Trigger stack" dispatches the
downstream workflows (TRIGGER_DOWNSTREAM secret) and "Trigger AWX" launches the AWX job templates over AWX's HTTP
API (TRIGGER_AWX secret), those whose ``when_ref_matches`` accepts the run's ref, side by side. A trigger step
whose secret is not ``yes``, or with no template for the run's ref, is skipped, as the real ``if:`` makes it. A
workflow without such a step does that work in its last step before "Complete job". A failing-build fault fails
the run at its step: later steps are skipped, nothing is pushed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime
from typing import Any, Protocol

from sandbox.emulator import ImageStore, Runtime
from sandbox.github.awxtrigger import AwxTriggerError, trigger_awx
from sandbox.github.errors import ApiError
from sandbox.github.patterns import ref_slug
from sandbox.github.state import Job, Run, Step, WorkflowState
from sandbox.scenario import AwxLaunch

logger = logging.getLogger(__name__)

IMAGE, DOWNSTREAM, AWX = "image", "downstream", "awx"
DEDICATED_STEPS = {
    IMAGE: ("Push",),
    DOWNSTREAM: ("Trigger stack", "Trigger downstream"),
    AWX: ("Trigger AWX",),
}
SHORT_STEPS = ("Set up job", "Complete job", *DEDICATED_STEPS[DOWNSTREAM], *DEDICATED_STEPS[AWX])
"""Steps that take a small share of the run's duration (setting up, calling an API)."""
SHORT_WEIGHT, LONG_WEIGHT = 1.0, 8.0


class StepFailed(Exception):
    """A step's work failed; the message says why (kept on the run for tests)."""


def step_weights(steps: list[str]) -> list[float]:
    return [SHORT_WEIGHT if name in SHORT_STEPS else LONG_WEIGHT for name in steps]


def assign_actions(workflow: WorkflowState) -> dict[str, list[str]]:
    """Which step does which piece of work: step name -> actions in order."""
    spec = workflow.spec
    wanted = [
        (IMAGE, spec.image is not None),
        (DOWNSTREAM, bool(spec.downstream)),
        (AWX, bool(spec.awx)),
    ]
    work_steps = [name for name in spec.steps if name != "Complete job"] or list(spec.steps)
    fallback = work_steps[-1] if work_steps else None
    plan: dict[str, list[str]] = {}
    for action, needed in wanted:
        if not needed:
            continue
        step = next((name for name in DEDICATED_STEPS[action] if name in spec.steps), fallback)
        if step is not None:
            plan.setdefault(step, []).append(action)
    return plan


def substitute(template: str, ref_name: str, inputs: dict[str, str], image_tag: str | None = None) -> str:
    """Fill ``{ref_name}``, ``{ref_slug}``, ``{input.NAME}`` and ``{image_tag}`` as scenario.ImageBuild/AwxLaunch
    document."""

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "ref_name":
            return ref_name
        if key == "ref_slug":
            return ref_slug(ref_name)
        if key == "image_tag" and image_tag is not None:
            return image_tag
        if key.startswith("input."):
            return inputs.get(key[len("input.") :], "")
        return match.group(0)

    return re.sub(r"\{([A-Za-z_.][A-Za-z0-9_.-]*)\}", replace, template)


def launches_for(run: Run) -> list[AwxLaunch]:
    """The AWX launches of the run's workflow that apply to its ref (``AwxLaunch.when_ref_matches``)."""
    slug = ref_slug(run.ref_name)
    return [
        launch
        for launch in run.workflow.spec.awx
        if launch.when_ref_matches is None or re.fullmatch(launch.when_ref_matches, slug)
    ]


def new_job(run_id: int, job_id: int, workflow: WorkflowState, created: datetime) -> Job:
    """The run's one job, queued, with every step of the workflow waiting."""
    steps = [Step(name=name, number=index + 1) for index, name in enumerate(workflow.spec.steps)]
    return Job(id=job_id, run_id=run_id, name="build", created_at=created, steps=steps)


class RunHost(Protocol):
    """What a ``Runner`` needs of its emulator (``GitHubEmulator`` is one)."""

    runtime: Runtime

    def notify_run(self, action: str, run: Run) -> None: ...

    def dispatch(
        self, repository: str, workflow_key: str, ref: str, inputs: dict[str, Any] | None, *, by_name: bool
    ) -> Run: ...


class Runner:
    """Drives runs of one emulator; builds push their images to ``images``."""

    def __init__(self, emulator: RunHost, images: ImageStore) -> None:
        self.emulator = emulator
        self.runtime = emulator.runtime
        self.images = images

    # ------------------------------------------------------------ the life of a run

    async def execute(self, run: Run) -> None:
        """Queued -> in_progress -> completed. Cancelled by ``cancel``."""
        clock = self.runtime.clock
        try:
            await clock.sleep(run.workflow.spec.queued_seconds)
            failing_step = self._take_build_fault(run)
            now = clock.now()
            run.status, run.updated_at = "in_progress", now
            job = run.jobs[0]
            job.status, job.started_at = "in_progress", now
            job.take_runner()
            self.emulator.notify_run("in_progress", run)
            conclusion = await self._steps(run, job, failing_step)
            self._finish(run, conclusion)
        except asyncio.CancelledError:
            if not run.cancel_requested:
                raise
            self._finish(run, "cancelled")
        except Exception as error:  # a bug must not leave the run in_progress for ever
            logger.exception("run %s of %s broke", run.id, run.repository)
            run.error = f"the emulator failed: {error!r}"
            self._finish(run, "failure")

    async def _steps(self, run: Run, job: Job, failing_step: str | None) -> str:
        clock = self.runtime.clock
        spec = run.workflow.spec
        plan = assign_actions(run.workflow)
        weights = step_weights(spec.steps)
        total = sum(weights) or 1.0
        failed = False
        for step, weight in zip(job.steps, weights, strict=True):
            if failed or self._switched_off(run, step.name, plan.get(step.name, [])):
                step.status, step.conclusion = "completed", "skipped"
                continue
            step.status, step.started_at = "in_progress", clock.now()
            run.updated_at = step.started_at
            await clock.sleep(spec.duration_seconds * weight / total)
            try:
                if step.name == failing_step:
                    raise StepFailed(f"injected build failure at step {step.name!r}")
                for action in plan.get(step.name, []):
                    await self._act(run, action)
                step.conclusion = "success"
            except StepFailed as error:
                run.error = str(error)
                logger.info("run %s of %s failed: %s", run.id, run.repository, error)
                step.conclusion, failed = "failure", True
            step.status, step.completed_at = "completed", clock.now()
            run.updated_at = step.completed_at
        return "failure" if failed else "success"

    def _finish(self, run: Run, conclusion: str) -> None:
        now = self.runtime.clock.now()
        for job in run.jobs:
            for step in job.steps:
                if step.status != "completed":
                    step.status, step.conclusion = "completed", "cancelled" if step.started_at else "skipped"
                    step.completed_at = now if step.started_at else None
            job.status, job.conclusion = "completed", conclusion
            job.started_at = job.started_at or now
            job.completed_at = now
        run.status, run.conclusion, run.updated_at = "completed", conclusion, now
        self.emulator.notify_run("completed", run)

    def cancel(self, run: Run) -> None:
        run.cancel_requested = True
        if run.task is not None and not run.task.done():
            run.task.cancel()

    # ------------------------------------------------------------ faults and switches

    def _take_build_fault(self, run: Run) -> str | None:
        """The step at which a ``failing_builds`` fault fails this run (read when the run starts), or None."""
        spec = run.workflow.spec
        for fault in self.runtime.faults.failing_builds:
            if fault.repository.lower() != run.repository.lower():
                continue
            if fault.workflow not in (spec.file, spec.name, run.workflow.path, str(run.workflow.id)):
                continue
            if fault.count is not None:
                if fault.count <= 0:
                    continue
                fault.count -= 1
            if fault.step in spec.steps:
                return fault.step
            # a step the workflow does not have: fail its first real work step instead
            return next((name for name in spec.steps if name != "Set up job"), spec.steps[0] if spec.steps else None)
        return None

    def _switched_off(self, run: Run, step: str, actions: list[str]) -> bool:
        """A dedicated trigger step is skipped when its repository secret is not ``yes``, and the AWX step also
        when no template applies to the run's ref (as the deploy-production job's ``if:``)."""
        settings = self.runtime.scenario.github
        if step in DEDICATED_STEPS[DOWNSTREAM]:
            return not (settings.trigger_downstream and DOWNSTREAM in actions)
        if step in DEDICATED_STEPS[AWX]:
            return not (settings.trigger_awx and AWX in actions and launches_for(run))
        return False

    # ------------------------------------------------------------ the work of steps

    async def _act(self, run: Run, action: str) -> None:
        settings = self.runtime.scenario.github
        if action == IMAGE:
            self._push_image(run)
        elif action == DOWNSTREAM and settings.trigger_downstream:
            self._dispatch_downstream(run)
        elif action == AWX and settings.trigger_awx:
            await self._launch_awx(run)

    def _push_image(self, run: Run) -> None:
        image = run.workflow.spec.image
        assert image is not None
        main = image.tag_when_tagged if run.is_tag and image.tag_when_tagged is not None else image.tag
        tags = [substitute(tag, run.ref_name, run.inputs) for tag in (main, *image.also_tags)]
        try:
            run.image_digest = self.images.push_image(image.name, tags)
        except Exception as error:  # the registry emulator's failure fails the step, like a failed docker push
            raise StepFailed(f"pushing {image.name}:{tags[0]} failed: {error!r}") from error
        run.image_tags = tags

    def _dispatch_downstream(self, run: Run) -> None:
        for downstream in run.workflow.spec.downstream:
            inputs = {key: substitute(value, run.ref_name, run.inputs) for key, value in downstream.inputs.items()}
            try:
                child = self.emulator.dispatch(
                    downstream.repository, downstream.workflow, downstream.ref, inputs, by_name=True
                )
            except ApiError as error:
                raise StepFailed(
                    f"dispatching {downstream.workflow} of {downstream.repository}: {error.status} {error.message}"
                ) from error
            run.downstream_runs.append(child.id)

    async def _launch_awx(self, run: Run) -> None:
        """Launch every template that applies to the run's ref at once; the step fails if any launch fails."""
        outcomes = await asyncio.gather(
            *(self._launch_one(run, launch) for launch in launches_for(run)), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _launch_one(self, run: Run, launch: AwxLaunch) -> None:
        image_tag = run.image_tags[0] if run.image_tags else run.ref_name
        extra_vars = {k: substitute(v, run.ref_name, run.inputs, image_tag) for k, v in launch.extra_vars.items()}
        awx = self.runtime.scenario.awx

        def remember(job_id: int) -> None:
            run.awx_jobs[launch.template] = job_id

        try:
            await trigger_awx(
                url=self.runtime.urls["awx"],
                base_path=awx.base_path,
                token=awx.token,
                template=launch.template,
                extra_vars=extra_vars,
                wait=launch.wait,
                sleep=self.runtime.clock.sleep,
                on_launch=remember,
                verify=self.runtime.verify,
            )
        except AwxTriggerError as error:
            raise StepFailed(str(error)) from error
