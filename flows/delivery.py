"""Delivery figures of one environment over a window of days, from the deploys' records: pure functions, no Prefect.

Definitions (README, "Delivery history"):

- **deploys**: the runs that ended succeeded, failed or rolled-back, counted per UTC day of their end; cancelled,
  superseded and rejected runs are listed apart and are not failures;
- **lead time**: the change (the commit for staging, the tag push for production) -> the last pod Ready, the approval
  wait left out (reported on its own), for the deploys that succeeded, against the target they were held to;
- **stages**: each stage that ran to its end, p50 and p95, and its trend: the p50 of the last 7 days against the p50
  of the 7 days before;
- **change failure rate**: failed or rolled-back deploys over the deploys that changed the environment (an AWX job
  ran for them); a deploy that failed before launching AWX changed nothing and counts in neither;
- **time to restore**: a change failure (when its failed stage ended) -> the next verified state of the environment:
  its own verified rollback, or the verification of the next deploy that succeeded (the next by the deploys' ends,
  Prefect's one clock, so that services' clocks a little apart cannot pick an earlier one); not restored yet when
  there is none.

Percentiles are nearest-rank: p of n sorted values is the ceil(p * n)-th (p50 of 4 values is the 2nd, p95 of 20 the
19th), always a value that was measured. Figures are modelled seconds (a sandbox's seconds times its speed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flows.history import DeployRecord
from flows.report import DeploymentOutcome

COUNTED = (
    DeploymentOutcome.SUCCEEDED.value,
    DeploymentOutcome.FAILED.value,
    DeploymentOutcome.ROLLED_BACK.value,
)
TREND_DAYS = 7


def minutes(seconds: float | None) -> str:
    """``14.2 min``, ``42 s``; ``-`` for none."""
    if seconds is None:
        return "-"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Spread:
    count: int
    p50: float
    p95: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread | None:
        values = list(values)
        if not values:
            return None
        return cls(len(values), percentile(values, 0.5) or 0.0, percentile(values, 0.95) or 0.0)


@dataclass(frozen=True)
class StageFigures:
    stage: str
    spread: Spread
    recent_p50: float | None
    """The p50 of the last 7 days."""
    before_p50: float | None
    """The p50 of the 7 days before them."""

    @property
    def trend(self) -> float | None:
        """The relative change of the p50, last 7 days against the 7 before (+0.25: 25% slower)."""
        if self.recent_p50 is None or not self.before_p50:
            return None
        return self.recent_p50 / self.before_p50 - 1.0


@dataclass(frozen=True)
class Restore:
    failure: DeployRecord
    failed_at: datetime
    restored_by: DeployRecord | None
    restored_at: datetime | None

    @property
    def seconds(self) -> float | None:
        """Modelled seconds from the failure to the verified state (never negative: clocks a little apart)."""
        if self.restored_at is None:
            return None
        return max(0.0, (self.restored_at - self.failed_at).total_seconds()) * self.failure.scale


@dataclass(frozen=True)
class DeliveryFigures:
    environment: str
    days: int
    until: datetime
    deploys: tuple[DeployRecord, ...]
    """The window's succeeded, failed and rolled-back deploys, oldest first."""
    apart: tuple[DeployRecord, ...]
    """The window's cancelled, superseded and rejected runs, oldest first."""
    per_day: tuple[tuple[date, dict[str, int]], ...]
    lead_time: Spread | None
    target: float | None
    over_target: int
    approval_wait: Spread | None
    stages: tuple[StageFigures, ...]
    changes: int
    """Deploys that changed the environment (an AWX job ran)."""
    change_failures: int
    restores: tuple[Restore, ...]

    @property
    def since(self) -> datetime:
        return self.until - timedelta(days=self.days)

    def count(self, outcome: str) -> int:
        return sum(1 for record in self.deploys if record.outcome == outcome)

    @property
    def deploys_per_day(self) -> float:
        return len(self.deploys) / self.days

    @property
    def change_failure_rate(self) -> float | None:
        return self.change_failures / self.changes if self.changes else None

    @property
    def time_to_restore(self) -> Spread | None:
        return Spread.of(restore.seconds for restore in self.restores if restore.seconds is not None)


def delivery_figures(
    records: Iterable[DeployRecord], environment: str, *, until: datetime, days: int = 30
) -> DeliveryFigures:
    """The environment's figures over the ``days`` before ``until``. ``records`` may hold other environments and
    older deploys (the stage trends look back 14 days, the restores forward to ``until``)."""
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    mine = sorted((r for r in records if r.environment == environment and r.ended_at <= until), key=_ended)
    since = until - timedelta(days=days)
    window = [r for r in mine if r.ended_at > since]
    deploys = tuple(r for r in window if r.outcome in COUNTED)
    leads = [r.lead_time for r in deploys if r.lead_time is not None]
    targets = [r.target for r in deploys if r.target is not None]
    target = targets[-1] if targets else None
    changed = [r for r in deploys if r.changed_environment]
    failures = [r for r in changed if r.failed]
    return DeliveryFigures(
        environment=environment,
        days=days,
        until=until,
        deploys=deploys,
        apart=tuple(r for r in window if r.outcome not in COUNTED),
        per_day=_per_day(deploys, since, until),
        lead_time=Spread.of(leads),
        target=target,
        over_target=sum(
            1 for r in deploys if r.lead_time is not None and r.target is not None and r.lead_time > r.target
        ),
        approval_wait=Spread.of(r.approval_wait for r in window if r.approval_wait is not None),
        stages=_stages(window, mine, until),
        changes=len(changed),
        change_failures=len(failures),
        restores=tuple(_restore(failure, mine) for failure in failures),
    )


def _ended(record: DeployRecord) -> datetime:
    return record.ended_at


def _per_day(
    deploys: Sequence[DeployRecord], since: datetime, until: datetime
) -> tuple[tuple[date, dict[str, int]], ...]:
    first, last = (since + timedelta(microseconds=1)).date(), until.date()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    counts = {day: dict.fromkeys(COUNTED, 0) for day in days}
    for record in deploys:
        counts[record.ended_at.date()][record.outcome] += 1
    return tuple(counts.items())


def _stages(window: Sequence[DeployRecord], mine: Sequence[DeployRecord], until: datetime) -> tuple[StageFigures, ...]:
    order: dict[str, None] = {}
    seconds: dict[str, list[float]] = {}
    for record in window:
        for stage, value in record.stage_seconds():
            order.setdefault(stage)
            seconds.setdefault(stage, []).append(value)
    recent_from, before_from = until - timedelta(days=TREND_DAYS), until - timedelta(days=2 * TREND_DAYS)

    def p50(stage: str, after: datetime, upto: datetime) -> float | None:
        values = [v for r in mine if after < r.ended_at <= upto for name, v in r.stage_seconds() if name == stage]
        return percentile(values, 0.5)

    return tuple(
        StageFigures(stage, spread, p50(stage, recent_from, until), p50(stage, before_from, recent_from))
        for stage in order
        if (spread := Spread.of(seconds[stage])) is not None
    )


def _restore(failure: DeployRecord, mine: Sequence[DeployRecord]) -> Restore:
    failed_at = failure.failed_at
    if failure.verified_at is not None:  # its own rollback, verified
        return Restore(failure, failed_at, failure, failure.verified_at)
    later = (r for r in mine if r.ended_at > failure.ended_at and r.verified_at is not None)
    restored_by = next(later, None)
    return Restore(failure, failed_at, restored_by, restored_by.verified_at if restored_by else None)
