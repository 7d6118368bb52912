"""What a deployment returns and publishes: the report, its outcome, and the errors that end a deployment."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from flows.timeline import describe, svg_markdown, timeline_svg
from flows.timing import StageTiming, TimingTable


class DeploymentOutcome(StrEnum):
    """How a deployment ended; the ``fragalysis.deployment.<outcome>`` event carries it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"
    """The roll-out failed and the environment was rolled back to its last good tag (the run still fails)."""
    REJECTED = "rejected"
    """Someone rejected it at the approval: nothing was deployed."""
    CANCELLED = "cancelled"
    """No decision in time, or cancelled (in the UI or through the API)."""
    SUPERSEDED = "superseded"
    """A newer deploy of the environment came while this one waited for it: nothing was done."""


class StageFailed(Exception):
    """A stage failed; the message names the stage, the remote object and its URL.

    ``timings`` holds the rows the stage measured before it failed, so that the table still shows how far it got.
    """

    def __init__(self, stage: str, reason: str, timings: list[StageTiming] | None = None) -> None:
        super().__init__(f"stage '{stage}' failed: {reason}")
        self.stage = stage
        self.reason = reason
        self.timings = timings or []


class DeploymentStopped(Exception):
    """The deployment ended before anything was deployed, on purpose: rejected, no decision in time, or superseded
    by a newer deploy. The flow ends Cancelled with this message."""

    def __init__(self, outcome: DeploymentOutcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


class _CancelledIsNotAnError(logging.Filter):
    """Prefect 3.9.1's flow-run process asks a deployed flow's final state for its result, which raises
    ``CancelledRun`` for a Cancelled state, and logs that as "Engine execution exited with unexpected exception" with
    a traceback, at ERROR, in the run's logs (``prefect.flow_engine.run_flow``). A deploy that ends Cancelled on
    purpose (superseded, rejected, no decision in time: ``DeploymentStopped``) has already said why in its state and
    its last log line, so that record is dropped; every other error record is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.exceptions import CancelledRun

        error = record.exc_info[1] if record.exc_info else None
        return not (
            record.msg == "Engine execution exited with unexpected exception" and isinstance(error, CancelledRun)
        )


logging.getLogger("prefect.flow_runs").addFilter(_CancelledIsNotAnError())


@dataclass
class DeploymentReport:
    """One deployment: what was deployed where, how it ended, and how long each stage took."""

    environment: str
    source: str
    sha: str | None
    image: str
    tag: str | None = None
    """The production tag deployed (None for a staging commit)."""
    digest: str | None = None
    stack_sha: str | None = None
    """The stack repository's commit that the image was built from."""
    change_at: datetime | None = None
    """Where the lead time starts: the commit (staging), the tag's push (production), a first deployment's launch."""
    started_by: str = "commit"
    """What ``change_at`` is, for the lead-time rows: commit, tag push, launch."""
    outcome: DeploymentOutcome | None = None
    failed_stage: str | None = None
    error: str | None = None
    run_id: str | None = None
    approval: str | None = None
    """Who decided and what they said."""
    approval_wait: float | None = None
    """Seconds the deployment waited for a decision: its own row, kept out of the lead time."""
    rollback: str | None = None
    """What the rollback did, when there was one."""
    table: TimingTable = field(default_factory=TimingTable)
    links: dict[str, str] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.outcome is DeploymentOutcome.SUCCEEDED

    @property
    def total(self) -> StageTiming | None:
        return self.table.find("total (lead time)")

    @property
    def change(self) -> str:
        """``frontend@1a2b3c4``, or ``tag 1.2.3`` for production."""
        if self.tag is not None:
            return f"tag {self.tag}"
        return f"{self.source}@{self.sha[:7]}" if self.sha else self.source

    def summary_markdown(self, *, target_seconds: float, rollout_budget: float, time_scale: float = 1.0) -> str:
        """The run's markdown summary: image and digest, environment, total against the target, the slowest
        stage, the approval and the rollback, on failure which stage failed and why, and the timeline picture. At
        a time scale other than 1 (a sandbox), the figures say what they stand for in the modelled world."""
        outcome = (self.outcome or DeploymentOutcome.FAILED).value
        shown = outcome if self.succeeded else outcome.upper()
        lines = [f"# {self.environment} deployment {shown}", ""]
        lines.append(f"- **change**: {self.change}")
        lines.append(f"- **image**: `{self.image}`" + (f" @ `{self.digest}`" if self.digest else ""))
        lines.append(f"- **environment**: {self.environment}")
        total = self.total
        duration = total.duration if total else None
        target = describe(target_seconds, time_scale)
        if duration is not None:
            verdict = "within" if duration <= target_seconds else "OVER"
            lines.append(f"- **total (lead time)**: {describe(duration, time_scale)} — {verdict} the {target} target")
        else:
            lines.append(f"- **total (lead time)**: not measured (target {target})")
        if self.approval_wait is not None:
            lines.append(
                f"- **approval**: {self.approval or 'no decision'} after {describe(self.approval_wait, time_scale)} "
                "(kept out of the lead time)"
            )
        slowest = self.table.slowest()
        if slowest is not None and slowest.duration is not None:
            lines.append(f"- **slowest stage**: {slowest.stage} ({describe(slowest.duration, time_scale)})")
        if time_scale != 1:
            lines.append(
                f"- **time scale**: a sandbox at speed {time_scale:g}: a real second stands for {time_scale:g} "
                "modelled seconds"
            )
        if self.rollback:
            lines.append(f"- **rollback**: {self.rollback}")
        if not self.succeeded:
            headline, _, details = (self.error or "").partition("\n")
            lines += ["", f"**Failed stage**: {self.failed_stage or 'none'}", "", f"> {headline}"]
            if details:  # e.g. a stuck pod's log lines and events: kept as they are, in a block of their own
                fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", details)), default=0))
                lines += ["", f"{fence}text", details, fence]
        picture = timeline_svg(
            self.table.rows,
            origin=self.change_at,
            target_seconds=target_seconds,
            rollout_budget=rollout_budget,
            time_scale=time_scale,
            title=f"{self.environment} <- {self.change}: {shown}",
        )
        lines += ["", svg_markdown(picture, alt=f"{self.environment} deployment timeline")]
        return "\n".join(lines) + "\n"

    def payload(self) -> dict[str, Any]:
        """The event payload: outcome, what was deployed and the durations; no secrets."""
        return {
            "environment": self.environment,
            "outcome": (self.outcome or DeploymentOutcome.FAILED).value,
            "run_id": self.run_id,
            "source": self.source,
            "sha": self.sha,
            "tag": self.tag,
            "stack_sha": self.stack_sha,
            "image": self.image,
            "digest": self.digest,
            "succeeded": self.succeeded,
            "failed_stage": self.failed_stage,
            "error": self.error,
            "approval": self.approval,
            "approval_wait_seconds": self.approval_wait,
            "rollback": self.rollback,
            "stages": [row.as_payload() for row in self.table.rows],
            "total_seconds": self.total.duration if self.total else None,
        }
