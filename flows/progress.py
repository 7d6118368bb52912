"""Where a deployment is now, kept on its flow run as labels, so that what reads the run from outside (the overdue
automation's notification template, the UI, the API) can tell the environment, the change, the digest and the stage.

Labels (every value a string, "" when not known yet)::

    fragalysis.environment  staging
    fragalysis.change       frontend@1a2b3c4 | tag 1.0.3 | first deployment
    fragalysis.sha          the commit (a tag's commit for production)
    fragalysis.tag          the production tag, "" for a commit
    fragalysis.digest       the image digest being deployed ("" before the image stage)
    fragalysis.stage        the stage it is in: source build, stack build, image, AWX job, roll-out, rollback, ...

The pipeline registers its report once (``begin``); each stage calls ``mark`` as it starts, and the labels are read
from the report at that moment (the pipeline fills the sha and the digest in as it learns them). The updates are sent
in order by one background thread, so that no stage waits for them (they are on the path to the roll-out), and
several waiting for that thread are sent as one (the newest labels of each run). Nor does the run's end wait for
them: ``forget`` (when the outcome is published) returns at once, and the process, as it exits (a served run's process
ends with its run), gives the last updates up to ``FLUSH_SECONDS`` to go. On Prefect's SQLite a label update often
meets a write lock (503) and Prefect's client tries again 2 s later: waiting for it made every deploy end 2 s after
its last pod was Ready (benchmarks/README.md, ``staging_redeploy.py``). The updates go through
``flows.prefect_busy.client()``, which tries a first 503 again after 0.1 s. A label update that fails is logged and
never fails the run: it only informs.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import queue
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect.runtime import flow_run

from flows import prefect_busy
from flows.report import DeploymentReport

PREFIX = "fragalysis."
FACTS = ("environment", "change", "sha", "tag", "digest", "stage")

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 2.0
"""How long the process, as it exits, waits for the last label updates."""


@dataclass
class _Update:
    run_id: str
    labels: dict[str, str]
    logger: Any
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    """The caller's context: its Prefect settings (the API URL) are the ones to use."""
    done: threading.Event = field(default_factory=threading.Event)


_reports: weakref.WeakValueDictionary[str, DeploymentReport] = weakref.WeakValueDictionary()
_marked: dict[str, _Update] = {}
_updates: queue.SimpleQueue[_Update] = queue.SimpleQueue()
_lock = threading.Lock()
_sender: threading.Thread | None = None
_last: _Update | None = None
"""The newest update queued, for the flush at exit."""


def begin(report: DeploymentReport) -> None:
    """Register the run's report (``report.run_id``) and label the run with what is known so far."""
    if report.run_id is None:
        return
    _reports[report.run_id] = report
    _update(report.run_id, "starting", {})


def mark(stage: str, **facts: Any) -> None:
    """The current run enters ``stage``: update its labels. ``facts`` override what the report says (e.g.
    ``digest=`` the image a rollback deploys). Does nothing outside a flow run."""
    run_id = flow_run.id
    if run_id is not None:
        _update(str(run_id), stage, facts)


def stage_of(run_id: str | None) -> str | None:
    """The stage the run was last marked in (by this process), None when never."""
    marked = _marked.get(run_id or "")
    return marked.labels.get(f"{PREFIX}stage") if marked else None


def forget(run_id: str | None) -> None:
    """The run is over (its outcome published): drop what this process kept about it. Its last label update is not
    waited for (it is sent in the background, and flushed as the process exits)."""
    with _lock:
        _marked.pop(run_id or "", None)
    _reports.pop(run_id or "", None)


def labels_of(report: DeploymentReport | None, stage: str, facts: dict[str, Any]) -> dict[str, str]:
    """The labels for a run in ``stage``: from the report (when there is one), then ``facts``."""
    values: dict[str, Any] = {name: "" for name in FACTS}
    if report is not None:
        values.update(
            environment=report.environment,
            change=report.change,
            sha=report.sha,
            tag=report.tag,
            digest=report.digest,
        )
    values.update(facts, stage=stage)
    return {f"{PREFIX}{name}": "" if value is None else str(value) for name, value in values.items()}


def _update(run_id: str, stage: str, facts: dict[str, Any]) -> None:
    labels = labels_of(_reports.get(run_id), stage, facts)
    global _sender, _last
    with _lock:
        marked = _marked.get(run_id)
        if marked is not None and marked.labels == labels:
            return
        update = _marked[run_id] = _last = _Update(run_id, labels, run_logger())
        if _sender is None:
            atexit.register(flush)
        if _sender is None or not _sender.is_alive():
            _sender = threading.Thread(target=_send_updates, name="fragalysis-progress-labels", daemon=True)
            _sender.start()
        _updates.put(update)


def _send_updates() -> None:
    """Send the label updates in the order the stages were marked (the AWX job and the roll-out run in threads);
    of the updates waiting together, only each run's newest is sent (the labels are whole sets, not changes)."""
    while True:
        waiting = [_updates.get()]
        while not _updates.empty():
            waiting.append(_updates.get_nowait())
        newest = {update.run_id: update for update in waiting}
        try:
            for update in newest.values():
                update.context.run(_send, update)
        finally:
            for update in waiting:
                update.done.set()


def flush() -> None:
    """Give the last label updates up to ``FLUSH_SECONDS`` to be sent: at the process's exit (registered with
    ``atexit``), or before whoever runs flows in-process stops the Prefect server they talk to. Nothing is logged if
    they were not: at exit the log's streams may already be closed (a "Logging error" trace instead of a line), and
    labels only inform."""
    last = _last
    if last is not None:
        last.done.wait(FLUSH_SECONDS)


def _send(update: _Update) -> None:
    try:
        prefect_busy.client().update_flow_run_labels(UUID(update.run_id), update.labels)  # type: ignore[arg-type]
    except Exception as error:  # the labels only inform: never fail a deployment on them
        stage = update.labels.get(f"{PREFIX}stage")
        update.logger.warning("Could not label flow run %s with stage %r: %s", update.run_id, stage, error)


def run_logger() -> Any:
    """The run's logger inside a flow or task run (its lines show in the UI), this module's outside."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logger
