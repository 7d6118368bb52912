"""The launch record of a deploy: which AWX job it launched, kept outside its process.

A Prefect Variable per flow run (``fragalysis-launch-<run id>``): the stack build the run dispatched (orchestrate
mode), then the AWX launch, claimed before the POST (``job_id`` empty) and completed with the job's id and URL right
after AWX answers; deleted once the run has ended (not when its process was stopped or killed). Cancellation reads
it (the ``on_cancellation`` hook may run in another process, after the flow's own process is gone), and so does a
retry of the same flow run (Prefect's retries, or Retry in the UI: the run keeps its id) after a crash: it follows
the build and the job the run started instead of starting them again. Prefect's task cache cannot do this: its
records are written after the task returns (FACTS.md), so a crash between AWX's 201 and that write loses them.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

import httpx
from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectAlreadyExists
from prefect.variables import Variable

from clients.errors import ApiError, ClientError
from flows import prefect_busy


def variable_name(run_id: str) -> str:
    return f"fragalysis-launch-{run_id}"


@dataclass
class LaunchRecord:
    """What a run started: the StackTarget it deployed with, the stack build it dispatched, the template it
    claimed (``claimed_at``: just before the launch POST; empty: no launch yet) and, once launched, the job."""

    target: str = ""
    template: str = ""
    claimed_at: str = ""
    job_id: int | None = None
    job_url: str | None = None
    build_run_id: int | None = None
    build_url: str | None = None
    extra_vars: dict[str, Any] | None = None
    """What the launch was claimed with: a second launch of the same run (a rollback's, with the last good tag) is
    not taken for the first."""
    lease_id: str | None = None
    """The lease of the environment's concurrency slot the run holds: a retry after a crash releases it (nothing
    else would before it expires, and the retry, being the same deploy, would wait for itself)."""

    @property
    def claimed(self) -> datetime | None:
        return datetime.fromisoformat(self.claimed_at) if self.claimed_at else None


def built(run_id: str | None, target: str, build_run_id: int, build_url: str) -> None:
    """Record the stack build this run dispatched (a retry follows it instead of dispatching another)."""
    if run_id:
        _save(run_id, replace(recall(run_id) or LaunchRecord(target), build_run_id=build_run_id, build_url=build_url))


def holding(run_id: str | None, lease_id: str | None) -> None:
    """Record the lease of the environment's slot this run holds (None: released)."""
    if run_id:
        _save(run_id, replace(recall(run_id) or LaunchRecord(), lease_id=lease_id))


def claim(run_id: str | None, target: str, template: str, extra_vars: dict[str, Any] | None = None) -> None:
    """Record that this run is about to launch ``template`` with ``extra_vars`` (before the POST: a crash after it
    leaves the claim); a job recorded before (a first launch, before a rollback's) is replaced."""
    if run_id:
        existing = recall(run_id) or LaunchRecord(target)
        claimed_at = datetime.now(UTC).isoformat()
        claimed = replace(existing, template=template, claimed_at=claimed_at, extra_vars=extra_vars)
        _save(run_id, replace(claimed, job_id=None, job_url=None))


def launched(
    run_id: str | None, target: str, template: str, job_id: int, job_url: str, extra_vars: dict[str, Any] | None = None
) -> None:
    """Record the job that AWX created for this run."""
    if run_id:
        existing = recall(run_id) or LaunchRecord(target, claimed_at=datetime.now(UTC).isoformat())
        record = replace(existing, target=target, template=template, job_id=job_id, job_url=job_url)
        _save(run_id, replace(record, extra_vars=extra_vars if extra_vars is not None else existing.extra_vars))


_known: dict[str, LaunchRecord | None] = {}
"""The records this process read or wrote, by run id. Only a run's own process writes its record (a retry's process
starts with none known and reads it), so what this process last wrote is what the Variable holds: the stages' reads
cost no request, and each change of the record is one (the claim is on the path to the AWX launch; Prefect's
``Variable.set`` reads the variable before and after writing it)."""
_lock = threading.Lock()


def _save(run_id: str, record: LaunchRecord) -> None:
    """Write the record (one request); a Prefect API that does not store it (after its client's own retries) is an
    ``ApiError`` naming the record, which fails the stage that wrote it (the claim: before anything is launched)."""
    try:
        _write(run_id, record)
    except httpx.HTTPError as error:
        status = error.response.status_code if isinstance(error, httpx.HTTPStatusError) else None
        try:
            url: str | None = str(error.request.url)
        except RuntimeError:  # an error raised before any request was made
            url = None
        raise ApiError(
            f"Prefect did not store the run's launch record {variable_name(run_id)}: {error}", status=status, url=url
        ) from error


def _write(run_id: str, record: LaunchRecord) -> None:
    name, value = variable_name(run_id), asdict(record)
    client = prefect_busy.client()
    with _lock:
        if _known.get(run_id) is not None:
            try:
                client.update_variable(VariableUpdate(name=name, value=value))
            except httpx.HTTPStatusError as error:
                if error.response.status_code != 404:  # gone (forgotten by a cancellation hook): write it again
                    raise
                client.create_variable(VariableCreate(name=name, value=value))
        else:
            try:
                client.create_variable(VariableCreate(name=name, value=value))
            except ObjectAlreadyExists:
                client.update_variable(VariableUpdate(name=name, value=value))
        _known[run_id] = record


def recall(run_id: str) -> LaunchRecord | None:
    with _lock:
        if run_id in _known:
            return _known[run_id]
    value: Any = Variable.get(variable_name(run_id), default=None)
    record = None
    if isinstance(value, dict):
        try:
            record = LaunchRecord(**value)
        except TypeError:
            record = None
    with _lock:
        return _known.setdefault(run_id, record)


def forget(run_id: str | None) -> None:
    if run_id:
        Variable.unset(variable_name(run_id))
        with _lock:
            _known.pop(run_id, None)


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


def crash_leftover_tasks(run_id: str | None) -> int:
    """Mark Crashed the task runs of this flow run that an earlier attempt left unfinished (its process was killed:
    they would show as Running for ever in the run's graph and task list). Called as a retry starts, before any task
    of its own: every unfinished task run then is the dead attempt's. Returns how many."""
    if not run_id:
        return 0
    from uuid import UUID

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)])))
        left = [run for run in runs if run.state is not None and not run.state.is_final()]
        for run in left:
            message = "its process was killed; a retry of the flow run carries on from where the world is"
            client.set_task_run_state(run.id, Crashed(message=message), force=True)
    return len(left)
