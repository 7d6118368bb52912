"""The deployment pipeline shared by the staging and production flows: the stages in order, the timings, and
publishing whatever the outcome."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import get_run_logger
from prefect.futures import PrefectFuture, wait

from blocks import Mode, StackTarget
from clients.errors import ClientError
from flows.publish import publish
from flows.report import DeploymentReport, StageFailed
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

SOURCES = ("frontend", "backend", "stack")


def deploy_commit(target: StackTarget, *, source: str, sha: str | None, mode: Mode | None = None) -> DeploymentReport:
    """Carry a commit on a source branch to verified pods of ``target``; see ARCHITECTURE.md "Stages".

    Raises:
        StageFailed: a stage failed; its message names the stage, the remote object and its URL.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
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
            # chain may launch AWX before we get there): the roll-out is watched from this snapshot
            snapshot = snapshot_rollout(services, target)

            # 1. the source build (a stack commit is built directly by the stack build)
            source_run = None
            if source != "stack":
                source_run, timing = wait_for_source_build(services, source, repo, sha, target.budgets)
                report.table.add(timing)
            # 2. the stack build
            after = source_run.updated_at - timedelta(seconds=5) if source_run and source_run.updated_at else None
            stack_run, timing = build_stack(
                services, target, mode, stack_sha=sha if source == "stack" else None, after=after
            )
            report.table.add(timing)
            report.links["stack build"] = stack_run.html_url
            # 3. the image, compared with what the pods ran before
            image, timing = read_stack_image(services, target, snapshot)
            report.digest = image.digest
            report.table.add(timing)
            # 4 and 5. the AWX job and the roll-out it causes, followed together; the first failure stops both
            abandon = threading.Event()
            watch = watch_rollout.submit(services, target, snapshot, image.digest, abandon)
            since = stack_run.created_at or datetime.now(UTC)
            job_future = run_awx_job.submit(services, target, mode, since=since, abandon=abandon)
            (job, job_rows), (_rollout, pod_rows) = _together(job_future, watch, abandon=abandon)
            report.links["AWX job"] = job.ui_url
            for row in [*job_rows, *pod_rows]:
                report.table.add(row)
            # 6. verification
            report.table.add(verify_pods(services, target, image.digest))
            report.succeeded = True
    except StageFailed as failure:
        report.failed_stage = failure.stage
        report.error = str(failure)
        for row in failure.timings:
            report.table.add(row)
        raise
    finally:
        _add_lead_time(report, target)
        publish(report, target_seconds=target.budgets.total)
    return report


def _together(*futures: PrefectFuture[Any], abandon: threading.Event) -> list[Any]:
    """Wait for every future; when one fails, tell the others to stop. Raises the first failure, carrying the
    timing rows of the others too, so that the table shows how far each got."""
    pending = list(futures)
    first: PrefectFuture[Any] | None = None
    while pending:
        done, not_done = wait(pending, timeout=0.2)
        for future in done:
            if first is None and _exception(future) is not None:
                first = future
                abandon.set()
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
                    failure.timings.extend(_rows_of(other.result()))
    raise failure if failure is not None else RuntimeError("a stage failed without an exception")


def _exception(future: PrefectFuture[Any]) -> BaseException | None:
    try:
        future.result()
    except BaseException as error:
        return error
    return None


def _rows_of(result: Any) -> list[Any]:
    rows = result[1]
    return list(rows) if isinstance(rows, list) else [rows]


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
