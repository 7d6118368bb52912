"""The deployment's timeline as a picture: one bar per stage and pod from the services' timestamps, coloured by
verdict, against the lead-time target and the commit -> roll-out start budget. Pure functions, no Prefect.

The UI renders an inline SVG in a markdown artifact (FACTS.md), so the summary carries it as a data URI.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from xml.sax.saxutils import escape

from flows.timing import Outcome, StageTiming, format_seconds

COLOURS = {
    "within budget": "#2e7d32",
    "ok": "#1565c0",
    "OVER BUDGET": "#ef6c00",
    Outcome.FAILED.value: "#c62828",
    Outcome.NOT_REACHED.value: "#9e9e9e",
    Outcome.SKIPPED.value: "#9e9e9e",
}
LEGEND = (
    ("within budget", "within budget"),
    ("over budget", "OVER BUDGET"),
    ("failed", Outcome.FAILED.value),
    ("not reached", Outcome.NOT_REACHED.value),
)

WIDTH = 880
LABEL_WIDTH = 190
RIGHT_MARGIN = 150
ROW_HEIGHT = 22
TOP = 60
BOTTOM = 58


def in_model(seconds: float, time_scale: float) -> str:
    """What ``seconds`` of a sandbox at speed ``time_scale`` stand for: ``14.1 min`` (or ``42 s``)."""
    modelled = seconds * time_scale
    return f"{modelled / 60:.1f} min" if modelled >= 60 else f"{modelled:.0f} s"


def describe(seconds: float, time_scale: float) -> str:
    """``14.1 s at speed 60 = 14.1 min``; plain ``4m 02s`` for real services (speed 1)."""
    if time_scale == 1:
        return format_seconds(seconds)
    return f"{format_seconds(seconds)} at speed {time_scale:g} = {in_model(seconds, time_scale)}"


def timeline_svg(
    rows: Sequence[StageTiming],
    *,
    origin: datetime | None,
    target_seconds: float,
    rollout_budget: float,
    time_scale: float = 1.0,
    title: str = "",
) -> str:
    """The SVG picture of ``rows`` (the timing table, in order), time running from ``origin`` (the commit).

    A row without a start or an end is drawn as a label with its verdict and no bar.
    """
    starts = [row.started for row in rows if row.started]
    origin = origin or (min(starts) if starts else None)
    ends = [_offset(origin, row.finished) for row in rows if row.finished] if origin else []
    span = max([target_seconds, rollout_budget, *ends]) * 1.05 or 1.0
    plot_width = WIDTH - LABEL_WIDTH - RIGHT_MARGIN
    height = TOP + ROW_HEIGHT * len(rows) + BOTTOM

    def x(seconds: float) -> float:
        return LABEL_WIDTH + plot_width * max(0.0, seconds) / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="8" y="18" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    parts += _axis(x, span, time_scale, top=TOP - 8, bottom=height - BOTTOM + 4)
    for index, row in enumerate(rows):
        y = TOP + index * ROW_HEIGHT
        colour = COLOURS.get(row.verdict, COLOURS["ok"])
        parts.append(f'<text x="{LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end">{escape(row.stage)}</text>')
        if origin is None or row.started is None or row.finished is None or row.duration is None:
            parts.append(f'<text x="{LABEL_WIDTH + 4}" y="{y + 15}" fill="{colour}">{escape(row.verdict)}</text>')
            continue
        left, right = x(_offset(origin, row.started)), x(_offset(origin, row.finished))
        parts.append(
            f'<rect x="{left:.1f}" y="{y + 4}" width="{max(1.5, right - left):.1f}" height="{ROW_HEIGHT - 8}" '
            f'fill="{colour}"><title>{escape(row.stage)}: {escape(describe(row.duration, time_scale))}, '
            f"{escape(row.verdict)}</title></rect>"
        )
        label = format_seconds(row.duration) if time_scale == 1 else in_model(row.duration, time_scale)
        parts.append(f'<text x="{right + 4:.1f}" y="{y + 15}" fill="#333333">{escape(label)}</text>')
    parts += _budget_line(x(rollout_budget), "roll-out start budget", rollout_budget, time_scale, TOP, height)
    parts += _budget_line(x(target_seconds), "target", target_seconds, time_scale, TOP, height)
    parts += _legend(height - 14)
    parts.append("</svg>")
    return "\n".join(parts)


def svg_markdown(svg: str, alt: str = "timeline") -> str:
    """The picture as a markdown image with a data URI, which the Prefect UI renders inline."""
    return f"![{alt}](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()})"


def _offset(origin: datetime | None, moment: datetime) -> float:
    return (moment - origin).total_seconds() if origin else 0.0


def _axis(place: Callable[[float], float], span: float, time_scale: float, *, top: int, bottom: int) -> list[str]:
    """Ticks at a round step of modelled time (what the reader thinks in), labelled in modelled units."""
    step = nice_step(span * time_scale / 8) / time_scale
    parts = [f'<line x1="{place(0):.1f}" y1="{bottom}" x2="{place(span):.1f}" y2="{bottom}" stroke="#555555"/>']
    for i in range(int(span / step) + 1):
        seconds = i * step
        at = place(seconds)
        parts.append(f'<line x1="{at:.1f}" y1="{top}" x2="{at:.1f}" y2="{bottom}" stroke="#eeeeee"/>')
        label = format_seconds(seconds) if time_scale == 1 else in_model(seconds, time_scale)
        parts.append(f'<text x="{at:.1f}" y="{bottom + 14}" text-anchor="middle" fill="#555555">{label}</text>')
    return parts


def nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, or whole minutes, at least ``raw``."""
    if raw <= 0:
        return 1.0
    for minutes in (1, 2, 5, 10, 15, 30, 60):
        if 60 <= raw <= minutes * 60:
            return minutes * 60.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(k * power for k in (1, 2, 5, 10) if k * power >= raw)


def _budget_line(at: float, name: str, seconds: float, time_scale: float, top: int, height: int) -> list[str]:
    label = f"{name} {format_seconds(seconds) if time_scale == 1 else in_model(seconds, time_scale)}"
    return [
        f'<line x1="{at:.1f}" y1="{top - 6}" x2="{at:.1f}" y2="{height - BOTTOM + 4}" stroke="#b71c1c" '
        'stroke-width="1.5" stroke-dasharray="5,3"/>',
        f'<text x="{at + 3:.1f}" y="{top - 8 if name == "target" else top - 22}" fill="#b71c1c">{escape(label)}</text>',
    ]


def _legend(y: int) -> list[str]:
    parts = []
    left = LABEL_WIDTH
    for label, verdict in LEGEND:
        parts.append(f'<rect x="{left}" y="{y - 9}" width="10" height="10" fill="{COLOURS[verdict]}"/>')
        parts.append(f'<text x="{left + 14}" y="{y}">{label}</text>')
        left += 110
    return parts
