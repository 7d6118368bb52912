"""The timing table's pure logic: durations, verdicts, derived lead-time rows, formatting, the summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows.report import DeploymentOutcome, DeploymentReport
from flows.timing import (
    Outcome,
    StageTiming,
    TimingTable,
    format_seconds,
    lead_time_rows,
    render_table,
)

T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("timing", "verdict"),
    [
        (StageTiming("build", at(0), at(100), budget=120), "within budget"),
        (StageTiming("build", at(0), at(120), budget=120), "within budget"),
        (StageTiming("build", at(0), at(121), budget=120), "OVER BUDGET"),
        (StageTiming("build", at(0), at(500), budget=None), "ok"),
        (StageTiming("build", at(0), None, budget=120), "ok"),
        (StageTiming("build", at(0), at(10), budget=120, outcome=Outcome.FAILED), "failed"),
        (StageTiming("build", outcome=Outcome.SKIPPED), "skipped"),
    ],
)
def test_verdicts(timing: StageTiming, verdict: str):
    assert timing.verdict == verdict


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (0.04, "0.0 s"), (4.26, "4.3 s"), (59.9, "59.9 s"), (60, "1m 00s"), (905.4, "15m 05s")],
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_lead_time_rows_measure_from_the_commit():
    rows = lead_time_rows(at(0), at(530), at(890), rollout_budget=540, total_budget=900, failed=False)
    assert [(r.stage, r.duration, r.verdict) for r in rows] == [
        ("commit -> roll-out start", 530.0, "within budget"),
        ("total (lead time)", 890.0, "within budget"),
    ]
    unreached = lead_time_rows(at(0), None, None, rollout_budget=540, total_budget=900, failed=True)
    assert [r.verdict for r in unreached] == ["not reached", "not reached"]


def test_slowest_ignores_the_derived_rows():
    table = TimingTable()
    table.add(StageTiming("source build", at(0), at(240), 360))
    table.add(StageTiming("stack build", at(250), at(500), 360))
    for row in lead_time_rows(at(0), at(540), at(900), rollout_budget=540, total_budget=900, failed=False):
        table.add(row)
    slowest = table.slowest()
    assert slowest is not None
    assert slowest.stage == "stack build"


def test_summary_names_the_failed_stage_and_the_target():
    report = DeploymentReport(environment="staging", source="frontend", sha="1a2b3c4d5e", image="x/y:latest")
    report.table.add(StageTiming("AWX job", at(0), at(30), 480, Outcome.FAILED, link="http://awx/#/jobs/1"))
    report.failed_stage = "AWX job"
    report.error = "stage 'AWX job' failed: job 1 ended failed"
    text = report.summary_markdown(target_seconds=900, rollout_budget=540)
    assert "FAILED" in text
    assert "frontend@1a2b3c4" in text
    assert "**Failed stage**: AWX job" in text
    assert "job 1 ended failed" in text
    assert "not measured (target 15m 00s)" in text


def test_summary_keeps_a_stuck_pods_log_and_events_in_a_block_of_their_own():
    report = DeploymentReport(environment="staging", source="frontend", sha="1a2b3c4d5e", image="x/y:latest")
    report.failed_stage = "roll-out"
    details = "last 2 log lines of the previous (crashed) container stack:\n    x = `y`\n    ```\nevents: none"
    report.error = f"stage 'roll-out' failed: pod staging-stack/stack-1 ... CrashLoopBackOff\n{details}"
    text = report.summary_markdown(target_seconds=900, rollout_budget=540)
    assert "> stage 'roll-out' failed: pod staging-stack/stack-1 ... CrashLoopBackOff\n" in text
    # a fence longer than any run of backticks in the lines, so that none of them ends the block
    assert f"\n````text\n{details}\n````\n" in text


def test_render_table_aligns_columns():
    rows = [StageTiming("a", at(0), at(1.5), 2).as_row(), StageTiming("longer stage", at(0), at(3), 2).as_row()]
    lines = render_table(rows).splitlines()
    assert lines[0].startswith("stage")
    assert lines[2].startswith("a            ")
    assert "OVER BUDGET" in lines[3]


def test_a_scaled_row_says_what_it_stands_for_in_the_modelled_world():
    row = StageTiming("total (lead time)", at(0), at(14.1), budget=15.0)
    assert "modelled" not in row.as_row()
    assert row.as_row(60)["modelled"] == "14.1 of 15.0 min"
    assert StageTiming("image", at(0), at(0.1), budget=0.5).as_row(60)["modelled"] == "6.0 of 30.0 s"
    assert StageTiming("image", at(0), at(0.1), budget=1.0).as_row(60)["modelled"] == "0.1 of 1.0 min"
    assert StageTiming("pod stack-0", at(0), None, budget=3.0).as_row(60)["modelled"] == "? of 3.0 min"
    assert list(row.as_row(60)) == ["stage", "started", "finished", "duration", "budget", "modelled", "verdict", "link"]


def test_a_scaled_summary_gives_the_modelled_figures():
    report = DeploymentReport(environment="staging", source="frontend", sha="1a2b3c4d5e", image="x/y:latest")
    report.change_at = at(0)
    report.table.add(StageTiming("source build", at(0.5), at(4.3), 6.0))
    for row in lead_time_rows(at(0), at(8.4), at(14.1), rollout_budget=9.0, total_budget=15.0, failed=False):
        report.table.add(row)
    report.outcome = DeploymentOutcome.SUCCEEDED
    text = report.summary_markdown(target_seconds=15.0, rollout_budget=9.0, time_scale=60)
    assert "14.1 s at speed 60 = 14.1 min — within the 15.0 s at speed 60 = 15.0 min target" in text
    assert "a sandbox at speed 60" in text
    real = report.summary_markdown(target_seconds=15.0, rollout_budget=9.0)
    assert "14.1 s — within the 15.0 s target" in real
    assert "speed" not in real


def test_the_lead_time_leaves_the_approval_wait_out():
    rows = lead_time_rows(
        at(0), at(600), at(1100), rollout_budget=540, total_budget=900, failed=False, change="tag push", excluded=300
    )
    assert [(r.stage, r.duration, r.as_row()["verdict"]) for r in rows] == [
        ("tag push -> roll-out start", 300.0, "within budget (5m 00s of approval left out)"),
        ("total (lead time)", 800.0, "within budget (5m 00s of approval left out)"),
    ]
    assert rows[1].as_payload()["excluded_seconds"] == 300


def test_the_approval_wait_is_no_stage_of_its_own():
    table = TimingTable()
    table.add(StageTiming("stack build", at(0), at(240), 360))
    table.add(StageTiming("approval", at(250), at(5000), None, note="approved by ana"))
    slowest = table.slowest()
    assert slowest is not None
    assert slowest.stage == "stack build"
