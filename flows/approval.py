"""Approval of a production deployment, decided in the Prefect UI.

FACTS.md (Prefect 3.9.1): a run that calls ``pause_flow_run`` inside a concurrency-limited deployment gives its slot
back, its lease renewal then fails and the run ends Crashed; ``suspend_flow_run`` ends the process instead, holds no
slot or worker while it waits, and on resume runs the flow again from the top, where the same ``key`` returns the
stored answer at once. So a run of a deployment is suspended (what comes before the question must be cheap re-checked
reads; the key carries the digest, so a digest that changed since the question was asked asks again). Prefect
refuses to suspend a run that has no deployment: a plain Python call pauses in its own process instead, and says so.

A suspended run only times out through the server's pause-expiry service, which fails it; the proactive automation
``ensure_timeout_automation`` resumes it with the defaults first, so that the flow can end Cancelled with "no
decision within ...".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from pydantic import Field

from flows.report import DeploymentOutcome, DeploymentStopped
from flows.timing import format_seconds


class Approval(RunInput):
    """The decision on a production deployment: the form of the Resume dialog in the Prefect UI."""

    decision: Literal["undecided", "approve", "reject"] = Field(
        default="undecided",
        description="approve: deploy this release; reject: deploy nothing (the run ends Cancelled)",
    )
    who: str = Field(default="", description="Who decides (the open-source Prefect server has no user identity)")
    comment: str = Field(default="", description="Why")


@dataclass(frozen=True)
class Decision:
    """What was decided, by whom, and when the question was asked and answered (from the run's own states)."""

    approved: bool
    who: str
    comment: str
    asked_at: datetime | None
    answered_at: datetime | None

    @property
    def waited(self) -> float | None:
        if self.asked_at is None or self.answered_at is None:
            return None
        return max(0.0, (self.answered_at - self.asked_at).total_seconds())

    def describe(self) -> str:
        verb = "approved" if self.approved else "rejected"
        who = self.who or "someone"
        return f"{verb} by {who}" + (f": {self.comment}" if self.comment else "")


def ask(question: str, *, key: str, timeout_seconds: float, time_scale: float = 1.0) -> Decision:
    """Ask for a decision and wait for it without holding a worker (suspend) when the run has a deployment, or in
    this process (pause) when it has none.

    Raises:
        DeploymentStopped: rejected (outcome ``rejected``), or no decision within ``timeout_seconds`` (``cancelled``).
    """
    logger = get_run_logger()
    context = FlowRunContext.get()
    flow_run = context.flow_run if context else None
    if flow_run is None:
        raise RuntimeError("an approval is asked for inside a flow run")
    form = Approval.with_initial_data(description=question, decision="undecided", who="", comment="")
    waited_too_long = f"no decision within {_duration(timeout_seconds, time_scale)}"
    try:
        if flow_run.deployment_id is not None:
            logger.info("Waiting for approval in the Prefect UI (the run is suspended: it holds no worker)")
            # the server's pause expiry is the backstop; the timeout automation resumes the run first
            answer = suspend_flow_run(wait_for_input=form, timeout=int(timeout_seconds) + 60, key=key)
        else:
            logger.info(
                "Waiting for approval in the Prefect UI in this process: a run without a deployment cannot be "
                "suspended (run it through its deployment to hold no process while it waits)"
            )
            answer = pause_flow_run(wait_for_input=form, timeout=int(timeout_seconds), poll_interval=1, key=key)
    except FlowPauseTimeout:
        raise DeploymentStopped(DeploymentOutcome.CANCELLED, waited_too_long) from None
    asked_at, answered_at = _pause_times(flow_run.id)
    decision = Decision(
        approved=answer.decision == "approve",
        who=answer.who.strip(),
        comment=answer.comment.strip(),
        asked_at=asked_at,
        answered_at=answered_at,
    )
    if decision.approved:
        logger.info("Approved: %s", decision.describe())
        return decision
    if answer.decision == "reject":
        raise DeploymentStopped(DeploymentOutcome.REJECTED, decision.describe())
    waited = decision.waited
    if waited is not None and waited >= timeout_seconds:
        raise DeploymentStopped(DeploymentOutcome.CANCELLED, waited_too_long)
    who = f" by {decision.who}" if decision.who else ""
    raise DeploymentStopped(DeploymentOutcome.CANCELLED, f"resumed{who} without a decision")


def _pause_times(flow_run_id: UUID) -> tuple[datetime | None, datetime | None]:
    """When the run last paused (the question) and the state after it (the answer), from its state history."""
    with get_client(sync_client=True) as client:
        states = sorted(client.read_flow_run_states(flow_run_id), key=lambda state: state.timestamp)
    paused = [index for index, state in enumerate(states) if state.is_paused()]
    if not paused:
        return None, None
    last = paused[-1]
    answered = states[last + 1].timestamp if last + 1 < len(states) else None
    return states[last].timestamp, answered


def _duration(seconds: float, time_scale: float) -> str:
    """``24 h``, ``90 min``, ``45 s``; with the modelled time at a sandbox's speed."""

    def plain(value: float) -> str:
        if value >= 3600 and value % 3600 == 0:
            return f"{value / 3600:g} h"
        if value >= 60 and value % 60 == 0:
            return f"{value / 60:g} min"
        return format_seconds(value)

    if time_scale == 1:
        return plain(seconds)
    return f"{plain(seconds)} ({plain(seconds * time_scale)} at speed {time_scale:g})"


def ensure_timeout_automation(deployment_id: UUID, timeout_seconds: float) -> UUID:
    """The automation that resumes a suspended run of the deployment with the form's defaults (no decision) when
    nobody decided within ``timeout_seconds``, so that the flow ends Cancelled "no decision within ..." rather than
    the server's pause expiry failing it. Made once per deployment (an existing one of the same name is replaced).
    """
    from datetime import timedelta

    from prefect.events.actions import ResumeFlowRun
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    name = f"fragalysis: no approval decision within {timeout_seconds:g} s (deployment {deployment_id})"
    automation = AutomationCore(
        name=name,
        description="Resumes a production run that waited too long for its approval; the run then ends Cancelled.",
        trigger=EventTrigger(
            posture=Posture.Proactive,
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.id": f"prefect.deployment.{deployment_id}"},
            after={"prefect.flow-run.Suspended"},
            expect={
                "prefect.flow-run.Resuming",
                "prefect.flow-run.Cancelling",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Crashed",
            },
            for_each={"prefect.resource.id"},
            threshold=1,
            within=timedelta(seconds=timeout_seconds),
        ),
        actions=[ResumeFlowRun()],  # the run the trigger fired for
    )
    with get_client(sync_client=True) as client:
        for existing in client.read_automations_by_name(name):
            client.delete_automation(existing.id)
        return client.create_automation(automation)
