"""Stage timings against their budgets: pure data and formatting, no Prefect, no I/O.

Timings come from the services' own timestamps (the commit's time, GitHub run times, AWX started/finished, pod
timestamps) so that the report tells the truth even when the flow itself started late.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_REACHED = "not reached"


@dataclass
class StageTiming:
    """One row of the timing table."""

    stage: str
    started: datetime | None = None
    finished: datetime | None = None
    budget: float | None = None
    """Seconds; None: no budget of its own."""
    outcome: Outcome = Outcome.OK
    link: str | None = None
    note: str = ""
    excluded: float = 0.0
    """Seconds inside the span that do not count (the lead time leaves the approval wait out)."""

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return max(0.0, (self.finished - self.started).total_seconds() - self.excluded)

    @property
    def verdict(self) -> str:
        if self.outcome is not Outcome.OK:
            return self.outcome.value
        duration = self.duration
        if duration is None or self.budget is None:
            return "ok"
        return "within budget" if duration <= self.budget else "OVER BUDGET"

    @property
    def over_budget(self) -> bool:
        return self.verdict == "OVER BUDGET"

    def as_row(self, time_scale: float = 1.0) -> dict[str, str]:
        """The row for tables; at a time scale other than 1 (a sandbox), a ``modelled`` column says what the
        duration and the budget stand for in the modelled world ("14.1 of 15.0 min")."""
        row = {
            "stage": self.stage,
            "started": clock_time(self.started),
            "finished": clock_time(self.finished),
            "duration": format_seconds(self.duration),
            "budget": format_seconds(self.budget),
        }
        if time_scale != 1:
            row["modelled"] = modelled(self.duration, self.budget, time_scale)
        row["verdict"] = self.verdict + (f" ({self.note})" if self.note else "")
        row["link"] = self.link or ""
        return row

    def as_payload(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "started": self.started.isoformat() if self.started else None,
            "finished": self.finished.isoformat() if self.finished else None,
            "duration_seconds": self.duration,
            "budget_seconds": self.budget,
            "verdict": self.verdict,
            "link": self.link,
            "excluded_seconds": self.excluded,
        }


@dataclass
class TimingTable:
    """The rows of one deployment, in stage order, with the lead-time rows derived at the end."""

    rows: list[StageTiming] = field(default_factory=list)

    def add(self, timing: StageTiming) -> StageTiming:
        self.rows.append(timing)
        return timing

    def find(self, stage: str) -> StageTiming | None:
        return next((row for row in self.rows if row.stage == stage), None)

    def stages(self) -> list[StageTiming]:
        """The measured stages (not the derived lead-time rows, nor the approval wait)."""
        return [row for row in self.rows if not is_derived(row.stage) and row.stage != APPROVAL]

    def slowest(self) -> StageTiming | None:
        measured = [row for row in self.stages() if row.duration is not None]
        return max(measured, key=lambda row: row.duration or 0.0, default=None)

    def as_rows(self, time_scale: float = 1.0) -> list[dict[str, str]]:
        return [row.as_row(time_scale) for row in self.rows]


APPROVAL = "approval"
"""The row of the wait for a decision (production): shown beside the lead time, never inside it."""
TOTAL = "total (lead time)"
ROLLOUT_START = " -> roll-out start"


def is_derived(stage: str) -> bool:
    """Whether a row is one of the lead-time rows derived at the end (not a stage of its own)."""
    return stage == TOTAL or stage.endswith(ROLLOUT_START)


def lead_time_rows(
    change_at: datetime | None,
    rollout_started: datetime | None,
    finished: datetime | None,
    *,
    rollout_budget: float,
    total_budget: float,
    failed: bool,
    change: str = "commit",
    excluded: float = 0.0,
) -> list[StageTiming]:
    """The two derived rows: ``<change> -> roll-out start`` and the total lead time (``change`` -> last pod ready),
    both measured from the change (a commit, or a tag push) and leaving ``excluded`` seconds (an approval wait) out.
    """
    total_outcome = Outcome.FAILED if failed else Outcome.OK
    note = f"{format_seconds(excluded)} of approval left out" if excluded else ""
    return [
        StageTiming(
            f"{change}{ROLLOUT_START}",
            change_at,
            rollout_started,
            rollout_budget,
            Outcome.OK if rollout_started else Outcome.NOT_REACHED,
            note=note if rollout_started else "",
            excluded=excluded if rollout_started else 0.0,
        ),
        StageTiming(
            TOTAL,
            change_at,
            finished,
            total_budget,
            total_outcome if finished else Outcome.NOT_REACHED,
            note=note if finished else "",
            excluded=excluded if finished else 0.0,
        ),
    ]


def format_seconds(seconds: float | None) -> str:
    """``4.2 s`` below a minute, ``4m 02s`` above."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m {rest:02d}s"


def modelled(duration: float | None, budget: float | None, time_scale: float) -> str:
    """``14.1 of 15.0 min``: a scaled duration and budget in modelled minutes (``12 of 60 s`` below a minute)."""
    if duration is None and budget is None:
        return ""
    largest = max(duration or 0.0, budget or 0.0) * time_scale
    unit, divisor = ("min", 60.0) if largest >= 60 else ("s", 1.0)

    def amount(seconds: float | None) -> str:
        return "?" if seconds is None else f"{seconds * time_scale / divisor:.1f}"

    if budget is None:
        return f"{amount(duration)} {unit}"
    return f"{amount(duration)} of {amount(budget)} {unit}"


def clock_time(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]


def render_table(rows: Sequence[dict[str, str]], columns: Iterable[str] | None = None) -> str:
    """A plain-text table for terminals (the demo prints it)."""
    cols = list(columns or (rows[0].keys() if rows else []))
    widths = {col: max([len(col), *(len(row.get(col, "")) for row in rows)]) for col in cols}
    lines = ["  ".join(col.ljust(widths[col]) for col in cols)]
    lines.append("  ".join("-" * widths[col] for col in cols))
    lines += ["  ".join(row.get(col, "").ljust(widths[col]) for col in cols) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def render_markdown_table(rows: Sequence[dict[str, str]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0].keys())
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        cells = [row[col] if col != "link" or not row[col] else f"[open]({row[col]})" for col in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
