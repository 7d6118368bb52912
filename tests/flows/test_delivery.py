"""The delivery figures on fixed synthetic histories. Every expected number is worked out by hand in the comments,
never computed by the code under test."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from flows.delivery import delivery_figures, percentile
from flows.delivery_page import figure_rows, render_markdown
from flows.delivery_svg import WAITING, lead_time_svg, segments, stages_svg
from flows.history import DeployRecord, StageRecord

UNTIL = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def row(stage: str, start: datetime | None, seconds: float | None, verdict: str = "within budget", budget=None):
    finished = start + timedelta(seconds=seconds) if start is not None and seconds is not None else None
    return StageRecord(stage, start, finished, seconds, budget, verdict)


def staging(run_id: str, outcome: str, ended: str, *, lead: float | None, stack_build: float | None, awx=True):
    """A staging deploy that ended at ``ended``: its commit 20 minutes before, the stack build from minute 1."""
    end = at(ended)
    change = end - timedelta(minutes=20)
    rows = [row("source build", change, 50)]
    verdict = "within budget" if stack_build is not None else "failed"
    rows.append(row("stack build", change + timedelta(minutes=1), stack_build, verdict))
    if awx:
        rows.append(row("AWX job start", change + timedelta(minutes=12), 20))
    rows.append(row("total (lead time)", change, lead, "ok" if lead is not None else "failed", budget=900))
    return DeployRecord(
        run_id, "staging", outcome, "frontend", run_id * 5, f"frontend@{run_id}", "sha256:d", end, tuple(rows)
    )


def staging_history() -> list[DeployRecord]:
    failed_roll_out = staging("f1", "failed", "2026-11-25T09:00", lead=None, stack_build=420)
    pod = row("pod stack-1", at("2026-11-25T08:55"), 180, "failed")  # failed at 08:58:00
    failed_roll_out = DeployRecord(**{**failed_roll_out.__dict__, "stages": (*failed_roll_out.stages, pod)})
    next_ok = staging("s3", "succeeded", "2026-11-25T09:30", lead=780, stack_build=480)
    verify = row("verify", at("2026-11-25T09:28:50"), 10)  # verified at 09:29:00
    next_ok = DeployRecord(**{**next_ok.__dict__, "stages": (*next_ok.stages, verify)})
    return [
        staging("old", "succeeded", "2026-10-20T10:00", lead=100, stack_build=100),  # before the window
        staging("s1", "succeeded", "2026-11-10T10:20", lead=840, stack_build=300),
        staging("s2", "succeeded", "2026-11-20T10:20", lead=960, stack_build=360),
        failed_roll_out,
        next_ok,
        staging("b1", "failed", "2026-11-26T10:00", lead=None, stack_build=None, awx=False),  # no AWX: no change
        staging("c1", "superseded", "2026-11-27T10:00", lead=None, stack_build=None, awx=False),
        staging("s4", "succeeded", "2026-11-28T11:00", lead=900, stack_build=600),
        staging("later", "succeeded", "2026-11-30T12:30", lead=10, stack_build=10),  # after `until`
    ]


def test_percentiles_are_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0  # ceil(0.5 * 4) = 2nd
    assert percentile([float(v) for v in range(1, 21)], 0.95) == 19.0  # ceil(0.95 * 20) = 19th


def test_a_staging_history():
    figures = delivery_figures(staging_history(), "staging", until=UNTIL, days=30)
    # in the window (after 2026-10-31 12:00, up to 2026-11-30 12:00): s1 s2 f1 s3 b1 s4, and c1 apart
    assert [r.run_id for r in figures.deploys] == ["s1", "s2", "f1", "s3", "b1", "s4"]
    assert [r.run_id for r in figures.apart] == ["c1"]
    assert (figures.count("succeeded"), figures.count("failed"), figures.count("rolled-back")) == (4, 2, 0)
    assert figures.deploys_per_day == pytest.approx(0.2)  # 6 / 30
    day = dict(figures.per_day)
    assert day[at("2026-11-25T00:00").date()] == {"succeeded": 1, "failed": 1, "rolled-back": 0}
    assert len(figures.per_day) == 31  # 2026-10-31 .. 2026-11-30, partial days at both ends
    rows = {row["figure"]: row["value"] for row in figure_rows(figures)}
    assert (rows["deploys on 2026-11-25 succeeded"], rows["deploys on 2026-11-25 failed"]) == (1, 1)
    assert "deploys on 2026-11-27 succeeded" not in rows, "c1 was superseded: not a deploy"
    page = render_markdown(figures)
    assert "| 2026-11-25 | 1 | 1 | 0 |" in page
    assert "26 of the 31 days had no deploy." in page  # deploys on 11-10, 11-20, 11-25, 11-26, 11-28
    # lead times 840 960 780 900 -> sorted 780 840 900 960: p50 the 2nd, p95 the 4th; 960 over the 900-s target
    assert figures.lead_time is not None
    assert (figures.lead_time.p50, figures.lead_time.p95, figures.lead_time.count) == (840, 960, 4)
    assert (figures.target, figures.over_target) == (900, 1)
    assert figures.approval_wait is None
    # changes: s1 s2 f1 s3 s4 (b1 never launched AWX); one of them failed
    assert (figures.changes, figures.change_failures, figures.change_failure_rate) == (5, 1, 0.2)
    # f1 failed at 08:58:00 (its pod's end); s3 verified at 09:29:00: 31 minutes
    (restore,) = figures.restores
    assert restore.failure.run_id == "f1"
    assert restore.restored_by is not None
    assert restore.restored_by.run_id == "s3"
    assert restore.seconds == 1860
    # stack build: 300 360 420 480 600 -> p50 the 3rd (420), p95 the 5th (600); last 7 days (after 11-23 12:00)
    # f1 s3 s4: 420 480 600 -> p50 480; the 7 before (11-16 12:00 .. 11-23 12:00): s2 360; trend 480/360 - 1
    stack = next(s for s in figures.stages if s.stage == "stack build")
    assert (stack.spread.p50, stack.spread.p95, stack.spread.count) == (420, 600, 5)
    assert (stack.recent_p50, stack.before_p50) == (480, 360)
    assert stack.trend == pytest.approx(1 / 3)
    # the failed pod row did not run to its end: not a stage timing
    assert "pod stack-1" not in {s.stage for s in figures.stages}


def production(run_id: str, outcome: str, ended: str, rows: list[StageRecord]) -> DeployRecord:
    return DeployRecord(
        run_id, "production", outcome, "stack", run_id, f"tag {run_id}", "sha256:p", at(ended), tuple(rows)
    )


def test_a_production_history_with_approvals_a_rollback_and_a_failure_not_restored():
    records = [
        production(  # approved after 600 s; lead time 840 s with the approval left out
            "1.0.3",
            "succeeded",
            "2026-11-29T10:00",
            [
                row("approval", at("2026-11-29T09:30"), 600, "ok"),
                row("AWX job start", at("2026-11-29T09:41"), 20),
                row("verify", at("2026-11-29T09:55"), 10),
                row("total (lead time)", at("2026-11-29T09:20"), 840, "ok", budget=900),
            ],
        ),
        production(  # its pod failed at 13:50:00, the rollback verified at 13:56:00: 360 s
            "1.0.4",
            "rolled-back",
            "2026-11-29T14:00",
            [
                row("AWX job start", at("2026-11-29T13:40"), 20),
                row("pod stack-1", at("2026-11-29T13:45"), 300, "failed"),
                row("rollback verify", at("2026-11-29T13:55:50"), 10),
                row("total (lead time)", at("2026-11-29T13:30"), None, "failed", budget=900),
            ],
        ),
        production("1.0.5", "rejected", "2026-11-29T16:00", [row("approval", at("2026-11-29T15:40"), 1200, "ok")]),
        production(  # failed at 07:55:00 and nothing verified since
            "1.0.6",
            "failed",
            "2026-11-30T08:00",
            [row("AWX job start", at("2026-11-30T07:40"), 20), row("AWX job", at("2026-11-30T07:45"), 600, "failed")],
        ),
    ]
    figures = delivery_figures([*records, *staging_history()], "production", until=UNTIL, days=7)
    assert [r.run_id for r in figures.deploys] == ["1.0.3", "1.0.4", "1.0.6"]
    assert [r.outcome for r in figures.apart] == ["rejected"]
    assert figures.lead_time is not None
    assert (figures.lead_time.p50, figures.lead_time.p95) == (840, 840)
    # approval waits 600 and 1200 (the rejected run's too): p50 the 1st, p95 the 2nd
    assert figures.approval_wait is not None
    assert (figures.approval_wait.p50, figures.approval_wait.p95, figures.approval_wait.count) == (600, 1200, 2)
    assert (figures.changes, figures.change_failures) == (3, 2)
    assert figures.change_failure_rate == pytest.approx(2 / 3)
    rolled_back, not_restored = figures.restores
    assert rolled_back.restored_by is rolled_back.failure
    assert rolled_back.seconds == 360
    assert not_restored.restored_at is None
    assert not_restored.seconds is None
    assert figures.time_to_restore is not None
    assert figures.time_to_restore.p50 == 360
    page = render_markdown(figures)
    assert "2 failed or rolled back of 3" in page
    assert "1 not restored yet" in page
    assert "its own rollback, verified" in page
    assert "1 rejected" in page


def test_clocks_a_little_apart_never_give_a_negative_restore_or_an_earlier_deploy():
    # the cluster's clock 2 s behind AWX's: the rollback verified "before" the pod failed
    skewed = production(
        "2.0.0",
        "rolled-back",
        "2026-11-29T14:00",
        [
            row("AWX job start", at("2026-11-29T13:40"), 20),
            row("pod stack-1", at("2026-11-29T13:50"), 60, "failed"),  # failed at 13:51:00
            row("rollback verify", at("2026-11-29T13:50:48"), 10),  # verified at 13:50:58
        ],
    )
    # a failure restored by the next deploy whose verification a skewed clock put a little before the failure:
    # the next deploy by Prefect's clock is the one that restored it (0 s), not an earlier one
    earlier = production("2.0.1", "succeeded", "2026-11-29T15:00", [row("verify", at("2026-11-29T14:59"), 10)])
    failed = production(
        "2.0.2", "failed", "2026-11-29T16:00", [row("AWX job", at("2026-11-29T15:50"), 60, "failed")]
    )  # failed at 15:51:00
    next_ok = production("2.0.3", "succeeded", "2026-11-29T17:00", [row("verify", at("2026-11-29T15:50:50"), 5)])
    figures = delivery_figures([skewed, earlier, failed, next_ok], "production", until=UNTIL, days=2)
    first, second = figures.restores
    assert first.seconds == 0.0
    assert second.restored_by is next_ok
    assert second.seconds == 0.0


def test_no_deploys_one_deploy_and_only_failures():
    empty = delivery_figures([], "staging", until=UNTIL, days=30)
    assert (len(empty.deploys), empty.lead_time, empty.change_failure_rate, empty.time_to_restore) == (
        0,
        None,
        None,
        None,
    )
    page = render_markdown(empty)
    assert "No deploy of staging ended in the last 30 days." in page
    rows = {r["figure"]: r["value"] for r in figure_rows(empty)}
    assert (rows["deploys"], rows["lead time p50 seconds"], rows["change failure rate"]) == (0, None, None)
    for picture in (lead_time_svg(empty), stages_svg(empty)):
        ET.fromstring(picture)  # well-formed

    one = delivery_figures(
        [staging("s1", "succeeded", "2026-11-29T10:00", lead=700, stack_build=300)], "staging", until=UNTIL
    )
    assert one.lead_time is not None
    assert (one.lead_time.p50, one.lead_time.p95, one.lead_time.count) == (700, 700, 1)
    (stack,) = [s for s in one.stages if s.stage == "stack build"]
    assert (stack.recent_p50, stack.before_p50, stack.trend) == (300, None, None)

    failures = [
        staging("f1", "failed", "2026-11-28T10:00", lead=None, stack_build=300),
        staging("f2", "failed", "2026-11-29T10:00", lead=None, stack_build=300),
    ]
    only = delivery_figures(failures, "staging", until=UNTIL)
    assert only.lead_time is None
    assert only.change_failure_rate == 1.0
    assert [r.restored_at for r in only.restores] == [None, None]
    assert "2 not restored yet" in render_markdown(only)


def test_days_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        delivery_figures([], "staging", until=UNTIL, days=0)


def test_a_record_survives_its_table_rows():
    (record,) = [r for r in staging_history() if r.run_id == "f1"]
    back = DeployRecord.from_rows(record.rows(), ended_at=record.ended_at)
    assert back == record
    assert record.rows()[0]["started"] == "2026-11-25T08:40:00+00:00"  # ISO, with its zone


def test_a_stacked_bar_cuts_the_lead_time_into_what_was_going_on():
    t0 = at("2026-11-29T10:00")

    def span(stage, start, end, verdict="within budget"):
        return StageRecord(
            stage, t0 + timedelta(seconds=start), t0 + timedelta(seconds=end), end - start, None, verdict
        )

    record = DeployRecord(
        "r",
        "staging",
        "succeeded",
        "frontend",
        "a" * 40,
        "frontend@aaaaaaa",
        "sha256:d",
        t0 + timedelta(seconds=900),
        (
            span("source build", 60, 360),
            span("stack build", 400, 700),
            span("image", 700, 710),
            span("AWX job start", 710, 730),
            span("AWX job", 730, 880),
            span("pod stack-1", 740, 800),
            span("pod stack-0", 800, 860),
            span("verify", 860, 870),
            span("commit -> roll-out start", 0, 740, "ok"),
            span("total (lead time)", 0, 860, "ok"),
        ),
    )
    # 0-60 and 360-400 waiting; the pods inside the AWX job are the roll-out; verify starts at the end
    assert segments(record) == [
        (WAITING, 100.0),
        ("source build", 300.0),
        ("stack build", 300.0),
        ("image", 10.0),
        ("AWX job start", 20.0),
        ("AWX job", 10.0),
        ("roll-out (pods)", 120.0),
    ]
    # production: the approval (310-910) is left out, as in the lead time (1060 - 600 = 460)
    with_approval = DeployRecord(
        "p",
        "production",
        "succeeded",
        "stack",
        "1.0.3",
        "tag 1.0.3",
        "sha256:p",
        t0 + timedelta(seconds=1100),
        (
            span("stack build", 0, 300),
            span("image", 300, 310),
            span("approval", 310, 910, "ok"),
            span("AWX job start", 910, 930),
            span("AWX job", 930, 1100),
            span("pod stack-1", 940, 1000),
            span("pod stack-0", 1000, 1060),
            span("total (lead time)", 0, 1060, "ok"),
        ),
    )
    parts = dict(segments(with_approval))
    assert parts == {
        "stack build": 300.0,
        "image": 10.0,
        "AWX job start": 20.0,
        "AWX job": 10.0,
        "roll-out (pods)": 120.0,
    }
    assert sum(parts.values()) == 460.0


def test_the_pictures_mark_failures_and_the_target():
    figures = delivery_figures(staging_history(), "staging", until=UNTIL, days=30)
    lead = ET.fromstring(lead_time_svg(figures))
    ns = "{http://www.w3.org/2000/svg}"
    dots = lead.findall(f"{ns}circle")
    crosses = lead.findall(f"{ns}path")
    assert len(dots) == 4
    assert len(crosses) == 2
    assert sum(1 for d in dots if d.get("fill") == "#ef6c00") == 1  # s2 over the target
    assert any("target 15.0 min" in (t.text or "") for t in lead.iter(f"{ns}text"))
    bars = ET.fromstring(stages_svg(figures))
    labels = [t.text or "" for t in bars.iter(f"{ns}text")]
    assert any("FAILED" in label for label in labels)
