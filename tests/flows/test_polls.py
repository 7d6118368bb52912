"""The polls of the stages: scaled to a stage's budget, and a GitHub run's follow never slower than once a second."""

from __future__ import annotations

import pytest

from flows.stages import FOLLOW_RUN_POLL_CAP, follow_run_poll, poll_for


@pytest.mark.parametrize(
    ("budget", "initial", "cap"),
    [
        (360.0, 1.0, 9.0),  # a real build: 1/200 of the budget at first, 1/40 at most
        (6.0, 0.05, 0.2),  # a time-scaled sandbox's build: the floors
        (10_000.0, 1.0, 10.0),  # the ceilings
    ],
)
def test_poll_for_scales_with_the_budget(budget: float, initial: float, cap: float) -> None:
    poll = poll_for(budget)
    assert (poll.initial, poll.cap) == (pytest.approx(initial), pytest.approx(cap))


@pytest.mark.parametrize("budget", [1.8, 6.0, 360.0, 10_000.0])
def test_a_run_is_followed_at_least_once_a_second_and_never_slower_than_the_budget_says(budget: float) -> None:
    poll, scaled = follow_run_poll(budget), poll_for(budget)
    intervals = [poll.next() for _ in range(30)]
    assert max(intervals) <= FOLLOW_RUN_POLL_CAP == 1.0
    assert poll.initial <= scaled.initial
    assert poll.cap == min(scaled.cap, 1.0)
