"""The deployment stages as Prefect tasks (ARCHITECTURE.md "Stages").

Each task takes the ``Services`` of the run (an opaque object: the target's fields never reach Prefect's input
tracking) and the results of the stages it follows, and returns one typed result (``flows/results.py``) with the
``StageTiming`` rows measured from the services' own timestamps; on failure it raises ``StageFailed`` naming the
stage, the remote object and its URL, carrying what it measured so far. Every task that deploys uses ``NO_CACHE``:
a repeat with the same inputs must run again.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from blocks import Mode, Source
from clients.awx import Job
from clients.errors import ClientError, DeadlineExceeded, NotFound
from clients.github_models import WorkflowRun
from clients.registry import image_digest
from clients.rollout_baseline import before_rollout
from clients.rollout_events import (
    PodEvent,
    PodReady,
    PodStuck,
    PodTerminating,
    RolloutDone,
    RolloutEvent,
    RolloutReport,
    RolloutSnapshot,
)
from clients.rollout_state import PodState, RolloutState, pod_state
from clients.waiting import Deadline, Poll, poll_until
from flows import crashpoints, launches
from flows.progress import mark as mark_stage
from flows.report import StageFailed
from flows.results import BuildResult, ImageCheck, JobResult, RolloutResult, Verification
from flows.services import Services
from flows.stopping import cancels_remote, why
from flows.timing import Outcome, StageTiming


def poll_for(budget: float) -> Poll:
    """A poll scaled to a stage's budget: about 1/200 of it at first, growing to about 1/40 (0.05 s to 10 s)."""
    return Poll(initial=min(1.0, max(0.05, budget / 200)), factor=1.5, cap=min(10.0, max(0.2, budget / 40)))


FOLLOW_RUN_POLL_CAP = 1.0
"""The longest interval between two reads of a GitHub run being followed, whatever the budget."""


def follow_run_poll(budget: float) -> Poll:
    """The poll of a GitHub run being followed: ``poll_for``, but looking at least every ``FOLLOW_RUN_POLL_CAP``
    seconds. A build's end is seen on average half an interval late, and that lag is on the deploy's critical path
    (at the budget's 1/40, a 6-minute build's end was seen 4.5 s late on average); a read of an unchanged run is a
    conditional request answered 304, which costs no rate limit (FACTS.md), so looking often is cheap."""
    poll = poll_for(budget)
    return Poll(
        initial=min(poll.initial, FOLLOW_RUN_POLL_CAP), factor=poll.factor, cap=min(poll.cap, FOLLOW_RUN_POLL_CAP)
    )


def now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def stage(
    name: str,
    *,
    budget: float,
    link: Callable[[], str | None] = lambda: None,
    started: Callable[[], datetime | None] = lambda: None,
) -> Iterator[None]:
    """Turn a client error inside a stage into ``StageFailed`` with a failed timing row."""
    began = now()
    try:
        yield
    except ClientError as error:
        timing = StageTiming(name, started() or began, now(), budget, Outcome.FAILED, link())
        raise StageFailed(name, str(error), [timing]) from error


# ---------------------------------------------------------------- 1. the source build


@task(name="wait for source build", task_run_name="wait for {source} build", cache_policy=NO_CACHE)
def wait_for_source_build(services: Services, source: Source, sha: str) -> BuildResult:
    """Find the source repository's build of ``sha`` and follow it to success."""
    mark_stage("source build")
    budgets = services.target.budgets
    repo = services.target.sources[source]
    github = services.github
    return _follow_build(
        "source build",
        services,
        budgets.source_build,
        lambda: github.wait_for_run(
            repo.repository,
            repo.workflow,
            sha,
            event="push",
            branch=repo.branch,
            deadline_seconds=budgets.deadline(budgets.source_build),
            poll=poll_for(budgets.source_build),
        ),
    )


# ---------------------------------------------------------------- 2. the stack build


@task(name="build stack", task_run_name="build stack ({mode})", cache_policy=NO_CACHE)
def build_stack(
    services: Services, mode: Mode, *, source_build: BuildResult | None, stack_sha: str | None
) -> BuildResult:
    """Orchestrate: dispatch the stack's ``build main`` and follow it. Observe: find the run the repositories'
    own workflows started after the source build (or the push run of a stack commit, ``stack_sha``) and follow it."""
    mark_stage("stack build")
    target = services.target
    budgets = target.budgets
    github = services.github
    common: dict[str, Any] = {
        "deadline_seconds": budgets.deadline(budgets.stack_build),
        "poll": poll_for(budgets.stack_build),
    }

    def find() -> WorkflowRun:
        if stack_sha is not None:
            # a stack commit is built by its own push run, whatever the mode
            return github.wait_for_run(
                target.stack_repository, target.stack_workflow, stack_sha, event="push", **common
            )
        if mode is Mode.ORCHESTRATE:
            run_id, block = _run_and_block(services)
            record = launches.recall(run_id) if run_id else None
            if record is not None and record.build_run_id is not None:
                # a retry of this run after its process died: the build it dispatched is followed, not doubled
                get_run_logger().info("Resuming: following the stack build this run dispatched: %s", record.build_url)
                return github.run(target.stack_repository, record.build_run_id)
            get_run_logger().info(
                "Dispatching %s on %s with %s", target.stack_workflow, target.stack_ref, target.stack_inputs
            )
            run = github.dispatch(
                target.stack_repository, target.stack_workflow, target.stack_ref, target.stack_inputs, **common
            )
            launches.built(run_id, block, run.id, run.html_url)
            return run
        # the source build dispatches the stack build as it ends; allow for the two services' clocks
        finished = source_build.run.updated_at if source_build else None
        return github.wait_for_run(
            target.stack_repository,
            target.stack_workflow,
            None,
            created_after=finished - timedelta(seconds=5) if finished else now(),
            event="workflow_dispatch",
            **common,
        )

    return _follow_build("stack build", services, budgets.stack_build, find)


@task(name="wait for tag build", task_run_name="wait for the build of {tag}", cache_policy=NO_CACHE)
def wait_for_tag_build(services: Services, tag: str, sha: str) -> BuildResult:
    """Find the stack repository's build of a pushed tag (``build main`` on the tag's push, FACTS.md) and follow it
    to success; on a run resumed after an approval it is already done, so this is one cheap read."""
    mark_stage("stack build")
    target = services.target
    budgets = target.budgets
    github = services.github
    return _follow_build(
        "stack build",
        services,
        budgets.stack_build,
        lambda: github.wait_for_run(
            target.stack_repository,
            target.stack_workflow,
            sha,
            event="push",
            branch=tag,  # GitHub names a tag push's run by the tag (head_branch)
            deadline_seconds=budgets.deadline(budgets.stack_build),
            poll=poll_for(budgets.stack_build),
        ),
    )


def _follow_build(name: str, services: Services, budget: float, find: Callable[[], WorkflowRun]) -> BuildResult:
    """Find a build with ``find``, follow it to success, and time it from the run's own timestamps."""
    logger = get_run_logger()
    budgets = services.target.budgets
    found: list[WorkflowRun] = []

    def on_status(run: WorkflowRun) -> None:
        found.append(run)
        outcome = f" ({run.conclusion.value})" if run.conclusion else ""
        logger.info("%s is %s%s", run.describe(), run.status.value, outcome)

    with stage(
        name,
        budget=budget,
        link=lambda: found[-1].html_url if found else None,
        started=lambda: found[-1].run_started_at if found else None,
    ):
        run = find()
        found.append(run)
        logger.info("Following %s: %s", run.describe(), run.html_url)
        run = services.github.follow_run(
            run, budgets.deadline(budget), poll=follow_run_poll(budget), on_status=on_status
        )
    timing = StageTiming(name, run.run_started_at or run.created_at, run.updated_at, budget, Outcome.OK, run.html_url)
    return BuildResult(run, timing)


# ---------------------------------------------------------------- 3. the image


@task(
    name="read stack image",
    task_run_name="read {services.target.stack_image}:{tag} digest",
    cache_policy=NO_CACHE,
)
def read_stack_image(
    services: Services, snapshot: RolloutSnapshot | None, stack_build: BuildResult | None, *, tag: str
) -> ImageCheck:
    """Read the stack image ``tag`` (which ``stack_build`` pushed; None: an earlier build, for a rollback or a first
    deployment) from the registry, and compare its digest with what the pods run now (``snapshot``; None: no
    StatefulSet yet)."""
    mark_stage("image")
    target = services.target
    logger = get_run_logger()
    name = "image"
    began = now()
    reference = f"{target.stack_image}:{tag}"
    with stage(name, budget=target.budgets.image):
        digest = services.registry.digest(reference)
    built_at = stack_build.run.created_at if stack_build else None
    late = before_rollout(snapshot, digest, built_at) if snapshot and built_at else None
    if late is not None and snapshot is not None:
        logger.info(
            "The roll-out of %s to %s began before this run looked (revision %s): it is followed from before it began",
            f"{target.namespace}/{target.statefulset}",
            digest,
            snapshot.update_revision,
        )
    before = late or snapshot
    old = set(before.pod_uids) if before else set()
    pods = [pod_state(pod, before.update_revision) for pod in before.pod_objects if _uid(pod) in old] if before else []
    running = tuple(sorted(_digests(pods)))
    note = "" if digest not in running else "same digest as the running pods"
    if late is not None:
        note = "the roll-out to it had begun when the run looked"
    timing = StageTiming(name, began, now(), target.budgets.image, note=note)
    check = ImageCheck(reference, tag, digest, running, timing)
    built = f"{stack_build.run.describe()} pushed {reference}" if stack_build else reference
    if check.is_new:
        logger.info("%s: %s (the pods run %s)", built, digest, ", ".join(running) or "nothing yet")
    else:
        logger.warning("%s: %s, which the pods already run: the roll-out redeploys the same image", built, digest)
    return check


def _uid(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("uid") or "")


def _digests(pods: Iterable[PodState]) -> set[str]:
    """The image digests the pods' containers run (``imageID``s without a digest are left out)."""
    return {found for pod in pods for image_id in pod.image_ids.values() if (found := image_digest(image_id))}


# ---------------------------------------------------------------- 4. the AWX job


@task(
    name="snapshot roll-out",
    task_run_name="snapshot {services.target.namespace}/{services.target.statefulset}",
    cache_policy=NO_CACHE,
)
def snapshot_rollout(services: Services) -> RolloutSnapshot:
    """The StatefulSet and its pods before the change, to tell the roll-out's new pods from the old."""
    target = services.target
    with stage("roll-out", budget=target.budgets.pod):
        return services.cluster.snapshot(target.namespace, target.statefulset)


@task(name="run AWX job", task_run_name="AWX: {template}", cache_policy=NO_CACHE)
def run_awx_job(
    services: Services, mode: Mode, image: ImageCheck, *, template: str, since: datetime, stop: threading.Event
) -> JobResult:
    """Orchestrate: launch ``template`` (the target's version change, or a first deployment's) with the image's
    tag. Observe: find the job of ``template`` that the stack build launched (created after ``since``). Then follow
    it to the end, streaming its output into the flow's logs. When ``stop`` is set (the roll-out failed), stop
    following; a job we launched is canceled so that it does not hold the template."""
    mark_stage("AWX job", digest=image.digest)
    logger = get_run_logger()
    target = services.target
    budgets = target.budgets
    awx = services.awx
    extra_vars = {target.image_tag_var: image.tag}
    jobs: list[Job] = []

    def on_status(job: Job) -> None:
        jobs.append(job)
        logger.info("AWX job %s is %s", job.id, job.status.value)

    def on_output(lines: list[str]) -> None:
        for line in lines:
            if line.strip():
                logger.info("AWX | %s", line)

    def timings(outcome: Outcome) -> list[StageTiming]:
        job = jobs[-1] if jobs else None
        if job is None:
            return [StageTiming("AWX job", None, None, budgets.awx_job, outcome)]
        start = StageTiming(
            "AWX job start",
            job.created,
            job.started,
            budgets.awx_start,
            Outcome.OK if job.started else outcome,
            job.ui_url,
        )
        if job.started is None:
            return [start]
        return [start, StageTiming("AWX job", job.started, job.finished or now(), budgets.awx_job, outcome, job.ui_url)]

    try:
        found = awx.find_template(template)
        if mode is Mode.ORCHESTRATE:
            run_id, block = _run_and_block(services)
            resumed = _launched_before(services, run_id, found, extra_vars)
            if resumed is not None:
                job = resumed
                launches.launched(run_id, block, found.name, job.id, job.ui_url, extra_vars)
            else:
                launches.claim(run_id, block, found.name, extra_vars)
                job = awx.launch(found, extra_vars)
                crashpoints.reached("AWX launch")
                launches.launched(run_id, block, found.name, job.id, job.ui_url, extra_vars)
                logger.info("Launched AWX job %s from %r with %s: %s", job.id, found.name, extra_vars, job.ui_url)
            crashpoints.reached("AWX launched")
        else:
            job = awx.wait_for_job(
                found,
                since=since,
                extra_vars=extra_vars,
                deadline_seconds=budgets.deadline(budgets.awx_start),
                poll=poll_for(budgets.awx_start),
            )
            logger.info("Following AWX job %s that the stack build launched: %s", job.id, job.ui_url)
        jobs.append(job)
        job = awx.follow(
            job,
            budgets.deadline(budgets.awx_start) + budgets.deadline(budgets.awx_job),
            on_status=on_status,
            on_output=on_output,
            poll=poll_for(budgets.awx_start),
            stop=stop,
        )
        jobs.append(job)
    except ClientError as error:
        reason = str(error)
        if isinstance(error, DeadlineExceeded) and mode is Mode.ORCHESTRATE and jobs and not jobs[-1].status.finished:
            # a job we launched and gave up on must not deploy later, unwatched
            reason += "; canceled it" if _cancel_quietly(services, jobs[-1]) else "; it could not be canceled"
        raise StageFailed("AWX job", reason, timings(Outcome.FAILED)) from error
    if stop.is_set() and not job.status.finished:
        reason = f"stopped following AWX job {job.id} ({job.ui_url}): {why(stop)}"
        if mode is Mode.ORCHESTRATE and not cancels_remote(stop):
            reason += "; it goes on (the run's launch record names it)"
        elif mode is Mode.ORCHESTRATE:
            canceled = _cancel_quietly(services, job)
            reason += "; canceled it" if canceled else "; it could not be canceled"
        logger.warning(reason)
        raise StageFailed("AWX job", reason, timings(Outcome.NOT_REACHED))
    return JobResult(job, timings(Outcome.OK))


def _launched_before(services: Services, run_id: str | None, template: Any, extra_vars: dict[str, Any]) -> Job | None:
    """The job this run launched from ``template`` before its process died (a retry of the same flow run carries on
    from where the world is): the job its launch record names; or, when the record holds only the claim (the
    process died between the POST and recording AWX's answer), the first job of the template created since the
    claim with our extra vars: AWX is the truth. None: nothing was launched, launch now."""
    record = launches.recall(run_id) if run_id else None
    claimed = record.claimed if record is not None else None
    if record is None or claimed is None or record.template != template.name or record.extra_vars != extra_vars:
        return None  # nothing launched, or another launch of the run (a rollback's, with the last good tag)
    logger = get_run_logger()
    awx = services.awx
    if record.job_id is not None:
        job = awx.job(record.job_id)
        logger.info("Resuming: following AWX job %s that this run launched: %s", job.id, job.ui_url)
        return job
    jobs = awx.jobs_since(template, claimed - timedelta(seconds=awx.clock_skew_seconds), extra_vars)
    if not jobs:
        logger.info("Resuming: the launch claimed at %s created no AWX job; launching now", record.claimed_at)
        return None
    job = jobs[-1]  # the first created: environments are held one deploy at a time
    logger.info("Resuming: the launch claimed at %s had created AWX job %s: %s", record.claimed_at, job.id, job.ui_url)
    return job


def _run_and_block(services: Services) -> tuple[str | None, str]:
    """This run's id and the name of its ``StackTarget`` block, for the launch record."""
    from prefect.runtime import flow_run

    run_id = flow_run.id
    return (str(run_id) if run_id else None), str(getattr(services.target, "_block_document_name", "") or "")


def _cancel_quietly(services: Services, job: Job) -> bool:
    try:
        return services.awx.cancel(job)
    except ClientError as error:
        get_run_logger().warning("Could not cancel AWX job %s: %s", job.id, error)
        return False


# ---------------------------------------------------------------- 5. the roll-out


@task(
    name="watch roll-out",
    task_run_name="watch {services.target.namespace}/{services.target.statefulset}",
    cache_policy=NO_CACHE,
)
def watch_rollout(
    services: Services, snapshot: RolloutSnapshot, image: ImageCheck, *, since: datetime, stop: threading.Event
) -> RolloutResult:
    """Follow the roll-out from the snapshot, pod by pod, to pods running the image's digest, updating a progress
    artifact as each pod is replaced. A late start (the snapshot shows a roll-out to the digest that began after
    ``since``, under way or finished) is followed from before that roll-out began, and timed from the pods' own
    timestamps, rather than waiting for a change that has happened."""
    budgets = services.target.budgets
    late = before_rollout(snapshot, image.digest, since)
    if late is not None:
        get_run_logger().info(
            "Late start: the roll-out to %s (revision %s) %s before this run looked; following it from revision %s",
            image.digest,
            snapshot.update_revision,
            "had ended" if snapshot.current_revision == snapshot.update_revision else "had begun",
            late.update_revision or "(before it)",
        )
        snapshot = late
    # the roll-out cannot start before the AWX job patches the StatefulSet: a job that never starts is the AWX
    # stage's failure (it gives up first), not this one's
    before = budgets.deadline(budgets.awx_start) + budgets.deadline(budgets.awx_job)
    return _follow_rollout(
        services, snapshot, image, stop=stop, stage_name="roll-out", before_start=before, require_change=True
    )


@task(
    name="force rollback",
    task_run_name="roll back {services.target.namespace}/{services.target.statefulset}",
    cache_policy=NO_CACHE,
)
def force_rollback(
    services: Services, failed_revision: str | None, image: ImageCheck, *, stop: threading.Event
) -> RolloutResult:
    """Kubernetes' forced rollback (FACTS.md): once the AWX job has reverted the StatefulSet's template (its update
    revision is no longer ``failed_revision``), delete the pods of the failed revision that are not Ready, which
    the controller never replaces by itself under ``OrderedReady``, then follow the roll-out back to pods running
    the image's digest."""
    target = services.target
    budgets = target.budgets
    cluster = services.cluster
    where = f"{cluster.server} {target.namespace}/{target.statefulset}"
    waited = budgets.deadline(budgets.awx_start) + budgets.deadline(budgets.awx_job)

    def reverted() -> RolloutState | None:
        state = cluster.state(target.namespace, target.statefulset)
        return state if state.update_revision != failed_revision else None

    with stage("rollback", budget=budgets.awx_start):
        state = poll_until(reverted, Deadline(waited), poll_for(budgets.awx_start), stop)
        if state is None:
            if stop.is_set():
                raise StageFailed("rollback", f"stopped waiting for {where} to be reverted: {why(stop)}")
            raise StageFailed(
                "rollback", f"{where} was still at the failed revision {failed_revision} after {waited:.0f} s"
            )
        # read before deleting, so that the follow sees each stuck pod go and its replacement come up
        snapshot = cluster.snapshot(target.namespace, target.statefulset)
        stuck = [pod.name for pod in state.pods if pod.revision == failed_revision and not pod.ready]
        deleted = cluster.delete_pods(target.namespace, stuck)
        if deleted:
            get_run_logger().warning(
                "Deleted %s of the failed revision %s: not Ready, so the controller would never replace them",
                ", ".join(deleted),
                failed_revision,
            )
    # the change (the revert) is in the snapshot already
    return _follow_rollout(
        services, snapshot, image, stop=stop, stage_name="rollback", before_start=0.0, require_change=False
    )


@task(
    name="watch new stack",
    task_run_name="watch {services.target.namespace}/{services.target.statefulset} come up",
    cache_policy=NO_CACHE,
)
def watch_new_stack(services: Services, image: ImageCheck, *, stop: threading.Event) -> RolloutResult:
    """A first deployment: wait for the StatefulSet to be created, then follow it until every pod is Ready and
    runs the image's digest."""
    target = services.target
    budgets = target.budgets
    cluster = services.cluster
    waited = budgets.deadline(budgets.awx_start) + budgets.deadline(budgets.awx_job)

    def created() -> RolloutSnapshot | None:
        try:
            return cluster.snapshot(target.namespace, target.statefulset)
        except NotFound:
            return None

    with stage("first deployment", budget=budgets.awx_start):
        snapshot = poll_until(created, Deadline(waited), poll_for(budgets.awx_start), stop)
    if snapshot is None:
        where = f"{cluster.server} {target.namespace}/{target.statefulset}"
        reason = why(stop) if stop.is_set() else f"it did not exist after {waited:.0f} s"
        raise StageFailed("first deployment", f"stopped waiting for {where}: {reason}")
    # every pod of a new stack is new, even one the controller created before the snapshot was read
    snapshot = dataclasses.replace(snapshot, pods=())
    return _follow_rollout(
        services, snapshot, image, stop=stop, stage_name="first deployment", before_start=0.0, require_change=False
    )


def _follow_rollout(
    services: Services,
    snapshot: RolloutSnapshot,
    image: ImageCheck,
    *,
    stop: threading.Event,
    stage_name: str,
    before_start: float,
    require_change: bool,
) -> RolloutResult:
    """Follow a roll-out from ``snapshot`` to pods running ``image``'s digest, with a progress artifact; it may
    take ``before_start`` seconds to begin, then each pod its budget times the factor. ``require_change``: wait
    for a change after the snapshot (a version change), or only for the roll-out in it to end (a rollback whose
    revert is in the snapshot, a new stack)."""
    logger = get_run_logger()
    target = services.target
    budgets = target.budgets
    replicas = int(snapshot.replicas or 0)
    timeout = before_start + budgets.deadline(budgets.pod) * max(1, replicas)
    progress = cast(
        UUID,
        create_progress_artifact(
            progress=0.0, description=f"{target.environment}: {stage_name} of {target.namespace}/{target.statefulset}"
        ),
    )
    ready: list[str] = []
    follower = services.cluster.follow(
        snapshot,
        timeout=timeout,
        stuck_grace=target.stuck_grace_seconds,
        expected_digest=image.digest,
        container=None,
        require_change=require_change,
        stop=stop,
    )
    try:
        for event in follower:
            _log_event(logger, event)
            if isinstance(event, PodEvent):  # the pods move: the roll-out (or rollback) has begun
                mark_stage(stage_name, digest=image.digest)
            if isinstance(event, PodReady) and event.pod not in ready and event.revision != snapshot.update_revision:
                ready.append(event.pod)
                crashpoints.reached("roll-out")
                update_progress_artifact(
                    progress,
                    min(100.0, 100.0 * len(ready) / max(1, replicas)),
                    description=f"{target.environment}: {len(ready)}/{replicas} pods replaced ({event.pod} ready)",
                )
            if isinstance(event, RolloutDone):
                update_progress_artifact(progress, 100.0, description=f"{target.environment}: {stage_name} done")
                return RolloutResult(event.report, pod_timings(event.report, budgets.pod, Outcome.OK))
    except ClientError as error:
        raise StageFailed(stage_name, str(error), pod_timings(follower.report, budgets.pod, Outcome.FAILED)) from error
    reason = f"stopped watching the {stage_name}: {why(stop)}"
    raise StageFailed(stage_name, reason, pod_timings(follower.report, budgets.pod, Outcome.NOT_REACHED))


def _log_event(logger: Any, event: RolloutEvent) -> None:
    if isinstance(event, PodStuck):
        logger.warning(event.describe())
    elif isinstance(event, PodEvent | RolloutDone) or not isinstance(event, PodTerminating):
        logger.info(event.describe())


def pod_timings(report: RolloutReport, budget: float, outcome: Outcome) -> list[StageTiming]:
    """One row per replaced pod: old pod terminating -> new pod Ready, highest ordinal first as replaced."""
    rows = []
    for pod in sorted(report.pods, key=lambda p: p.terminating_at or p.created_at or now()):
        done = pod.ready_at is not None
        rows.append(
            StageTiming(
                f"pod {pod.name}",
                pod.terminating_at or pod.created_at,
                pod.ready_at,
                budget,
                Outcome.OK if done else outcome,
                note="" if done else "not ready",
            )
        )
    return rows


# ---------------------------------------------------------------- 6. verification


@task(
    name="verify pods",
    task_run_name="verify {services.target.namespace}/{services.target.statefulset}",
    cache_policy=NO_CACHE,
)
def verify_pods(services: Services, image: ImageCheck) -> Verification:
    """Every pod updated, ready, and running the image's digest (called with ``wait_for=`` the AWX job and the
    roll-out watch, which it follows)."""
    mark_stage("verify")
    target = services.target
    digest = image.digest
    name = "verify"
    began = now()
    with stage(name, budget=target.budgets.verify):
        state = services.cluster.state(target.namespace, target.statefulset)
    problems = []
    if not state.done:
        problems.append(state.message)
    for pod in state.pods:
        if not pod.updated:
            problems.append(f"pod {pod.name} is at revision {pod.revision}, not {state.update_revision}")
        if not pod.ready:
            problems.append(f"pod {pod.name} is not ready")
        digests = _digests([pod])
        if digest not in digests:
            problems.append(f"pod {pod.name} runs {', '.join(sorted(digests)) or 'no image'}, not {digest}")
    where = f"{services.cluster.server} {target.namespace}/{target.statefulset}"
    if problems:
        timing = StageTiming(name, began, now(), target.budgets.verify, Outcome.FAILED)
        raise StageFailed(name, f"{where}: " + "; ".join(problems), [timing])
    get_run_logger().info("Verified %s: %d pods updated, ready and running %s", where, len(state.pods), digest)
    return Verification(len(state.pods), StageTiming(name, began, now(), target.budgets.verify, Outcome.OK))
