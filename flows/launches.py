"""The launch record of a deploy: which AWX job it launched, kept outside its process.

A Prefect Variable per flow run (``fragalysis-launch-<run id>``): claimed before the launch (``job_id`` empty),
completed with the job's id and URL right after AWX answers, and deleted once the run has ended with the job
finished. Cancellation reads it (the ``on_cancellation`` hook may run in another process, after the flow's own
process is gone), and crash-resume will: it is the run's memory of the remote work it started.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, cast

from prefect import get_run_logger
from prefect.variables import Variable

from clients.errors import ClientError


def variable_name(run_id: str) -> str:
    return f"fragalysis-launch-{run_id}"


@dataclass
class LaunchRecord:
    """What a run launched: the StackTarget it deployed with, the template and, once launched, the job."""

    target: str
    template: str
    claimed_at: str
    job_id: int | None = None
    job_url: str | None = None


def claim(run_id: str | None, target: str, template: str) -> None:
    """Record that this run is about to launch ``template`` (before the POST: a crash after it leaves the claim)."""
    if run_id:
        record = LaunchRecord(target, template, datetime.now(UTC).isoformat())
        Variable.set(variable_name(run_id), asdict(record), overwrite=True)


def launched(run_id: str | None, target: str, template: str, job_id: int, job_url: str) -> None:
    """Record the job that AWX created for this run."""
    if run_id:
        existing = recall(run_id)
        claimed_at = existing.claimed_at if existing else datetime.now(UTC).isoformat()
        record = LaunchRecord(target, template, claimed_at, job_id, job_url)
        Variable.set(variable_name(run_id), asdict(record), overwrite=True)


def recall(run_id: str) -> LaunchRecord | None:
    value: Any = Variable.get(variable_name(run_id), default=None)
    if not isinstance(value, dict):
        return None
    try:
        return LaunchRecord(**value)
    except TypeError:
        return None


def forget(run_id: str | None) -> None:
    if run_id:
        Variable.unset(variable_name(run_id))


def cancel_recorded_job(run_id: str) -> str:
    """Cancel the AWX job the run launched, if it has not finished; says what it did (for the log).

    Used by the flows' ``on_cancellation`` hook, which Prefect may run in another process after the flow's own
    process is gone (FACTS.md): the record and the ``StackTarget`` block are all it needs.
    """
    from blocks import StackTarget

    record = recall(run_id)
    if record is None or record.job_id is None:
        return "no AWX job was launched"
    target = cast(StackTarget, StackTarget.load(record.target))
    awx = target.awx.get_client()
    try:
        with awx:
            job = awx.job(record.job_id)
            if job.status.finished:
                outcome = f"AWX job {job.id} had finished ({job.status.value})"
            elif awx.cancel(job):
                outcome = f"canceled AWX job {job.id} ({record.job_url})"
            else:
                outcome = f"AWX job {job.id} could not be canceled ({record.job_url})"
    except ClientError as error:
        return f"could not cancel AWX job {record.job_id}: {error}"
    forget(run_id)
    return outcome


def on_cancellation(flow: Any, flow_run: Any, state: Any) -> None:
    """The flows' ``on_cancellation`` hook: cancel the AWX job this run launched (the run's own process normally
    did already, on SIGTERM; this covers a process that was killed first)."""
    try:
        logger = get_run_logger()
    except Exception:  # outside a run context (a hook in the runner's process)
        import logging

        logger = logging.getLogger("fragalysis.cancellation")
    try:
        logger.info("Cancelled: %s", cancel_recorded_job(str(flow_run.id)))
    except Exception as error:  # a hook must not raise
        logger.warning("Cancelled, but the AWX job could not be checked: %s", error)
