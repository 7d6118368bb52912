"""The first deployment of a stack: the one-time AWX template ("Staging Fragalysis Stack", "Production Fragalysis
Stack", or a developer's "User (<user>) Developer Fragalysis Stack") creates it; the flow waits until every pod is
Ready, verifies the image and reports the same timings as a redeploy.

From Python::

    from flows.first_deploy import first_deploy
    report = first_deploy(target="staging")              # refused when the stack exists
    report = first_deploy(target="staging", force=True)  # launch the template again anyway
"""

from __future__ import annotations

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Cancelled

from flows import inputs, launches
from flows.pipeline import deploy_first
from flows.report import DeploymentReport, DeploymentStopped


def _run_name() -> str:
    return f"first deployment of {str(flow_run.parameters.get('target', 'staging'))[:64]}"


@flow(name="first-deploy", flow_run_name=_run_name, persist_result=True, on_cancellation=[launches.on_cancellation])
def first_deploy(target: str = "staging", force: bool = False) -> DeploymentReport | State[None]:
    """Create a stack with its one-time AWX template.

    Args:
        target: the name of the ``StackTarget`` block (its ``first_deploy_template`` creates the stack).
        force: launch the template even when the StatefulSet exists already.
    """
    try:
        return deploy_first(inputs.load_target(target), force=force)
    except DeploymentStopped as stopped:
        return Cancelled(message=str(stopped))
