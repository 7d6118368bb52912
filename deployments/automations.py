"""The overdue automation: a deploy still running past its target's total budget fires, posts an event, and (when a
notification block is configured) notifies through it, naming the environment, the change, the digest, the stage and
the run's URL.

How Prefect 3.9.1 evaluates it (``prefect/server/events/triggers.py``, ``models/automation_held_events.py``), and
why the trigger is written as it is:

- A proactive trigger with ``after`` opens one window (a "bucket") per ``for_each`` key, here per flow run, when an
  ``after`` event arrives (``ensure_bucket``: an existing bucket is kept as it is). Each ``expect`` event adds one
  to the bucket's count. When the window has run out (``end <= now``) with a count below the threshold (1), it
  fires, once, and the bucket is removed. Windows are checked every ``PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY``
  (5 s), so it fires between ``within`` and ``within`` + 5 s after the run started Running.
- Approval waits do not count: Suspended and Paused are ``expect``\\ ed like the terminal states, so a run waiting
  for its approval fills its window and never fires for it. A resumed run goes Running again; as
  ``prefect.flow-run.Running`` is both ``after`` and ``expect``, that event closes the filled window and opens a
  fresh one from the resume (the "same event in after and expect" case of ``evaluate``), whether or not the old
  window has run out; an ``expect`` event from before the resume is held but counts only for windows that open
  before it occurred. So the budget is counted again from the resume: the time before the approval is not added
  (a proactive trigger cannot sum), and an overdue warning after an approval means the deploy alone ran past it.
  Only Running starts a window: a run that is Scheduled, Pending, or waiting for an environment is not overdue.
  One race is left: a resume within the 5 s after the old window ran out, before the server removed it, is not
  watched (the expired bucket is removed by that event instead).
- The server refuses a proactive ``within`` under 10 s; a budget below that is clamped to 10 s, and a warning says
  so (a sandbox at a speed over 90 has a total budget under 10 s).
- When it fires, the triggers service posts ``prefect.automation.triggered`` (resource ``prefect.automation.<id>``,
  named as the automation; payload ``triggering_labels`` = ``{"prefect.resource.id": "prefect.flow-run.<id>"}`` and
  the ``triggering_event``, the run's Running event), then the actions service posts
  ``prefect.automation.action.triggered`` and ``.executed`` (or ``.failed``) for the notification. Those are the
  overdue events: ``overdue_events`` reads them.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.events.actions import DoNothing, SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound

from blocks import StackTarget
from flows.notify import OVERDUE_SUBJECT, overdue_body

logger = logging.getLogger(__name__)

MINIMUM_WITHIN = 10.0
"""Seconds: the Prefect server refuses a shorter window for a proactive trigger."""

STARTS = {"prefect.flow-run.Running"}
"""A window opens (again) when the run starts running, or runs again after a pause or a suspension."""

ENDS = {
    "prefect.flow-run.Running",
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Crashed",
    "prefect.flow-run.Cancelling",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Paused",
    "prefect.flow-run.Suspended",
}
"""What closes a window: the end of the run, a pause or suspension (an approval wait), or running again."""


def overdue_automation_name(deployment_id: UUID) -> str:
    return f"fragalysis: deploy overdue (deployment {deployment_id})"


def overdue_window(target: StackTarget) -> float:
    """The seconds a run may stay Running: the target's total budget (real seconds, already divided by a sandbox's
    speed), at least the server's minimum."""
    total = target.budgets.total
    if total < MINIMUM_WITHIN:
        logger.warning(
            "%s's total budget is %.1f s: Prefect refuses a proactive window under %.0f s, so its deploys are "
            "overdue after %.0f s",
            target.environment,
            total,
            MINIMUM_WITHIN,
            MINIMUM_WITHIN,
        )
        return MINIMUM_WITHIN
    return total


def overdue_automation(
    deployment_id: UUID, target: StackTarget, notification_block_id: UUID | None = None
) -> AutomationCore:
    """The automation (not saved): see ``ensure_overdue_automation``."""
    within = overdue_window(target)
    if notification_block_id is not None:
        actions: list[Any] = [
            SendNotification(
                block_document_id=notification_block_id,
                subject=OVERDUE_SUBJECT,
                body=overdue_body(target.budgets.total, target.time_scale),
            )
        ]
    else:
        actions = [DoNothing()]  # the firing still posts prefect.automation.triggered
    clamped = "" if within == target.budgets.total else f" (clamped from {target.budgets.total:g} s)"
    return AutomationCore(
        name=overdue_automation_name(deployment_id),
        description=(
            f"A {target.environment} deploy still Running {within:g} s{clamped} after it started (or resumed after "
            "an approval) is overdue: its total budget has run out. Approval waits do not count."
            + (
                " Notifies through the target's notification block."
                if notification_block_id
                else " No action (the UI shows an empty one): the firing itself is the event "
                "prefect.automation.triggered; give the target a notification_block to be told."
            )
        ),
        trigger=EventTrigger(
            posture=Posture.Proactive,
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.id": f"prefect.deployment.{deployment_id}"},
            after=STARTS,
            expect=ENDS,
            for_each={"prefect.resource.id"},
            threshold=1,
            within=timedelta(seconds=within),
        ),
        actions=actions,
    )


def ensure_overdue_automation(
    deployment_id: UUID, target: StackTarget, notification_block_id: UUID | None = None
) -> UUID:
    """Create, or update in place (found by its name, one per deployment), the proactive automation that fires when
    a run of the deployment is still Running past ``target.budgets.total`` (approval waits excluded; see the
    module's notes). It posts ``prefect.automation.triggered`` and, with a notification block, notifies through
    it. ``notification_block_id``: the block document to notify through; None: the target's
    ``notification_block`` when its ``notify_on`` has ``overdue``, else no notification. Returns the automation's
    id."""
    if notification_block_id is None and target.notifies("overdue"):
        notification_block_id = notification_block_document_id(target)
    automation = overdue_automation(deployment_id, target, notification_block_id)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(automation.name)
        if not existing:
            return client.create_automation(automation)
        keep, *extra = existing
        for duplicate in extra:
            client.delete_automation(duplicate.id)
        client.update_automation(keep.id, automation)
        return keep.id


def notification_block_document_id(target: StackTarget) -> UUID:
    """The block document id of the target's notification block (``<block type slug>/<block name>``)."""
    if target.notification_block is None:
        raise ValueError(f"{target.environment} has no notification block")
    slug, _, name = target.notification_block.partition("/")
    with get_client(sync_client=True) as client:
        try:
            return client.read_block_document_by_name(name=name, block_type_slug=slug, include_secrets=False).id
        except ObjectNotFound:
            raise ValueError(
                f"{target.environment}'s notification block {target.notification_block} does not exist: save it "
                "first (e.g. SlackWebhook(url=...).save(name))"
            ) from None


def overdue_events(automation_id: UUID) -> list[Any]:
    """The ``prefect.automation.triggered`` events of the overdue automation, newest first (at most 50): each
    one's ``payload["triggering_labels"]["prefect.resource.id"]`` names the overdue flow run."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    with get_client(sync_client=True) as client:
        page = client.read_events(
            EventFilter(
                event=EventNameFilter(name=["prefect.automation.triggered"]),
                resource=EventResourceFilter(id=[f"prefect.automation.{automation_id}"]),
            ),
            limit=50,
        )
    return sorted(page.events, key=lambda event: event.occurred, reverse=True)
