"""The delivery report's pictures, as SVG (the UI renders them inline in a markdown artifact, FACTS.md): lead time per
deploy over time against the target, with the failures marked; and the stages of each deploy as a stacked bar. Pure
functions, no Prefect."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime
from xml.sax.saxutils import escape

from flows.delivery import DeliveryFigures, minutes
from flows.history import DeployRecord
from flows.report import DeploymentOutcome
from flows.timeline import nice_step
from flows.timing import APPROVAL, TOTAL, is_derived

WIDTH = 880
LEFT = 70
RIGHT = 30
WAITING = "waiting and hand-offs"
PALETTE = ("#1565c0", "#6a1b9a", "#00838f", "#2e7d32", "#f9a825", "#5d4037", "#ad1457", "#455a64", "#7cb342")
MARKS = {
    "within target": "#2e7d32",
    "over target": "#ef6c00",
    DeploymentOutcome.FAILED.value: "#c62828",
    DeploymentOutcome.ROLLED_BACK.value: "#8e24aa",
}


def stage_group(stage: str) -> str:
    """What a stacked bar shows a row as: the pods as one roll-out, a rollback's rows as one rollback."""
    if stage.startswith("pod "):
        return "roll-out (pods)"
    if stage.startswith("rollback"):
        return "rollback"
    return stage


def segments(record: DeployRecord) -> list[tuple[str, float]]:
    """The deploy's span, from the change to the last pod Ready (or, when it failed, to its last measured moment),
    cut into what was going on at each instant: the stage that started last among those running (a pod inside its
    AWX job counts as the roll-out), ``waiting and hand-offs`` where none was; the approval wait left out, as in the
    lead time. Modelled seconds, in the order the parts first appear; they add up to the lead time."""
    total = record.find(TOTAL)
    rows = [
        r
        for r in record.stages
        if r.started and r.finished and not is_derived(r.stage) and r.stage != APPROVAL and r.finished >= r.started
    ]
    start = total.started if total and total.started else min((r.started for r in rows if r.started), default=None)
    end = total.finished if total and total.finished else max((r.finished for r in rows if r.finished), default=None)
    if start is None or end is None or end <= start:
        return []
    approval = record.find(APPROVAL)
    points = sorted({start, end} | {t for r in rows for t in (r.started, r.finished) if t and start < t < end})
    seconds: dict[str, float] = {}
    for a, b in itertools.pairwise(points):
        if approval and approval.started and approval.finished and approval.started <= a and b <= approval.finished:
            continue
        running = [(r.started, i, r) for i, r in enumerate(rows) if r.started <= a and b <= r.finished]  # type: ignore[operator]
        label = stage_group(max(running, key=lambda item: (item[0], item[1]))[2].stage) if running else WAITING
        seconds[label] = seconds.get(label, 0.0) + (b - a).total_seconds() * record.scale
    return list(seconds.items())


def lead_time_svg(figures: DeliveryFigures) -> str:
    """Each deploy at its end: a dot at its lead time (green within the target, orange over it), a cross on the
    axis where it failed or was rolled back; the target as a dashed line."""
    top, plot_height, bottom = 40, 220, 70
    height = top + plot_height + bottom
    leads = [r.lead_time for r in figures.deploys if r.lead_time is not None]
    ceiling = max([*leads, (figures.target or 0.0) * 1.2, 60.0])
    step = nice_step(ceiling / 5)
    ceiling = step * max(1, -(-ceiling // step))
    span = (figures.until - figures.since).total_seconds()

    def x(moment: datetime) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * max(0.0, (moment - figures.since).total_seconds()) / span

    def y(seconds: float) -> float:
        return top + plot_height * (1 - seconds / ceiling)

    parts = _open(height, f"{figures.environment}: lead time per deploy, last {figures.days} days")
    for i in range(int(ceiling / step) + 1):
        value = i * step
        parts.append(
            f'<line x1="{LEFT}" y1="{y(value):.1f}" x2="{WIDTH - RIGHT}" y2="{y(value):.1f}" stroke="#eeeeee"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" fill="#555555">{minutes(value)}</text>'
        )
    parts.append(f'<line x1="{LEFT}" y1="{y(0):.1f}" x2="{WIDTH - RIGHT}" y2="{y(0):.1f}" stroke="#555555"/>')
    for label, moment, anchor in (
        (figures.since.strftime("%Y-%m-%d"), figures.since, "start"),
        (figures.until.strftime("%Y-%m-%d %H:%M"), figures.until, "end"),
    ):
        parts.append(
            f'<text x="{x(moment):.1f}" y="{y(0) + 16:.1f}" text-anchor="{anchor}" fill="#555555">{label}</text>'
        )
    if figures.target is not None:
        at = y(figures.target)
        parts.append(
            f'<line x1="{LEFT}" y1="{at:.1f}" x2="{WIDTH - RIGHT}" y2="{at:.1f}" stroke="#b71c1c" stroke-width="1.5" '
            'stroke-dasharray="5,3"/>'
        )
        label = f"target {minutes(figures.target)}"
        parts.append(f'<text x="{WIDTH - RIGHT}" y="{at - 4:.1f}" text-anchor="end" fill="#b71c1c">{label}</text>')
    for record in figures.deploys:
        at = x(record.ended_at)
        title = f"<title>{escape(_describe(record))}</title>"
        if record.lead_time is not None:
            over = figures.target is not None and record.lead_time > figures.target
            colour = MARKS["over target" if over else "within target"]
            parts.append(f'<circle cx="{at:.1f}" cy="{y(record.lead_time):.1f}" r="4" fill="{colour}">{title}</circle>')
        elif record.failed:
            base = y(0)
            colour = MARKS[record.outcome]
            parts.append(
                f'<path d="M{at - 5:.1f},{base - 5:.1f} L{at + 5:.1f},{base + 5:.1f} M{at - 5:.1f},{base + 5:.1f} '
                f'L{at + 5:.1f},{base - 5:.1f}" stroke="{colour}" stroke-width="2.5">{title}</path>'
            )
    parts += _legend(list(MARKS.items()), height - 18)
    parts.append("</svg>")
    return "\n".join(parts)


def stages_svg(figures: DeliveryFigures, *, last: int = 30) -> str:
    """The last ``last`` deploys, one stacked bar each: where their lead time went (``segments``); a deploy that
    failed is labelled so in red, its bar ending where it stopped."""
    deploys = [r for r in figures.deploys if segments(r)][-last:]
    bars = [(record, segments(record)) for record in deploys]
    groups: dict[str, str] = {}
    for _, parts_of in bars:
        for label, _ in parts_of:
            if label not in groups:
                groups[label] = "#bdbdbd" if label == WAITING else PALETTE[(len(groups)) % len(PALETTE)]
    label_width, row, top = 250, 18, 40
    legend_rows = (len(groups) + 3) // 4
    height = top + row * max(1, len(bars)) + 40 + 18 * legend_rows
    longest = max([sum(s for _, s in p) for _, p in bars] + [figures.target or 0.0, 60.0])
    scale = (WIDTH - label_width - RIGHT) / longest
    parts = _open(height, f"{figures.environment}: stages of the last {len(bars)} deploys")
    if not bars:
        parts.append(f'<text x="{label_width}" y="{top + 14}" fill="#555555">no deploy in the window</text>')
    for i, (record, parts_of) in enumerate(bars):
        y = top + i * row
        colour = MARKS.get(record.outcome, "#333333") if record.failed else "#333333"
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 12}" text-anchor="end" fill="{colour}">'
            f"{escape(_label(record))}</text>"
        )
        left = float(label_width)
        for label, seconds in parts_of:
            width = seconds * scale
            parts.append(
                f'<rect x="{left:.1f}" y="{y + 2}" width="{width:.1f}" height="{row - 4}" fill="{groups[label]}">'
                f"<title>{escape(label)}: {minutes(seconds)}</title></rect>"
            )
            left += width
    if figures.target is not None:
        at = label_width + figures.target * scale
        bottom = top + row * max(1, len(bars))
        parts.append(
            f'<line x1="{at:.1f}" y1="{top - 6}" x2="{at:.1f}" y2="{bottom + 4}" stroke="#b71c1c" stroke-width="1.5" '
            'stroke-dasharray="5,3"/>'
        )
        parts.append(f'<text x="{at + 3:.1f}" y="{top - 8}" fill="#b71c1c">target {minutes(figures.target)}</text>')
    parts += _legend(list(groups.items()), height - 18 * legend_rows, per_row=4)
    parts.append("</svg>")
    return "\n".join(parts)


def _open(height: int, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]


def _legend(entries: Sequence[tuple[str, str]], y: int, per_row: int = 6) -> list[str]:
    parts = []
    for i, (label, colour) in enumerate(entries):
        left, at = LEFT + (i % per_row) * 200, y + (i // per_row) * 18
        parts.append(f'<rect x="{left}" y="{at - 9}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{left + 14}" y="{at}">{escape(label)}</text>')
    return parts


def _label(record: DeployRecord) -> str:
    """``11-29 10:00 frontend@1a2b3c4``, a failure marked: at most about 40 characters, which fit the label column."""
    when = record.ended_at.strftime("%m-%d %H:%M")
    mark = "" if record.outcome == DeploymentOutcome.SUCCEEDED.value else f" {record.outcome.upper()}"
    return f"{when} {record.change[:18]}{mark}"


def _describe(record: DeployRecord) -> str:
    lead = f", lead time {minutes(record.lead_time)}" if record.lead_time is not None else ""
    return f"{record.ended_at:%Y-%m-%d %H:%M} {record.change}: {record.outcome}{lead}"
