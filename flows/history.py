"""The record each deploy leaves for the delivery history: pure data, no Prefect.

A deploy publishes its record as a keyed table artifact (``<environment>-record``, one version per deploy), which
Prefect keeps as long as the flow run (events go after the server's retention). The table is long and self-contained:
one row per stage, each carrying the deploy's run id, environment, outcome, change and digest, and the stage's ISO
start and finish, seconds and budget, and the sandbox speed the seconds were measured at (``scale``, 1 on real
services). What the history needs and the table does not carry as a column is a stage of its own: the lead time is the
``total (lead time)`` row (its budget is the target), the approval wait the ``approval`` row, "an AWX job was
launched" an ``AWX job start`` row that started, a verified state the finish of ``verify`` or ``rollback verify``.
The record's time is the artifact's creation (Prefect's clock: the deploy's end).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flows.report import DeploymentOutcome, DeploymentReport
from flows.timing import APPROVAL, TOTAL, Outcome, is_derived

ROW_COLUMNS = (
    "run_id",
    "environment",
    "outcome",
    "source",
    "ref",
    "change",
    "digest",
    "stage",
    "started",
    "finished",
    "seconds",
    "budget_seconds",
    "verdict",
    "scale",
)
CHANGED = frozenset({"AWX job start", "AWX job"})
"""Rows whose start means an AWX job ran for the deploy: it changed (or tried to change) the environment."""
VERIFIED = frozenset({"verify", "rollback verify"})
"""Rows whose finish, when the deploy succeeded or was rolled back, is a verified state of the environment."""
MEASURED = frozenset({"within budget", "OVER BUDGET", "ok"})
"""The verdicts of a stage that ran to its end."""


@dataclass(frozen=True)
class StageRecord:
    stage: str
    started: datetime | None
    finished: datetime | None
    seconds: float | None
    budget_seconds: float | None
    verdict: str

    @property
    def measured(self) -> bool:
        return self.seconds is not None and self.verdict.split(" (")[0] in MEASURED


@dataclass(frozen=True)
class DeployRecord:
    """One deploy as the history sees it. Seconds are real seconds at ``scale`` (a sandbox's speed); the figures
    are in modelled seconds (``seconds * scale``), so records of different speeds add up."""

    run_id: str
    environment: str
    outcome: str
    source: str
    ref: str
    """The commit's sha (staging) or the tag (production)."""
    change: str
    """``frontend@1a2b3c4`` or ``tag 1.0.3``."""
    digest: str
    ended_at: datetime
    stages: tuple[StageRecord, ...]
    scale: float = 1.0

    @classmethod
    def from_report(cls, report: DeploymentReport, *, ended_at: datetime, scale: float) -> DeployRecord:
        stages = tuple(
            StageRecord(row.stage, row.started, row.finished, row.duration, row.budget, row.verdict)
            for row in report.table.rows
        )
        return cls(
            run_id=report.run_id or "",
            environment=report.environment,
            outcome=(report.outcome or DeploymentOutcome.FAILED).value,
            source=report.source,
            ref=report.tag if report.tag is not None else (report.sha or ""),
            change=report.change,
            digest=report.digest or "",
            ended_at=ended_at,
            stages=stages,
            scale=scale,
        )

    def rows(self) -> list[dict[str, Any]]:
        """The table artifact's rows (JSON values: ISO timestamps, seconds as numbers, null where unknown)."""
        deploy = {
            "run_id": self.run_id,
            "environment": self.environment,
            "outcome": self.outcome,
            "source": self.source,
            "ref": self.ref,
            "change": self.change,
            "digest": self.digest,
        }
        return [
            deploy
            | {
                "stage": stage.stage,
                "started": stage.started.isoformat() if stage.started else None,
                "finished": stage.finished.isoformat() if stage.finished else None,
                "seconds": stage.seconds,
                "budget_seconds": stage.budget_seconds,
                "verdict": stage.verdict,
                "scale": self.scale,
            }
            for stage in self.stages
        ]

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]], *, ended_at: datetime) -> DeployRecord:
        """A record read back from its table artifact; ``ended_at`` is the artifact's creation."""
        if not rows:
            raise ValueError("a deploy record has at least one row")
        first = rows[0]
        return cls(
            run_id=str(first["run_id"]),
            environment=str(first["environment"]),
            outcome=str(first["outcome"]),
            source=str(first.get("source") or ""),
            ref=str(first.get("ref") or ""),
            change=str(first.get("change") or ""),
            digest=str(first.get("digest") or ""),
            ended_at=ended_at,
            stages=tuple(
                StageRecord(
                    str(row["stage"]),
                    _moment(row.get("started")),
                    _moment(row.get("finished")),
                    _number(row.get("seconds")),
                    _number(row.get("budget_seconds")),
                    str(row.get("verdict") or ""),
                )
                for row in rows
            ),
            scale=_number(first.get("scale")) or 1.0,
        )

    # what the figures read, in modelled seconds

    def find(self, stage: str) -> StageRecord | None:
        return next((row for row in self.stages if row.stage == stage), None)

    @property
    def lead_time(self) -> float | None:
        """The change -> the last pod Ready, the approval wait left out; only for a deploy that succeeded."""
        total = self.find(TOTAL)
        if self.outcome != DeploymentOutcome.SUCCEEDED.value or total is None or total.seconds is None:
            return None
        return total.seconds * self.scale

    @property
    def target(self) -> float | None:
        """The lead-time target this deploy was held to (the total row's budget)."""
        total = self.find(TOTAL)
        return total.budget_seconds * self.scale if total and total.budget_seconds is not None else None

    @property
    def approval_wait(self) -> float | None:
        row = self.find(APPROVAL)
        return row.seconds * self.scale if row and row.seconds is not None else None

    @property
    def changed_environment(self) -> bool:
        return any(row.stage in CHANGED and row.started is not None for row in self.stages)

    @property
    def failed(self) -> bool:
        """A change failure: failed or rolled back."""
        return self.outcome in (DeploymentOutcome.FAILED.value, DeploymentOutcome.ROLLED_BACK.value)

    @property
    def failed_at(self) -> datetime:
        """When it failed: the end of the failed stage (before any rollback), else the deploy's end."""
        for row in self.stages:
            if row.verdict == Outcome.FAILED.value and not is_derived(row.stage):
                return row.finished or row.started or self.ended_at
        return self.ended_at

    @property
    def verified_at(self) -> datetime | None:
        """When the environment was last seen verified by this deploy: its verification (succeeded) or its
        rollback's (rolled back)."""
        wanted = {
            DeploymentOutcome.SUCCEEDED.value: "verify",
            DeploymentOutcome.ROLLED_BACK.value: "rollback verify",
        }.get(self.outcome)
        row = self.find(wanted) if wanted else None
        return row.finished if row and row.measured else None

    def stage_seconds(self) -> Iterable[tuple[str, float]]:
        """The stages that ran to their end, in modelled seconds (not the lead-time rows, nor the approval)."""
        for row in self.stages:
            if row.measured and not is_derived(row.stage) and row.stage != APPROVAL:
                yield row.stage, (row.seconds or 0.0) * self.scale


def _moment(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
