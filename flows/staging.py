"""The commit -> staging flow: a frontend or backend ``staging`` commit, or a stack ``master`` commit, carried to
verified pods of the staging stack, every stage timed against the ~15-minute target in the Prefect UI.

From Python::

    from flows.staging import deploy_to_staging
    report = deploy_to_staging(source="frontend", sha="1a2b3c4...")
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Cancelled

from blocks import Mode, Source
from flows import inputs, launches
from flows.pipeline import deploy_commit
from flows.report import DeploymentReport, DeploymentStopped


def _run_name() -> str:
    parameters = flow_run.parameters
    sha = parameters.get("sha")
    where = str(sha)[:7] if sha else "head"
    # cut to size: a refused parameter may be anything (the run fails at its "input" stage, under this name)
    target, source = str(parameters.get("target", "staging")), str(parameters.get("source", Source.FRONTEND))
    return f"{target[:64]} <- {source[:16]}@{where}"


@flow(
    name="deploy-to-staging",
    flow_run_name=_run_name,
    persist_result=True,
    on_cancellation=[launches.on_cancellation],
)
def deploy_to_staging(
    source: Source = Source.FRONTEND,
    sha: str | None = None,
    target: str = "staging",
    mode: Mode | None = None,
    requested_at: datetime | None = None,
) -> DeploymentReport | State[None]:
    """Deploy a commit to staging. A newer deploy of the environment, come while this one waited for it, ends it
    Cancelled ("superseded by <run>") before it does anything.

    Args:
        source: the repository the commit is on: frontend or backend (branch ``staging``), or stack (``master``).
        sha: the commit; empty: the branch's head.
        target: the name of the ``StackTarget`` block to deploy to.
        mode: override the target's mode: ``orchestrate`` (dispatch and launch) or ``observe`` (follow what the
            repositories' own workflows do).
        requested_at: when the change was pushed (the webhook triggers pass it); of the deploys waiting for the
            environment the newest request goes on. Empty: when this run was created.
    """
    stack_target = inputs.load_target(target)  # a bad sha or source is refused next, before any request
    try:
        return deploy_commit(stack_target, source=source, sha=sha, mode=mode)
    except DeploymentStopped as stopped:
        return Cancelled(message=str(stopped))
