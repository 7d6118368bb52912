"""The deployment pipeline shared by the staging and production flows: the stages in order, the timings, and
publishing whatever the outcome.

Staging and production differ only in how the image comes to be (a commit's builds, or a tag's build), in the
production checks (tag policy, no downgrade), the approval, and the rollback; from the image on, both run
``_apply``: the AWX job and the roll-out it causes, followed together, then the verification.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from prefect import get_run_logger
from prefect.exceptions import Pause
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run

from blocks import Mode, Source, StackTarget
from clients.errors import ClientError, NotFound
from clients.rollout_events import RolloutSnapshot
from flows import approval, crashpoints, environments, inputs, last_good, launches, progress
from flows.publish import publish
from flows.report import DeploymentOutcome, DeploymentReport, DeploymentStopped, StageFailed
from flows.results import ImageCheck, StageResult
from flows.services import Services
from flows.stages import (
    build_stack,
    force_rollback,
    read_stack_image,
    run_awx_job,
    snapshot_rollout,
    verify_pods,
    wait_for_source_build,
    wait_for_tag_build,
    watch_new_stack,
    watch_rollout,
)
from flows.stopping import Stop
from flows.tags import MAX_LENGTH, TagRefused, check_tag, is_older, is_production_grade, shown
from flows.timing import APPROVAL, Outcome, StageTiming, format_seconds, lead_time_rows

R = TypeVar("R", bound=StageResult)

STOP_GRACE_SECONDS = 10.0
"""How long a cancelled run gives its stages to stop (and cancel the AWX job) before its process ends."""


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
    source, sha = inputs.check_source(source), inputs.check_sha(sha)  # malformed: refused before anything
    report = DeploymentReport(environment=target.environment, source=source, sha=sha, image=target.image)

    def checks(services: Services) -> None:
        guard(target, production=False)
        if source not in target.sources:
            raise inputs.refuse(f"the target {target.environment!r} has no source '{source}'")
        if sha:  # runs, events and reports carry full shas: a short one is expanded before anything else
            report.sha = inputs.full_sha(services.github, target.sources[source].repository, sha)

    with _deployment(target, report, check=checks) as services:
        mode = Mode(mode or target.mode)
        repo = target.sources[source]
        sha = report.sha
        with _client_errors("source build"):
            report.sha = sha = sha or services.github.branch_head(repo.repository, repo.branch)
            commit = services.github.commit(repo.repository, sha)
        report.change_at = commit.timestamp
        title = commit.message.splitlines()[0] if commit.message else ""
        get_run_logger().info(
            "Deploying %s@%s (%s) to %s in %s mode", repo.repository, sha[:7], title, target.environment, mode.value
        )
        # the StatefulSet as it is before anything can change it (in observe mode the repositories' own chain may
        # launch AWX before we get there): the roll-out is watched from this snapshot. It is read while the builds
        # run, off the critical path; nothing changes the pods before the stack build ends.
        snapshot_read = snapshot_rollout.submit(services)
        # 1. the source build (a stack commit is built directly by the stack build)
        source_build = None
        if source is not Source.STACK:
            source_build = _add(report, wait_for_source_build(services, source, sha))
            crashpoints.reached("source build")
        # 2. the stack build
        stack_sha = sha if source is Source.STACK else None
        stack_build = _add(report, build_stack(services, mode, source_build=source_build, stack_sha=stack_sha))
        report.links["stack build"] = stack_build.run.html_url
        report.stack_sha = stack_build.run.head_sha
        crashpoints.reached("stack build")
        # 3. the image, compared with what the pods ran before
        snapshot = snapshot_read.result()
        image = _add(report, read_stack_image(services, snapshot, stack_build, tag=target.image_tag))
        report.digest = image.digest
        crashpoints.reached("image")
        # 4-6. the AWX job and the roll-out, then the verification
        _apply(services, report, mode, snapshot, image, since=stack_build.run.created_at or datetime.now(UTC))
        report.outcome = DeploymentOutcome.SUCCEEDED
    return report


def deploy_tag(
    target: StackTarget, *, tag: str, mode: Mode | None = None, allow_downgrade: bool = False
) -> DeploymentReport:
    """Carry a production-grade tag of the stack repository to verified pods of a production ``target``: the tag
    policy before anything remote, the tag's build, its image, an approval in the Prefect UI, the AWX job and the
    roll-out, the verification; a failed roll-out is rolled back to the last good tag.

    Raises:
        StageFailed: a stage failed (after a rollback too: the report says whether it was verified).
        DeploymentStopped: rejected, or no decision in time; nothing was deployed.
    """
    # a tag the policy will refuse for its length is carried cut short by the report, its event and artifacts
    reported = tag if len(tag) <= MAX_LENGTH else shown(tag)
    report = DeploymentReport(
        environment=target.environment,
        source=Source.STACK,
        sha=None,
        tag=reported,
        image=f"{target.stack_image}:{reported}",
    )
    report.started_by = "tag push"
    logger = get_run_logger()

    def checks(_: Services) -> None:
        try:
            check_tag(tag, target.tag_pattern)
        except TagRefused as refused:
            raise StageFailed("tag policy", str(refused)) from None
        guard(target, production=True)

    # the checks that need nothing remote come first: a refused tag makes no request at all
    with _deployment(target, report, check=checks) as services:
        mode = Mode(mode or target.mode)
        repository = target.stack_repository
        with _client_errors("tag policy"):
            tagged = next((found for found in services.github.tags(repository) if found.name == tag), None)
            if tagged is None:
                raise StageFailed("tag policy", f"tag {tag} does not exist on {repository}")
            running = _running_tag(services)
        report.sha = report.stack_sha = tagged.sha
        if (
            running
            and not allow_downgrade
            and is_production_grade(running, target.tag_pattern)
            and is_older(tag, than=running)
        ):
            raise StageFailed(
                "tag policy",
                f"tag {tag} is older than {running}, which {target.environment} runs now "
                "(deploy it with allow_downgrade=True)",
            )
        logger.info(
            "Deploying %s %s (commit %s) to %s in %s mode; it runs %s now",
            repository,
            tag,
            tagged.sha[:7],
            target.environment,
            mode.value,
            running or "nothing",
        )
        snapshot_read = snapshot_rollout.submit(services)
        tag_build = _add(report, wait_for_tag_build(services, tag, tagged.sha))
        report.change_at = tag_build.run.created_at
        report.links["stack build"] = tag_build.run.html_url
        snapshot = snapshot_read.result()
        image = _add(report, read_stack_image(services, snapshot, tag_build, tag=tag))
        report.digest = image.digest
        if target.asks_approval and mode is Mode.ORCHESTRATE:
            _ask_approval(target, report, image)
        elif target.asks_approval:
            logger.info("Observe mode: the repositories' own chain launches AWX on the tag's build; nothing to approve")
        try:
            _apply(services, report, mode, snapshot, image, since=tag_build.run.created_at or datetime.now(UTC))
        except StageFailed as failure:
            if target.rolls_back:
                raise _roll_back(services, report, mode, failure, before=snapshot) from failure
            raise
        good = last_good.LastGood(tag, image.digest, report.run_id, datetime.now(UTC).isoformat())
        last_good.remember(target.environment, good)
        logger.info("Remembered %s as the last good tag of %s", good.describe(), target.environment)
        report.outcome = DeploymentOutcome.SUCCEEDED
    return report


def deploy_first(target: StackTarget, *, force: bool = False) -> DeploymentReport:
    """Create the stack with the one-time template (``target.first_deploy_template``): refused when the StatefulSet
    exists already unless ``force``; launched with the target's image tag, followed until every pod is Ready, and
    verified against the image's digest. The lead time runs from the launch.

    Raises:
        StageFailed: a stage failed, or the stack exists already.
    """
    report = DeploymentReport(environment=target.environment, source="first deployment", sha=None, image=target.image)
    report.started_by = "launch"
    with _deployment(target, report, check=lambda _: guard(target, production=target.production)) as services:
        with _client_errors("first deployment"):
            running = _running_tag(services, exists=True)
        where = f"{target.namespace}/{target.statefulset}"
        if running is not None and not force:
            raise StageFailed(
                "first deployment",
                f"the StatefulSet {where} exists already (it runs {running or 'an image of its own'}): "
                f"pass force=True to launch {target.first_deploy_template!r} again",
            )
        image = _add(report, read_stack_image(services, None, None, tag=target.image_tag))
        report.digest = image.digest
        stop = Stop()
        watch = watch_new_stack.submit(services, image, stop=stop)
        job = run_awx_job.submit(
            services,
            Mode.ORCHESTRATE,
            image,
            template=target.first_deploy_template,
            since=datetime.now(UTC),
            stop=stop,
        )
        job_result, rollout = _together(job, watch, stop=stop)
        report.change_at = job_result.job.created
        report.links["AWX job"] = job_result.job.ui_url
        _add(report, job_result)
        _add(report, rollout)
        _add(report, verify_pods(services, image, wait_for=[job, watch]))
        report.outcome = DeploymentOutcome.SUCCEEDED
    return report


def guard(target: StackTarget, *, production: bool) -> None:
    """No crossing environments: one AWX hosts both environments' templates, so a production run refuses a target
    not marked production or whose namespace or job template is staging's, and a staging run refuses production's.
    """
    names = f"namespace {target.namespace!r}, job templates {target.job_template!r}, {target.first_deploy_template!r}"
    resources = f"{target.namespace} {target.job_template} {target.first_deploy_template}".lower()
    if production:
        if not target.production:
            problem = f"the target {target.environment!r} is not marked production"
        elif "staging" in resources:
            problem = f"the target {target.environment!r} names staging's resources ({names})"
        else:
            return
    else:
        if target.production:
            problem = f"the target {target.environment!r} is marked production: deploy tags to it"
        elif "production" in resources:
            problem = f"the target {target.environment!r} names production's resources ({names})"
        else:
            return
    raise StageFailed("environment guard", problem)


# ---------------------------------------------------------------- the shared part


@contextmanager
def _deployment(
    target: StackTarget, report: DeploymentReport, *, check: Callable[[Services], None]
) -> Iterator[Services]:
    """The clients of one deployment, run while it holds its environment (after ``check``, the checks of the
    request, which may only read: a short sha's expansion through GitHub); the outcome recorded and published
    whatever happens (but not while the run is suspended for an approval: it runs again from the top when
    resumed)."""
    report.run_id = str(flow_run.id) if flow_run.id else None
    if flow_run.run_count > 1 and launches.crash_leftover_tasks(report.run_id):
        get_run_logger().info("Marked Crashed the task runs that an earlier attempt of this run left unfinished")
    progress.begin(report)
    suspended = interrupted_run = False
    try:
        with Services(target) as services:
            check(services)
            with environments.hold(target.environment, environments.Me.current()):
                yield services
    except environments.Superseded as superseded:
        report.outcome = DeploymentOutcome.SUPERSEDED
        report.error = str(superseded)
        get_run_logger().info("Nothing done: %s", superseded)
        raise DeploymentStopped(DeploymentOutcome.SUPERSEDED, str(superseded)) from None
    except StageFailed as failure:
        report.outcome = report.outcome or DeploymentOutcome.FAILED
        report.failed_stage = failure.stage
        report.error = str(failure)
        for row in failure.timings:
            report.table.add(row)
        raise
    except DeploymentStopped as stopped:
        report.outcome = stopped.outcome
        report.error = str(stopped)
        raise
    except Pause:
        suspended = True
        raise
    except Exception:
        raise  # an error nobody named: the run fails, published as such below
    except BaseException as interrupted:  # SIGTERM (TerminationSignal), Ctrl-C
        if _cancel_requested():
            report.outcome = DeploymentOutcome.CANCELLED
            report.error = "cancelled"
        else:
            report.outcome = DeploymentOutcome.FAILED
            report.error = f"the run's process was stopped ({type(interrupted).__name__}); remote work goes on"
        interrupted_run = True
        raise
    finally:
        if not suspended:
            report.outcome = report.outcome or DeploymentOutcome.FAILED
            _add_lead_time(report, target)
            publish(report, budgets=target.budgets, time_scale=target.time_scale, target=target)
            if not interrupted_run:
                # a cancelled run's hook still needs it to cancel the AWX job, and a stopped one's resumption
                launches.forget(report.run_id)


def _apply(
    services: Services,
    report: DeploymentReport,
    mode: Mode,
    snapshot: RolloutSnapshot,
    image: ImageCheck,
    *,
    since: datetime,
) -> None:
    """4-6: the AWX job and the roll-out it causes, followed together (the first failure stops both), then the
    verification of every pod against the image's digest."""
    stop = Stop()
    watch = watch_rollout.submit(services, snapshot, image, since=since, stop=stop)
    job = run_awx_job.submit(services, mode, image, template=services.target.job_template, since=since, stop=stop)
    job_result, rollout = _together(job, watch, stop=stop)
    report.links["AWX job"] = job_result.job.ui_url
    _add(report, job_result)
    _add(report, rollout)
    crashpoints.reached("rolled out")
    _add(report, verify_pods(services, image, wait_for=[job, watch]))
    crashpoints.reached("verified")


def _roll_back(
    services: Services, report: DeploymentReport, mode: Mode, failure: StageFailed, *, before: RolloutSnapshot
) -> StageFailed:
    """The roll-out of ``report.tag`` failed: launch the template again with the last good tag, delete the pods
    of the failed revision that are stuck (Kubernetes' forced rollback), follow and verify. Returns the failure to
    raise, which says what the rollback did (the run fails either way)."""
    logger = get_run_logger()
    target = services.target
    for row in failure.timings:
        report.table.add(row)
    failure.timings = []
    failed_at = next((row.stage for row in report.table.rows if row.outcome is Outcome.FAILED), failure.stage)
    # a stuck pod's reason goes on with its log lines and events: what the rollback did stays on the first line
    headline, _, details = failure.reason.partition("\n")
    what = f"{report.tag} failed at {failed_at}: {headline}"

    def ended(outcome: str) -> StageFailed:
        report.rollback = outcome
        return StageFailed(failure.stage, f"{what}; {outcome}" + (f"\n{details}" if details else ""))

    if mode is not Mode.ORCHESTRATE:
        return ended("no rollback in observe mode (it writes nothing)")
    good = last_good.recall(target.environment)
    if good is None:
        return ended(f"no rollback: {target.environment} has no last good tag yet")
    try:
        state = services.cluster.state(target.namespace, target.statefulset)
    except ClientError as error:
        return ended(f"rollback to {good.describe()} not started: {error}")
    if state.update_revision == before.update_revision:
        return ended("no rollback needed: the StatefulSet was not changed")
    logger.warning("Rolling %s back to %s after: %s", target.environment, good.describe(), failure.reason)
    try:
        rows_before = len(report.table.rows)
        image = _add(report, read_stack_image(services, snapshot_rollout(services), None, tag=good.tag))
        if image.digest != good.digest:
            logger.warning("%s is %s now, not %s as when it was verified", image.image, image.digest, good.digest)
        stop = Stop()
        unstick = force_rollback.submit(services, state.update_revision, image, stop=stop)
        job = run_awx_job.submit(
            services, Mode.ORCHESTRATE, image, template=target.job_template, since=datetime.now(UTC), stop=stop
        )
        job_result, rollout = _together(job, unstick, stop=stop)
        _add(report, job_result)
        _add(report, rollout)
        _add(report, verify_pods(services, image, wait_for=[job, unstick]))
    except StageFailed as rollback_failure:
        for row in rollback_failure.timings:
            report.table.add(row)
        _name_rollback_rows(report, rows_before)
        return ended(f"rollback to {good.describe()} failed: {rollback_failure.reason}")
    _name_rollback_rows(report, rows_before)
    report.outcome = DeploymentOutcome.ROLLED_BACK
    return ended(f"rolled back to {good.tag} ({image.digest}), verified")


def _name_rollback_rows(report: DeploymentReport, start: int) -> None:
    for row in report.table.rows[start:]:
        row.stage = f"rollback {row.stage}"


def _ask_approval(target: StackTarget, report: DeploymentReport, image: ImageCheck) -> None:
    """Wait for a decision in the Prefect UI; record it as its own row, kept out of the lead time."""
    question = _question(target, report, image)
    decision = approval.ask(
        question,
        key=f"approve-{image.digest.removeprefix('sha256:')[:32]}",
        timeout_seconds=target.approval_timeout_seconds,
        time_scale=target.time_scale,
    )
    report.approval = decision.describe()
    report.approval_wait = decision.waited
    report.table.add(StageTiming(APPROVAL, decision.asked_at, decision.answered_at, None, note=decision.describe()))


def _question(target: StackTarget, report: DeploymentReport, image: ImageCheck) -> str:
    """What the approval form shows: the tag, digest and commit, the staging deploy that last carried that commit
    (if any), and the timings so far."""
    staging = _staging_deploy_of(report.sha)
    lines = [
        f"## Deploy {target.stack_image}:{report.tag} to {target.environment}?",
        "",
        f"- **tag**: {report.tag} (stack commit `{(report.sha or '')[:12]}`)",
        f"- **digest**: `{image.digest}`" + ("" if image.is_new else " (the pods already run it)"),
        f"- **AWX template**: {target.job_template} on {target.awx.url}",
        f"- **namespace**: {target.namespace}",
        f"- **staging**: {staging or 'no staging deploy of this commit in the last 7 days of events'}",
        "",
        "| stage | duration | verdict |",
        "|---|---|---|",
    ]
    lines += [f"| {row.stage} | {format_seconds(row.duration)} | {row.verdict} |" for row in report.table.rows]
    lines += ["", "Choose **approve** or **reject**, say who you are, and why."]
    return "\n".join(lines)


def _staging_deploy_of(sha: str | None) -> str | None:
    """The last staging deploy whose stack build was at ``sha``, from the newest ``fragalysis.deployment.*`` events
    of staging (best effort: the question is asked anyway)."""
    if not sha:
        return None
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    try:
        with get_client(sync_client=True) as client:
            page = client.read_events(
                EventFilter(
                    event=EventNameFilter(prefix=["fragalysis.deployment."]),
                    resource=EventResourceFilter(id=["fragalysis.stack.staging"]),
                ),
                limit=50,  # the server's largest page
            )
    except Exception as error:  # the approval must not fail on a lookup that only informs it
        get_run_logger().warning("Could not read staging's deployment events: %s", error)
        return None
    for event in sorted(page.events, key=lambda e: e.occurred, reverse=True):
        if event.payload.get("stack_sha") == sha:
            payload = event.payload
            return f"{payload.get('outcome')} (run {payload.get('run_id')}, {event.occurred:%Y-%m-%d %H:%M})"
    return None


def _running_tag(services: Services, *, exists: bool = False) -> str | None:
    """The tag of the stack image the StatefulSet's template runs now; None when it has no StatefulSet yet (and,
    with ``exists``, "" when it has one that runs no tagged stack image)."""
    target = services.target
    try:
        images = services.cluster.container_images(target.namespace, target.statefulset)
    except NotFound:
        return None
    for image in images.values():
        name, _, tag = image.rpartition(":")
        if name.endswith(target.stack_image) and "/" not in tag:
            return tag
    return "" if exists else None


@contextmanager
def _client_errors(stage: str) -> Iterator[None]:
    try:
        yield
    except ClientError as error:
        raise StageFailed(stage, str(error)) from error


def _cancel_requested() -> bool:
    """Whether this run is being cancelled (the UI's Cancel, or the API: Prefect sets Cancelling, then SIGTERMs the
    run's process), rather than its process stopping for another reason."""
    from prefect.client.orchestration import get_client

    if flow_run.id is None:
        return False
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run.id).state
    except Exception:  # no answer: treat it as a stop, which leaves remote work alone
        return False
    return state is not None and state.is_cancelling()


def _add(report: DeploymentReport, result: R) -> R:
    """Add a stage's timing rows to the report's table, and hand the result on to the next stage."""
    for row in result.timings:
        report.table.add(row)
    return result


def _together(*futures: PrefectFuture[Any], stop: Stop) -> list[Any]:
    """Wait for every future; when one fails, tell the others to stop. Raises the first failure, carrying the
    timing rows of the others too, so that the table shows how far each got.

    When the run is cancelled (Prefect raises ``TerminationSignal`` here on SIGTERM) the stages are told to stop,
    and given a few seconds to do so (the AWX stage cancels the job it launched) before the process ends, well
    inside Prefect's 30-second SIGKILL grace."""
    pending = list(futures)
    first: PrefectFuture[Any] | None = None
    while pending:
        try:
            done, not_done = wait(pending, timeout=0.2)
        except BaseException:
            if _cancel_requested():
                stop.stop("the run was cancelled")
            else:  # the process is stopping (serve shut down, Ctrl-C): the remote work goes on
                stop.stop("the run's process is stopping", cancel_remote=False)
            wait(pending, timeout=STOP_GRACE_SECONDS)
            raise
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
    """<change> -> roll-out start (the first old pod terminating) and the total lead time (the last new pod Ready,
    or the verification's end when no pod was measured), the approval wait left out."""
    pods = [row for row in report.table.rows if row.stage.startswith("pod ")]
    rollout_started = min((row.started for row in pods if row.started), default=None)
    finished = None
    if report.succeeded:
        ends = [row.finished for row in pods if row.finished]
        verify = report.table.find("verify")
        finished = max(ends) if ends else (verify.finished if verify else None)
    for row in lead_time_rows(
        report.change_at,
        rollout_started,
        finished,
        rollout_budget=target.budgets.commit_to_rollout,
        total_budget=target.budgets.total,
        failed=not report.succeeded,
        change=report.started_by,
        excluded=report.approval_wait or 0.0,
    ):
        report.table.add(row)
