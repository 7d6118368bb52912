"""The tag -> production flow: a production-grade tag of the stack repository carried to verified pods of the
production stack, after an approval in the Prefect UI, rolled back to the last good tag when its roll-out fails.

From Python (a plain call pauses in this process for the approval; run it through its deployment to hold nothing)::

    from flows.production import deploy_to_production
    state = deploy_to_production(tag="1.2.3", return_state=True)
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Cancelled

from blocks import Mode
from flows import inputs, launches
from flows.pipeline import deploy_tag
from flows.report import DeploymentReport, DeploymentStopped


def _run_name() -> str:
    parameters = flow_run.parameters
    tag = str(parameters.get("tag", ""))
    shown = tag if len(tag) <= 40 and tag.isprintable() else repr(tag[:37]) + "..."
    return f"{str(parameters.get('target', 'production'))[:64]} <- {shown}"


@flow(
    name="deploy-to-production",
    flow_run_name=_run_name,
    persist_result=True,
    on_cancellation=[launches.on_cancellation],
)
def deploy_to_production(
    tag: str,
    target: str = "production",
    mode: Mode | None = None,
    allow_downgrade: bool = False,
    requested_at: datetime | None = None,
) -> DeploymentReport | State[None]:
    """Deploy a production-grade tag to production.

    A rejection, no decision in time, or a newer tag come while it waited ends the run Cancelled and deploys
    nothing; a failed roll-out rolls back to the last good tag and ends the run Failed, saying whether the rollback
    was verified.

    Args:
        tag: the stack repository's tag, e.g. ``1.2.3`` (only production-grade tags go on).
        target: the name of the production ``StackTarget`` block.
        mode: override the target's mode (``orchestrate`` or ``observe``).
        allow_downgrade: deploy a tag older than the one production runs now (a rollback by hand).
        requested_at: when the tag was pushed (the webhook trigger passes it); of the deploys waiting for production
            the newest request goes on. Empty: when this run was created.
    """
    stack_target = inputs.load_target(target)  # the tag policy is checked next, before any request
    try:
        return deploy_tag(stack_target, tag=tag, mode=mode, allow_downgrade=allow_downgrade)
    except DeploymentStopped as stopped:
        return Cancelled(message=str(stopped))
