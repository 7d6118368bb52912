"""The poller: for installations that GitHub's webhooks cannot reach, and to catch up with deliveries that failed
(GitHub does not redeliver by itself), a scheduled flow that reads the branch heads and tags a target deploys from and
starts one deploy per new head or new production-grade tag.

Reads are conditional (``If-None-Match`` with the ETag of the last read): a 304 costs no rate limit (FACTS.md), so a
quiet poll is all 304s. What was seen (shas, the newest production-grade tag, the ETags) is kept between runs in one
Prefect Variable per environment, ``fragalysis-seen-<environment>``. The first poll of a target records a baseline
and starts nothing, so that installing the poller redeploys nothing. A change that a webhook (or an earlier poll)
already started is not started again: the deployment's recent runs are searched for the same parameters first, a
change whose webhook arrived in the last ``WEBHOOK_GRACE`` is left to the webhook's trigger (whose run may not exist
yet: the automation acts a moment after the event), and each run the poller starts carries an idempotency key
derived from the change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from prefect import flow, get_run_logger
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.utilities.urls import url_for
from prefect.variables import Variable
from pydantic import BaseModel, Field, ValidationError

from blocks import StackTarget
from clients.github import GitHubClient, PageMark
from flows.events import GITHUB_PUSH
from flows.names import per_environment
from flows.tags import is_production_grade, version_key

__all__ = ["PollFailed", "PollSummary", "Seen", "poll_github", "seen_variable"]

STAGING_DEPLOYMENT = "deploy-to-staging/staging"
PRODUCTION_DEPLOYMENT = "deploy-to-production/production"
RECENT_RUNS = 200
"""How many of a deployment's newest runs are searched for one that already deploys a change."""
WEBHOOK_GRACE = timedelta(minutes=5)
"""A change whose push event arrived this recently belongs to the webhook's trigger, even before its run exists; an
older push event with no run means the trigger did not act (disabled, or its run deleted), and the poller starts one."""


class PollFailed(Exception):
    """Some reads or starts of a poll failed; what they would have recorded is kept for the next poll."""


class SeenBranch(BaseModel):
    """A source branch's head as last seen, and the ETag of that read."""

    repository: str
    branch: str
    sha: str
    etag: str | None = None


class SeenTags(BaseModel):
    """The newest production-grade tag seen on the stack repository, and the marks of the tag listing's pages."""

    repository: str
    newest: str | None = None
    pages: list[PageMark] = Field(default_factory=list)


class Seen(BaseModel):
    """What the poller remembers of one target (the value of its Variable)."""

    target: str
    branches: dict[str, SeenBranch] = Field(default_factory=dict)
    tags: SeenTags | None = None


class Change(BaseModel):
    """Something new that a deploy should carry: the deployment, its parameters and the run's idempotency key."""

    deployment: str
    parameters: dict[str, str]
    idempotency_key: str
    what: str


class StartedRun(BaseModel):
    deployment: str
    parameters: dict[str, str]
    flow_run_id: str
    flow_run_name: str


class PollSummary(BaseModel):
    """What one poll did: the runs it started, the changes already started (by a webhook or an earlier poll), the
    reads that found nothing new, the targets and sources it recorded a baseline for, and what failed."""

    started: list[StartedRun] = Field(default_factory=list)
    already_started: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    baselines: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


def seen_variable(environment: str) -> str:
    """``fragalysis-seen-staging`` (Variable names allow lowercase letters, digits, dashes and underscores)."""
    return per_environment("seen", environment)


@flow(name="poll-github", log_prints=False)
def poll_github(
    targets: list[str] = ["staging", "production"],  # noqa: B006 - never mutated; Prefect shows it as the default
    staging_deployment: str = STAGING_DEPLOYMENT,
    production_deployment: str = PRODUCTION_DEPLOYMENT,
) -> PollSummary:
    """Read the source branch heads (non-production targets) or the stack repository's production-grade tags
    (production targets) of each ``StackTarget`` named, and start one deploy per new head or new tag.

    Args:
        targets: the names of the ``StackTarget`` blocks to poll.
        staging_deployment: the deployment that deploys a commit (``source``, ``sha``, ``target``).
        production_deployment: the deployment that deploys a tag (``tag``, ``target``).

    Returns:
        What the poll started and found.

    Raises:
        PollFailed: a read or a start failed (the others still ran; the next poll tries the failed ones again).
    """
    logger = get_run_logger()
    summary = PollSummary()
    for name in targets:
        try:
            target = cast(StackTarget, StackTarget.load(name))
            deployment = production_deployment if target.production else staging_deployment
            poll_target(name, target, deployment, summary)
        except Exception as error:  # one target's failure does not keep the others from being polled
            logger.error("Polling target %r failed: %s", name, error)
            summary.errors.append(f"{name}: {error}")
    logger.info(
        "Poll done: %d started, %d already started, %d unchanged, %d baselines, %d errors",
        len(summary.started),
        len(summary.already_started),
        len(summary.unchanged),
        len(summary.baselines),
        len(summary.errors),
    )
    if summary.errors:
        raise PollFailed("; ".join(summary.errors))
    return summary


def poll_target(name: str, target: StackTarget, deployment: str, summary: PollSummary) -> None:
    """Poll one target, start what is new, and remember what was seen."""
    logger = get_run_logger()
    variable = seen_variable(target.environment)
    previous = recall(variable)
    if previous is None:
        logger.info("First poll of %r (nothing in Variable %s): recording a baseline, starting nothing", name, variable)
        summary.baselines.append(name)
    with target.github.get_client() as github:
        if target.production:
            seen = poll_tags(github, name, target, deployment, previous, summary)
        else:
            seen = poll_branches(github, name, target, deployment, previous, summary)
    if seen != previous:  # a quiet poll writes nothing
        Variable.set(variable, seen.model_dump(mode="json"), overwrite=True)


def recall(variable: str) -> Seen | None:
    """What was seen, or None when nothing was (or the Variable no longer reads as ``Seen``: a new baseline)."""
    value: Any = Variable.get(variable, default=None)
    if value is None:
        return None
    try:
        return Seen.model_validate(value)
    except ValidationError as error:
        get_run_logger().warning(
            "Variable %s is not what the poller writes (%s); recording a new baseline", variable, error
        )
        return None


def poll_branches(
    github: GitHubClient, name: str, target: StackTarget, deployment: str, previous: Seen | None, summary: PollSummary
) -> Seen:
    """Read each source branch's head; start a deploy of each head that moved since the last poll."""
    logger = get_run_logger()
    seen = Seen(target=name)
    for source, repo in target.sources.items():
        where = f"{repo.repository}@{repo.branch}"
        before = previous.branches.get(source.value) if previous else None
        if before is not None and (before.repository, before.branch) != (repo.repository, repo.branch):
            before = None  # the target follows another repository or branch now: a new baseline for it
        try:
            head = github.branch_head_if_changed(repo.repository, repo.branch, before.etag if before else None)
            if before is None:
                if head.sha is None:
                    raise PollFailed(f"GitHub answered 304 to an unconditional read of {where}")
                seen.branches[source.value] = SeenBranch(
                    repository=repo.repository, branch=repo.branch, sha=head.sha, etag=head.etag
                )
                if previous is not None:
                    summary.baselines.append(f"{name}: {source.value} {where}")
                logger.info("Baseline: %s %s is at %s", source.value, where, head.sha[:12])
                continue
            if head.sha is None or head.sha == before.sha:
                seen.branches[source.value] = before.model_copy(update={"etag": head.etag})
                summary.unchanged.append(where)
                how = "304" if head.sha is None else "read again"
                logger.info("Unchanged: %s %s at %s (%s)", source.value, where, before.sha[:12], how)
                continue
            logger.info("New head: %s %s moved %s -> %s", source.value, where, before.sha[:12], head.sha[:12])
            change = Change(
                deployment=deployment,
                parameters={"source": source.value, "sha": head.sha, "target": name},
                idempotency_key=f"poll-{target.environment}-{source.value}-{head.sha}",
                what=f"{source.value}@{head.sha[:12]}",
            )
            start(change, summary)
            seen.branches[source.value] = SeenBranch(
                repository=repo.repository, branch=repo.branch, sha=head.sha, etag=head.etag
            )
        except Exception as error:  # keep what was seen, so that the next poll reads and tries it again
            logger.error("Polling %s %s failed: %s", source.value, where, error)
            summary.errors.append(f"{name}: {where}: {error}")
            if before is not None:
                seen.branches[source.value] = before
    return seen


def poll_tags(
    github: GitHubClient, name: str, target: StackTarget, deployment: str, previous: Seen | None, summary: PollSummary
) -> Seen:
    """Read the stack repository's tags; start a deploy of the newest production-grade tag newer than any seen."""
    logger = get_run_logger()
    repository = target.stack_repository
    before = previous.tags if previous else None
    if before is not None and before.repository != repository:
        before = None  # the target's stack repository changed: a new baseline
    seen = Seen(target=name, tags=before)
    try:
        listing = github.tags_if_changed(repository, before.pages if before else ())
        grade = sorted(
            (tag.name for tag in listing.tags if is_production_grade(tag.name, target.tag_pattern)), key=version_key
        )
        if before is None:
            newest = grade[-1] if grade else None
            seen.tags = SeenTags(repository=repository, newest=newest, pages=listing.pages)
            if previous is not None:
                summary.baselines.append(f"{name}: tags of {repository}")
            logger.info("Baseline: the newest production-grade tag of %s is %s", repository, newest or "none")
            return seen
        if not listing.changed:
            summary.unchanged.append(f"{repository} tags")
            logger.info("Unchanged: tags of %s (304); newest production-grade %s", repository, before.newest or "none")
            return seen
        others = sorted({tag.name for tag in listing.tags} - set(grade))
        if others:
            logger.info("Not production-grade (ignored): %s", ", ".join(others))
        newer = [tag for tag in grade if before.newest is None or version_key(tag) > version_key(before.newest)]
        if not newer:
            seen.tags = before.model_copy(update={"pages": listing.pages})
            summary.unchanged.append(f"{repository} tags")
            logger.info("No production-grade tag of %s newer than %s", repository, before.newest or "none")
            return seen
        newest = newer[-1]
        if len(newer) > 1:
            logger.info("Several new production-grade tags (%s): starting only the newest", ", ".join(newer))
        logger.info("New production-grade tag: %s of %s (newest before: %s)", newest, repository, before.newest)
        start(
            Change(
                deployment=deployment,
                parameters={"tag": newest, "target": name},
                idempotency_key=f"poll-{target.environment}-tag-{newest}",
                what=f"tag {newest}",
            ),
            summary,
        )
        seen.tags = SeenTags(repository=repository, newest=newest, pages=listing.pages)
    except Exception as error:  # keep what was seen, so that the next poll reads and tries it again
        logger.error("Polling the tags of %s failed: %s", repository, error)
        summary.errors.append(f"{name}: tags of {repository}: {error}")
    return seen


def start(change: Change, summary: PollSummary) -> None:
    """Start a run of the change's deployment, unless one with the same parameters exists already (started by a
    webhook's trigger, an earlier poll, or by hand)."""
    logger = get_run_logger()
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(change.deployment)
        except ObjectNotFound:
            raise PollFailed(f"no deployment {change.deployment!r} to start for {change.what}") from None
        existing = find_run(client, deployment.id, change.parameters)
        delivered = None if existing is not None else recent_push_event(client, change.parameters)
    if delivered is not None:
        logger.info(
            "Not starting %s for %s: its webhook arrived at %s (event %s), and that event's trigger starts the run",
            change.deployment, change.what, delivered.occurred.isoformat(), delivered.id,
        )  # fmt: skip
        summary.already_started.append(f"{change.deployment} {change.what}: webhook event {delivered.id}")
        return
    if existing is not None:
        logger.info(
            "Not starting %s for %s: run %r (%s) already deploys it", change.deployment, change.what, existing.name,
            existing.state_name,
        )  # fmt: skip
        summary.already_started.append(f"{change.deployment} {change.what}: {existing.name} ({existing.id})")
        return
    # as_subflow=False: the deploy is not the poll's child, so that cancelling or losing a poll leaves it alone
    run = cast(
        FlowRun,
        run_deployment(
            name=change.deployment,
            parameters=change.parameters,
            timeout=0,
            idempotency_key=change.idempotency_key,
            as_subflow=False,
        ),
    )
    logger.info("Started %s run %r for %s: %s", change.deployment, run.name, change.what, url_for(run) or run.id)
    summary.started.append(
        StartedRun(
            deployment=change.deployment, parameters=change.parameters, flow_run_id=str(run.id), flow_run_name=run.name
        )
    )


def find_run(client: SyncPrefectClient, deployment_id: Any, parameters: dict[str, str]) -> FlowRun | None:
    """The newest of the deployment's recent runs (any state) that deploys the same change: the same ``sha`` and
    ``source``, or the same ``tag``, for the same target (a run that names no target uses the deployment's)."""
    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=RECENT_RUNS,
    )
    return next((run for run in runs if same_change(run.parameters, parameters)), None)


def recent_push_event(client: SyncPrefectClient, parameters: dict[str, str]) -> Any:
    """The newest push event (as the webhook receiver posts it) of the last ``WEBHOOK_GRACE`` that carries the same
    change, or None. Its payload names the change as a run's parameters do (``source``, ``sha``, ``tag``,
    ``target``)."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    since = EventOccurredFilter.model_validate({"since": datetime.now(UTC) - WEBHOOK_GRACE})
    filter = EventFilter(event=EventNameFilter(name=[GITHUB_PUSH]), occurred=since)
    page = client.read_events(filter, limit=50)  # the server's largest page
    while True:
        found = next((event for event in page.events if same_change(dict(event.payload), parameters)), None)
        if found is not None or page.next_page is None:
            return found
        page = client.read_events_page(str(page.next_page))


def same_change(existing: dict[str, Any], wanted: dict[str, str]) -> bool:
    """Whether a run's parameters deploy the ``wanted`` change (shas compared without case)."""
    for key, value in wanted.items():
        if key == "target" and existing.get(key) in (None, ""):
            continue
        found = existing.get(key)
        if found is None or str(found).lower() != value.lower():
            return False
    return True
