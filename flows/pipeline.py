"""The deployment pipeline shared by the staging and production flows: the stages in order, the timings, and
publishing whatever the outcome."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any, TypeVar

from prefect import get_run_logger
from prefect.futures import PrefectFuture, wait

from blocks import Mode, Source, StackTarget
from clients.errors import ClientError
from flows.publish import publish
from flows.report import DeploymentReport, StageFailed
from flows.results import StageResult
from flows.services import Services
from flows.stages import (
    build_stack,
    read_stack_image,
    run_awx_job,
    snapshot_rollout,
    verify_pods,
    wait_for_source_build,
    watch_rollout,
)
from flows.timing import lead_time_rows


def deploy_commit(
    target: StackTarget, *, source: Source | str, sha: str | None, mode: Mode | None = None
) -> DeploymentReport:
    """Carry a commit on a source branch to verified pods of ``target``; see ARCHITECTURE.md "Stages".

    Each stage task takes the results of the stages before it, so that the run graph draws the chain: source build
    -> stack build -> image -> AWX job || roll-out watch -> verify (the snapshot feeds the image check and the
    watch).

    Raises:
        StageFailed: a stage failed; its message names the stage, the remote object and its URL.
    """
    try:
        source = Source(source)
    except ValueError:
        raise ValueError(f"source must be one of {', '.join(Source)}, not {source!r}") from None
    mode = Mode(mode or target.mode)
    report = DeploymentReport(environment=target.environment, source=source, sha=sha, image=target.image)
    logger = get_run_logger()
    try:
        with Services(target) as services:
            repo = target.sources[source]
            try:
                report.sha = sha = sha or services.github.branch_head(repo.repository, repo.branch)
                commit = services.github.commit(repo.repository, sha)
            except ClientError as error:
                raise StageFailed("source build", str(error)) from error
            report.commit_time = commit.timestamp
            title = commit.message.splitlines()[0] if commit.message else ""
            logger.info(
                "Deploying %s@%s (%s) to %s in %s mode", repo.repository, sha[:7], title, target.environment, mode.value
            )

            # the StatefulSet as it is before anything can change it (in observe mode the repositories' own
            # chain may launch AWX before we get there): the roll-out is watched from this snapshot. It is read
            # while the builds run, off the critical path; nothing changes the pods before the stack build ends.
            snapshot_future = snapshot_rollout.submit(services)

            # 1. the source build (a stack commit is built directly by the stack build)
            source_build = None
            if source is not Source.STACK:
                source_build = _add(report, wait_for_source_build(services, source, sha))
            # 2. the stack build
            stack_build = _add(
                report,
                build_stack(
                    services, mode, source_build=source_build, stack_sha=sha if source is Source.STACK else None
                ),
            )
            report.links["stack build"] = stack_build.run.html_url
            # 3. the image, compared with what the pods ran before
            snapshot = snapshot_future.result()
            image = _add(report, read_stack_image(services, snapshot, stack_build))
            report.digest = image.digest
            # 4 and 5. the AWX job and the roll-out it causes, followed together; the first failure stops both
            stop = threading.Event()
            watch = watch_rollout.submit(services, snapshot, image, stop=stop)
            since = stack_build.run.created_at or datetime.now(UTC)
            job = run_awx_job.submit(services, mode, image, since=since, stop=stop)
            job_result, rollout = _together(job, watch, stop=stop)
            report.links["AWX job"] = job_result.job.ui_url
            _add(report, job_result)
            _add(report, rollout)
            # 6. verification, once the job and the roll-out are over
            _add(report, verify_pods(services, image, wait_for=[job, watch]))
            report.succeeded = True
    except StageFailed as failure:
        report.failed_stage = failure.stage
        report.error = str(failure)
        for row in failure.timings:
            report.table.add(row)
        raise
    finally:
        _add_lead_time(report, target)
        publish(report, budgets=target.budgets, time_scale=target.time_scale)
    return report


R = TypeVar("R", bound=StageResult)


def _add(report: DeploymentReport, result: R) -> R:
    """Add a stage's timing rows to the report's table, and hand the result on to the next stage."""
    for row in result.timings:
        report.table.add(row)
    return result


def _together(*futures: PrefectFuture[Any], stop: threading.Event) -> list[Any]:
    """Wait for every future; when one fails, tell the others to stop. Raises the first failure, carrying the
    timing rows of the others too, so that the table shows how far each got."""
    pending = list(futures)
    first: PrefectFuture[Any] | None = None
    while pending:
        done, not_done = wait(pending, timeout=0.2)
        for future in done:
            if first is None and _exception(future) is not None:
                first = future
                stop.set()
        pending = list(not_done)
    if first is None:
        return [future.result() for future in futures]
    failure = _exception(first)
    if isinstance(failure, StageFailed):
        for other in futures:
            if other is not first:
                error = _exception(other)
                if isinstance(error, StageFailed):
                    failure.timings.extend(error.timings)
                elif error is None:
                    failure.timings.extend(other.result().timings)
    raise failure if failure is not None else RuntimeError("a stage failed without an exception")


def _exception(future: PrefectFuture[Any]) -> BaseException | None:
    try:
        future.result()
    except BaseException as error:
        return error
    return None


def _add_lead_time(report: DeploymentReport, target: StackTarget) -> None:
    """Commit -> roll-out start (the first old pod terminating) and the total lead time (the last new pod
    Ready, or the verification's end when no pod was measured)."""
    pods = [row for row in report.table.rows if row.stage.startswith("pod ")]
    rollout_started = min((row.started for row in pods if row.started), default=None)
    finished = None
    if report.succeeded:
        ends = [row.finished for row in pods if row.finished]
        verify = report.table.find("verify")
        finished = max(ends) if ends else (verify.finished if verify else None)
    for row in lead_time_rows(
        report.commit_time,
        rollout_started,
        finished,
        rollout_budget=target.budgets.commit_to_rollout,
        total_budget=target.budgets.total,
        failed=not report.succeeded,
    ):
        report.table.add(row)
