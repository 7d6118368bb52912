"""The timeline picture: one bar per timed row, coloured by verdict, against the target and the roll-out budget."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from flows.report import DeploymentReport
from flows.timeline import LABEL_WIDTH, RIGHT_MARGIN, WIDTH, describe, in_model, timeline_svg
from flows.timing import Outcome, StageTiming, lead_time_rows

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rows() -> list[StageTiming]:
    table = [
        StageTiming("source build", at(30), at(330), 360),
        StageTiming("stack build", at(340), at(760), 360),  # over budget
        StageTiming("AWX job", at(770), at(800), 480, Outcome.FAILED),
        StageTiming("pod stack-0", None, None, 180, Outcome.NOT_REACHED),
    ]
    return table + lead_time_rows(at(0), None, None, rollout_budget=540, total_budget=900, failed=True)


def bars(svg: str) -> dict[str, ET.Element]:
    """The bars by their stage (each bar's tooltip starts with its stage)."""
    root = ET.fromstring(svg)
    found = {}
    for rect in root.iter(f"{SVG}rect"):
        title = rect.find(f"{SVG}title")
        if title is not None and title.text:
            found[title.text.split(":")[0]] = rect
    return found


def test_one_bar_per_timed_row_coloured_by_verdict():
    svg = timeline_svg(rows(), origin=at(0), target_seconds=900, rollout_budget=540, title="staging")
    found = bars(svg)
    assert set(found) == {"source build", "stack build", "AWX job"}, "rows without times get no bar"
    assert found["source build"].get("fill") == "#2e7d32"  # within budget
    assert found["stack build"].get("fill") == "#ef6c00"  # over budget
    assert found["AWX job"].get("fill") == "#c62828"  # failed
    root = ET.fromstring(svg)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "pod stack-0" in texts
    assert "not reached" in texts


def test_bars_and_budget_lines_sit_at_their_times_from_the_commit():
    svg = timeline_svg(rows(), origin=at(0), target_seconds=900, rollout_budget=540)
    span = 900 * 1.05  # the target is the furthest time
    plot = WIDTH - LABEL_WIDTH - RIGHT_MARGIN

    def x(seconds: float) -> float:
        return LABEL_WIDTH + plot * seconds / span

    source = bars(svg)["source build"]
    assert float(source.get("x", "")) == pytest.approx(x(30), abs=0.1)
    assert float(source.get("width", "")) == pytest.approx(x(330) - x(30), abs=0.1)
    dashed = [line for line in ET.fromstring(svg).iter(f"{SVG}line") if line.get("stroke-dasharray")]
    assert sorted(float(line.get("x1", "")) for line in dashed) == pytest.approx([x(540), x(900)], abs=0.1)
    assert "target 15m 00s" in svg
    assert "roll-out start budget 9m 00s" in svg


def test_a_scaled_picture_is_labelled_in_modelled_time():
    scaled = [StageTiming("source build", at(0.5), at(5.5), 6.0)]
    svg = timeline_svg(scaled, origin=at(0), target_seconds=15.0, rollout_budget=9.0, time_scale=60)
    assert "target 15.0 min" in svg
    assert "roll-out start budget 9.0 min" in svg
    assert "5.0 min" in svg  # the bar's label
    assert "5.0 s at speed 60 = 5.0 min" in svg  # its tooltip
    ticks = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text") if t.text and re.fullmatch(r"[\d.]+ min", t.text)]
    assert "2.0 min" in ticks


@pytest.mark.parametrize(
    ("seconds", "scale", "text"),
    [(14.1, 60, "14.1 s at speed 60 = 14.1 min"), (0.5, 60, "0.5 s at speed 60 = 30 s"), (905, 1, "15m 05s")],
)
def test_describe(seconds: float, scale: float, text: str):
    assert describe(seconds, scale) == text


def test_in_model():
    assert in_model(3.0, 60) == "3.0 min"
    assert in_model(0.1, 60) == "6 s"


def test_the_summary_carries_the_picture():
    report = DeploymentReport(environment="staging", source="frontend", sha="1a2b3c4d5e", image="x/y:latest")
    report.change_at = at(0)
    for row in rows():
        report.table.add(row)
    text = report.summary_markdown(target_seconds=900, rollout_budget=540)
    match = re.search(r"!\[staging deployment timeline\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", text)
    assert match, text
    svg = base64.b64decode(match.group(1)).decode()
    assert set(bars(svg)) == {"source build", "stack build", "AWX job"}
    assert "staging &lt;- frontend@1a2b3c4: FAILED" in svg
