"""The delivery report as the UI shows it: a markdown page with the pictures, and the figures as table rows. Pure
functions, no Prefect."""

from __future__ import annotations

from typing import Any

from flows.delivery import COUNTED, DeliveryFigures, Spread, minutes
from flows.delivery_svg import lead_time_svg, stages_svg
from flows.timeline import svg_markdown


def _spread(spread: Spread | None) -> str:
    return "-" if spread is None else f"p50 {minutes(spread.p50)}, p95 {minutes(spread.p95)} ({spread.count})"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _trend(value: float | None) -> str:
    return "-" if value is None else f"{value:+.0%}"


def summarise(figures: DeliveryFigures) -> str:
    """One line: the deploys, the lead time against the target, the change failure rate, the time to restore."""
    f = figures
    lead = f.lead_time
    restore = f.time_to_restore
    return (
        f"{f.environment}, last {f.days} days: {len(f.deploys)} deploys ({f.count('succeeded')} succeeded, "
        f"{f.count('failed')} failed, {f.count('rolled-back')} rolled back), {len(f.apart)} listed apart; lead time "
        f"p50 {minutes(lead.p50 if lead else None)} p95 {minutes(lead.p95 if lead else None)} (target "
        f"{minutes(f.target)}); change failure rate {_percent(f.change_failure_rate)}; time to restore p50 "
        f"{minutes(restore.p50 if restore else None)}"
    )


def render_markdown(figures: DeliveryFigures) -> str:
    """The page: the figures, the stages with their trends, the restores, the runs listed apart, the pictures."""
    f = figures
    lines = [
        f"# {f.environment}: delivery over the last {f.days} days",
        "",
        f"{f.since:%Y-%m-%d %H:%M} to {f.until:%Y-%m-%d %H:%M} UTC. Times are modelled (a sandbox's seconds times its "
        "speed); percentiles are nearest-rank.",
        "",
    ]
    if not f.deploys and not f.apart:
        lines += [f"No deploy of {f.environment} ended in the last {f.days} days.", ""]
    counts = ", ".join(f"{f.count(outcome)} {outcome}" for outcome in COUNTED)
    lines.append(f"- **deploys**: {len(f.deploys)} ({counts}), {f.deploys_per_day:.2f} a day")
    target = f" against the {minutes(f.target)} target, {f.over_target} over it" if f.target is not None else ""
    lines.append(f"- **lead time** (change -> last pod Ready): {_spread(f.lead_time)}{target}")
    lines.append(f"- **approval wait** (kept out of the lead time): {_spread(f.approval_wait)}")
    lines.append(
        f"- **change failure rate**: {_percent(f.change_failure_rate)} "
        f"({f.change_failures} failed or rolled back of {f.changes} that changed {f.environment})"
    )
    open_failures = sum(1 for r in f.restores if r.restored_at is None)
    lines.append(
        f"- **time to restore**: {_spread(f.time_to_restore)}"
        + (f", {open_failures} not restored yet" if open_failures else "")
    )
    if f.apart:
        kinds = sorted({r.outcome for r in f.apart})
        listed = ", ".join(f"{sum(1 for r in f.apart if r.outcome == k)} {k}" for k in kinds)
        lines.append(f"- **listed apart** (not failures): {listed}")
    busy = [(day, tally) for day, tally in f.per_day if any(tally.values())]
    if busy:
        lines += ["", "## Deploys per day", "", "| day (UTC) | succeeded | failed | rolled back |", "|---|---|---|---|"]
        for day, tally in busy:
            lines.append(f"| {day:%Y-%m-%d} | {' | '.join(str(tally[outcome]) for outcome in COUNTED)} |")
        lines.append(f"\n{len(f.per_day) - len(busy)} of the {len(f.per_day)} days had no deploy.")
    if f.stages:
        lines += [
            "",
            "## Stages",
            "",
            "| stage | p50 | p95 | runs | last 7 days p50 | 7 days before p50 | trend |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in f.stages:
            lines.append(
                f"| {s.stage} | {minutes(s.spread.p50)} | {minutes(s.spread.p95)} | {s.spread.count} | "
                f"{minutes(s.recent_p50)} | {minutes(s.before_p50)} | {_trend(s.trend)} |"
            )
    if f.restores:
        lines += [
            "",
            "## Change failures and restores",
            "",
            "| failed | change | failed at | restored by | time to restore |",
            "|---|---|---|---|---|",
        ]
        for r in f.restores:
            by = "not restored yet"
            if r.restored_by is r.failure:
                by = "its own rollback, verified"
            elif r.restored_by is not None:
                by = f"{r.restored_by.change} ({r.restored_by.run_id[:8]})"
            lines.append(
                f"| {r.failure.outcome} ({r.failure.run_id[:8]}) | {r.failure.change} "
                f"| {r.failed_at:%Y-%m-%d %H:%M:%S} | {by} | {minutes(r.seconds)} |"
            )
    if f.apart:
        lines += ["", "## Listed apart", "", "| ended | run | change | outcome |", "|---|---|---|---|"]
        for run in f.apart:
            lines.append(f"| {run.ended_at:%Y-%m-%d %H:%M:%S} | {run.run_id[:8]} | {run.change} | {run.outcome} |")
    lines += [
        "",
        svg_markdown(lead_time_svg(f), alt=f"{f.environment} lead time per deploy"),
        "",
        svg_markdown(stages_svg(f), alt=f"{f.environment} stages per deploy"),
    ]
    return "\n".join(lines) + "\n"


def figure_rows(figures: DeliveryFigures) -> list[dict[str, Any]]:
    """The figures as a table: one row per figure, in modelled seconds (null where there is nothing to measure)."""
    f = figures

    def spread(name: str, value: Spread | None) -> list[dict[str, Any]]:
        return [
            {"figure": f"{name} p50 seconds", "value": value.p50 if value else None},
            {"figure": f"{name} p95 seconds", "value": value.p95 if value else None},
            {"figure": f"{name} count", "value": value.count if value else 0},
        ]

    rows: list[dict[str, Any]] = [
        {"figure": "environment", "value": f.environment},
        {"figure": "since", "value": f.since.isoformat()},
        {"figure": "until", "value": f.until.isoformat()},
        {"figure": "deploys", "value": len(f.deploys)},
        *({"figure": f"deploys {outcome}", "value": f.count(outcome)} for outcome in COUNTED),
        {"figure": "deploys per day", "value": round(f.deploys_per_day, 3)},
        {"figure": "listed apart", "value": len(f.apart)},
        *spread("lead time", f.lead_time),
        {"figure": "lead time target seconds", "value": f.target},
        {"figure": "lead time over target", "value": f.over_target},
        *spread("approval wait", f.approval_wait),
        {"figure": "changes", "value": f.changes},
        {"figure": "change failures", "value": f.change_failures},
        {"figure": "change failure rate", "value": f.change_failure_rate},
        *spread("time to restore", f.time_to_restore),
        {"figure": "not restored yet", "value": sum(1 for r in f.restores if r.restored_at is None)},
    ]
    rows += [
        {"figure": f"deploys on {day:%Y-%m-%d} {outcome}", "value": counts[outcome]}
        for day, counts in f.per_day
        if any(counts.values())
        for outcome in COUNTED
    ]
    for s in f.stages:
        rows += [
            {"figure": f"stage {s.stage} p50 seconds", "value": s.spread.p50},
            {"figure": f"stage {s.stage} p95 seconds", "value": s.spread.p95},
            {"figure": f"stage {s.stage} trend", "value": s.trend},
        ]
    return rows
