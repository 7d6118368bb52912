"""One deploy per environment, newest wins.

Every deploy of an environment (staging commits, production tags, first deployments; a developer stack is its own
environment) holds the one slot of the global concurrency limit ``fragalysis-env-<environment>`` (``strict``:
created on demand with limit 1) while it touches anything remote. A deploy that holds it keeps going. Of the runs
waiting for it only the newest goes on: a waiting run that sees a newer deploy of its environment ends Cancelled
"superseded by <run>" having done nothing remote (also when that newer deploy has ended already: an older change
never goes over a newer one, however late its process started), and a new deploy supersedes the older ones that
wait for an approval (suspended: no process to notice). "Newer" is by ``requested``: when the change was pushed, as
the webhook triggers pass it, else when the run was created.

Prefect's deployment ``concurrency_limit`` cannot do this (ENQUEUE runs them all, in order; CANCEL_NEW keeps the
oldest), so the staging and production deployments have none. A waiting run tries for the slot once every
``POLL_SECONDS`` (Prefect's own retry waits up to 30 s, the server's cap), so the newest starts within about that
of the environment freeing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, cast
from uuid import UUID

import httpx
from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import ConcurrencyLeaseHolder, FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.context import ConcurrencyContext
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.states import Cancelled

from blocks import StackTarget
from flows import launches
from flows.events import GITHUB_PUSH
from flows.names import per_environment
from flows.notify import notify_outcome
from flows.report import DeploymentOutcome, DeploymentReport

DEPLOY_FLOWS = ("deploy-to-staging", "deploy-to-production", "first-deploy")
"""The flows that deploy; each takes the ``StackTarget`` block's name as its ``target`` parameter."""

DEFAULT_TARGETS = {"deploy-to-staging": "staging", "deploy-to-production": "production", "first-deploy": "staging"}

WAITING = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]
"""A deploy in one of these states has not ended (PAUSED includes a run suspended for its approval)."""

SUPERSEDING = [*WAITING, StateType.COMPLETED, StateType.FAILED, StateType.CRASHED]
"""A newer deploy in one of these states supersedes an older one that has not started yet: it waits, runs, or has
deployed (or tried to). A newer deploy that has ended already counts too: otherwise an older run whose process started
late would deploy its older change over the newest one. A Cancelled one does not (it did nothing, or was stopped;
if it was superseded, the deploy that superseded it is newer still)."""

POLL_SECONDS = 2.0
"""How often a waiting deploy tries for the slot and looks for a newer deploy (two light API calls)."""

RUN_GRACE_SECONDS = 60.0
"""How long a waiting deploy waits for the run of a newer push (its event in, its run not yet created) before it
goes on; a run that never comes is the poller's to catch up."""

SOON = timedelta(seconds=30)
"""A run scheduled further ahead than this is a plan, not a waiting deploy: it supersedes nothing yet."""


class Superseded(Exception):
    """A newer deploy of the environment is waiting: this one ends Cancelled without doing anything remote."""

    def __init__(self, newer: FlowRun) -> None:
        super().__init__(f"superseded by {describe(newer)}")
        self.newer = newer


def describe(run: FlowRun) -> str:
    """What a deploy run carries, from its parameters (its name is not set until it starts): ``frontend@1a2b3c4
    (flow run <id>)``, ``1.0.4 (flow run <id>)``."""
    parameters = run.parameters or {}
    if parameters.get("tag"):
        change = str(parameters["tag"])
    elif parameters.get("sha") or parameters.get("source"):
        change = f"{parameters.get('source', 'frontend')}@{str(parameters.get('sha') or 'head')[:7]}"
    else:
        change = run.name
    return f"{change} (flow run {run.id})"


def limit_name(environment: str) -> str:
    """``fragalysis-env-staging`` (concurrency limit names: letters, digits, dashes, underscores)."""
    return per_environment("env", environment)


def ensure_limit(environment: str) -> str:
    """Create the environment's global concurrency limit (one slot) unless it exists; returns its name."""
    name = limit_name(environment)
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except ObjectAlreadyExists:
                pass  # another deploy created it first
    return name


@dataclass(frozen=True)
class Me:
    """The run asking for the environment: its id and when its change was requested (which decides who is newer)."""

    id: UUID
    change: str
    """What it carries, as ``describe`` says it."""
    requested: datetime

    @classmethod
    def current(cls) -> Me:
        """The flow run this code runs in."""
        from prefect.runtime import flow_run

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(str(flow_run.id)))
        return cls(run.id, describe(run).rpartition(" (flow run ")[0], requested(run))


def requested(run: FlowRun) -> datetime:
    """When a deploy's change was asked for: its ``requested_at`` parameter (the webhook triggers pass the push's
    arrival, since Prefect's automations may create the runs of quick pushes in another order), else when the run was
    created."""
    value = (run.parameters or {}).get("requested_at")
    if isinstance(value, datetime):
        found: datetime | None = value
    else:
        try:
            found = datetime.fromisoformat(str(value)) if value else None
        except ValueError:
            found = None
    if found is not None and found.tzinfo is None:
        found = found.replace(tzinfo=UTC)
    return found or run.created or datetime.now(UTC)


@contextmanager
def hold(environment: str, me: Me, *, poll_seconds: float = POLL_SECONDS) -> Iterator[None]:
    """Hold the environment's slot for the body; before that, supersede the older deploys waiting for an approval,
    and wait for the slot unless a newer deploy of the environment appears (then raise ``Superseded``)."""
    logger = get_run_logger()
    name = ensure_limit(environment)
    for older in _older_suspended(environment, me):
        _supersede(older, me)
    _release_own_lease(me)
    logged = False
    awaited: dict[str, float] = {}
    while True:
        newer = newest_newer(environment, me)
        if newer is not None:
            raise Superseded(newer)
        if _run_being_created(environment, me, awaited):
            time.sleep(poll_seconds)
            continue
        stack = ExitStack()
        try:
            stack.enter_context(
                concurrency(
                    name,
                    occupy=1,
                    strict=True,
                    max_retries=0,
                    holder=ConcurrencyLeaseHolder(type="flow_run", id=me.id),
                )
            )
        except ConcurrencySlotAcquisitionError as error:
            if not _locked(error):
                raise
            if not logged:
                logger.info("Waiting for %s: another deploy holds it (limit %s)", environment, name)
                logged = True
            time.sleep(poll_seconds)
            continue
        try:
            with stack:
                newer = newest_newer(environment, me)  # it may have arrived while this one acquired the slot
                if newer is not None:
                    raise Superseded(newer)
                logger.info("Holding %s (limit %s)", environment, name)
                context = ConcurrencyContext.get()
                lease = context.cleanup_lease_ids[-1] if context is not None and context.cleanup_lease_ids else None
                if lease is not None:  # the lease just acquired (Prefect 3.9 lists it there until released)
                    launches.holding(str(me.id), str(lease))
                try:
                    yield
                except Exception:
                    raise  # a failed run's record is forgotten right after, as a completed run's (see below)
                except BaseException:
                    # suspended (Pause) or stopped: the record outlives the slot, so it must not name the lease
                    if lease is not None:
                        launches.holding(str(me.id), None)
                    raise
                # a run that ends, completed or failed, has its record forgotten by the pipeline once the slot is
                # released: clearing the lease here too was two more requests on the way to the run's end
        finally:
            logger.info("Released %s (limit %s)", environment, name)
        return


def _release_own_lease(me: Me) -> None:
    """A retry of a run whose process died while it held the environment: release the lease it left (the server
    would only after the lease expired; the retry, the same deploy, would wait for itself until then)."""
    record = launches.recall(str(me.id))
    if record is None or record.lease_id is None:
        return
    try:
        with get_client(sync_client=True) as client:
            client.release_concurrency_slots_with_lease(lease_id=UUID(record.lease_id))
    except Exception as error:  # expired and revoked already: nothing held
        get_run_logger().info("The lease %s this run held before is gone: %s", record.lease_id, error)
    else:
        get_run_logger().info("Released the environment's slot this run held when its process stopped")


def _run_being_created(environment: str, me: Me, awaited: dict[str, float]) -> bool:
    """Whether a push for ``environment`` newer than ``me`` arrived (its webhook's event is in) whose run Prefect's
    automation has not created yet (that takes a few seconds, more on a loaded server): then this run waits for it,
    up to ``RUN_GRACE_SECONDS`` per push, rather than deploy an older change first. ``awaited``: when each push was
    first seen waiting (by event id)."""
    for event in _newer_pushes(environment, me):
        if _has_run(environment, dict(event.payload)):
            continue
        payload = dict(event.payload)
        change = payload.get("tag") or f"{payload.get('source')}@{str(payload.get('sha'))[:7]}"
        if str(event.id) not in awaited:
            awaited[str(event.id)] = time.monotonic()
            get_run_logger().info("A newer push for %s (%s) has no run yet: waiting for it", environment, change)
        if time.monotonic() - awaited[str(event.id)] < RUN_GRACE_SECONDS:
            return True
        get_run_logger().warning(
            "The newer push for %s (%s, event %s) has had no run for %.0f s: going on", environment, change, event.id,
            RUN_GRACE_SECONDS,
        )  # fmt: skip
    return False


def _newer_pushes(environment: str, me: Me) -> list[Any]:
    """The push events for ``environment`` whose ``pushed_at`` is after ``me`` was requested, newest first."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter
    from prefect.events.schemas.events import ResourceSpecification

    since = EventOccurredFilter.model_validate({"since": me.requested - timedelta(seconds=1)})
    labels = ResourceSpecification({"fragalysis.environment": environment})
    filter = EventFilter(
        event=EventNameFilter(name=[GITHUB_PUSH]), occurred=since, resource=EventResourceFilter(labels=labels)
    )
    with get_client(sync_client=True) as client:
        events = client.read_events(filter, limit=50).events
    return [event for event in events if _pushed_at(event.payload) > me.requested]


def _pushed_at(payload: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(payload.get("pushed_at")))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def _has_run(environment: str, payload: dict[str, Any]) -> bool:
    """Whether a deploy run of ``environment`` (any state) carries the push's change (its sha, or its tag)."""
    for run in _deploys(environment, list(StateType)):
        parameters = run.parameters or {}
        if payload.get("tag"):
            if parameters.get("tag") == payload["tag"]:
                return True
        elif str(parameters.get("sha") or "").lower() == str(payload.get("sha") or "").lower():
            return True
    return False


def newest_newer(environment: str, me: Me) -> FlowRun | None:
    """The newest deploy of ``environment`` requested after ``me`` that waits, runs or has deployed, if any."""
    newer = [run for run in _deploys(environment, SUPERSEDING) if requested(run) > me.requested and run.id != me.id]
    return max(newer, key=requested, default=None)


def _older_suspended(environment: str, me: Me) -> list[FlowRun]:
    return [
        run for run in _deploys(environment, [StateType.PAUSED]) if run.id != me.id and requested(run) < me.requested
    ]


def _supersede(run: FlowRun, me: Me) -> None:
    """End an older run that waits for an approval (it has no process to notice): Cancelled, and its event."""
    from prefect.events import emit_event

    message = f"superseded by {me.change} (flow run {me.id})"
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelled(message=message), force=True)
    environment = _environment_of(run)
    emit_event(
        event="fragalysis.deployment.superseded",
        resource={
            "prefect.resource.id": f"fragalysis.stack.{environment}",
            "prefect.resource.name": f"Fragalysis Stack ({environment})",
        },
        payload={
            "environment": environment,
            "outcome": "superseded",
            "run_id": str(run.id),
            "superseded_by": str(me.id),
            "error": message,
            **_change(run),
        },
    )
    get_run_logger().info("Superseded %s, which waited for an approval", describe(run))
    target = _target(str((run.parameters or {}).get("target") or ""))
    if target is not None:
        _announce(run, target, message)


def _announce(run: FlowRun, target: StackTarget, message: str) -> None:
    """The notification that the superseded run would have sent had it had a process (when its target opts in)."""
    parameters = run.parameters or {}
    report = DeploymentReport(
        environment=target.environment,
        source=str(parameters.get("source") or "stack"),
        sha=parameters.get("sha"),
        tag=parameters.get("tag"),
        image=target.image,
        outcome=DeploymentOutcome.SUPERSEDED,
        error=message,
        run_id=str(run.id),
    )
    notify_outcome(report, target)


def _change(run: FlowRun) -> dict[str, Any]:
    parameters = run.parameters or {}
    return {key: parameters[key] for key in ("sha", "tag", "source") if key in parameters}


def _deploys(environment: str, states: list[StateType]) -> list[FlowRun]:
    now = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(DEPLOY_FLOWS))),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states))),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,  # the newest first: it is the newest that matter
            limit=200,
        )
    names = _deploy_flow_names()
    found = []
    for run in runs:
        planned = run.expected_start_time is not None and run.expected_start_time > now + SOON
        if run.state is not None and run.state.is_scheduled() and planned:
            continue
        if _environment_of(run, names.get(run.flow_id, "")) == environment:
            found.append(run)
    return found


@lru_cache(maxsize=1)
def _deploy_flow_names() -> dict[UUID, str]:
    with get_client(sync_client=True) as client:
        flows = client.read_flows(flow_filter=FlowFilter(name=FlowFilterName(any_=list(DEPLOY_FLOWS))))
    return {flow.id: flow.name for flow in flows}


def _environment_of(run: FlowRun, flow_name: str = "") -> str:
    parameters = run.parameters or {}
    target = parameters.get("target") or DEFAULT_TARGETS.get(flow_name, "")
    found = _target(str(target)) if target else None
    return found.environment if found is not None else ""


@lru_cache(maxsize=256)
def _target(block_name: str) -> StackTarget | None:
    if not block_name:
        return None
    try:
        return cast(StackTarget, StackTarget.load(block_name))
    except (ValueError, ObjectNotFound):
        return None


def _locked(error: ConcurrencySlotAcquisitionError) -> bool:
    cause = error.__cause__
    return isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423
