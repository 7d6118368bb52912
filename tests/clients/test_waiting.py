"""``poll_until``: the one poll loop of the clients, table-tested on a fake clock (no real time is measured)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from clients.waiting import Deadline, Poll, Relaxed, poll_until


class FakeDeadline(Deadline):
    """A ``Deadline`` on a fake clock: ``sleep`` moves the clock on at once (unless ``stop`` is set)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[float], None] = lambda now: None

    def remaining(self) -> float:
        return max(0.0, self.seconds - self.now)

    @property
    def expired(self) -> bool:
        return self.now >= self.seconds

    def sleep(self, seconds: float, stop: threading.Event | None = None, wake: threading.Event | None = None) -> None:
        wait = max(0.0, min(seconds, self.remaining()))
        self.sleeps.append(wait)
        if (stop is not None and stop.is_set()) or (wake is not None and wake.is_set()):
            return
        self.now += wait
        self.on_sleep(self.now)


@dataclass
class Check:
    """A check that answers ``value`` from the ``ready``-th call on (0: never), and records when it ran."""

    deadline: FakeDeadline
    ready: int = 0
    value: str = "done"
    stop: threading.Event | None = None
    stop_at_call: int = 0
    calls: list[float] = field(default_factory=list)

    def __call__(self) -> str | None:
        self.calls.append(self.deadline.now)
        if self.stop is not None and len(self.calls) == self.stop_at_call:
            self.stop.set()
        return self.value if self.ready and len(self.calls) >= self.ready else None


def steady(seconds: float) -> Poll:
    return Poll(initial=seconds, factor=1.0, cap=seconds)


@pytest.mark.parametrize(
    ("seconds", "poll", "ready", "result", "check_times", "sleeps"),
    [
        pytest.param(10.0, steady(1.0), 1, "done", [0.0], [], id="a value at once: no sleep"),
        pytest.param(10.0, steady(1.0), 3, "done", [0.0, 1.0, 2.0], [1.0, 1.0], id="a value on the third check"),
        pytest.param(
            10.0,
            Poll(initial=0.5, factor=2.0, cap=2.0),
            5,
            "done",
            [0.0, 0.5, 1.5, 3.5, 5.5],
            [0.5, 1, 2, 2],
            id="the poll grows to its cap",
        ),
        pytest.param(
            2.0,
            steady(0.75),
            0,
            None,
            [0.0, 0.75, 1.5, 2.0],
            [0.75, 0.75, 0.5],
            id="at the deadline: the last sleep is cut to it and one last check runs after it",
        ),
        pytest.param(
            2.0,
            steady(0.75),
            4,
            "done",
            [0.0, 0.75, 1.5, 2.0],
            [0.75, 0.75, 0.5],
            id="a value found by the check at the deadline is returned",
        ),
        pytest.param(0.0, steady(1.0), 0, None, [0.0], [], id="a deadline of zero: one check"),
        pytest.param(2.0, steady(5.0), 0, None, [0.0, 2.0], [2.0], id="a poll longer than the deadline"),
    ],
)
def test_poll_until_on_a_fake_clock(
    seconds: float,
    poll: Poll,
    ready: int,
    result: str | None,
    check_times: list[float],
    sleeps: list[float],
) -> None:
    deadline = FakeDeadline(seconds)
    check = Check(deadline, ready=ready)
    assert poll_until(check, deadline, poll) == result
    assert check.calls == check_times
    assert deadline.sleeps == sleeps


def test_the_check_can_reset_the_poll_on_a_change() -> None:
    deadline = FakeDeadline(100.0)
    poll = Poll(initial=1.0, factor=2.0, cap=8.0)
    calls = 0

    def check() -> int | None:
        nonlocal calls
        calls += 1
        if calls == 4:
            poll.reset()  # something changed: look again soon
        return calls if calls == 6 else None

    assert poll_until(check, deadline, poll) == 6
    assert deadline.sleeps == [1.0, 2.0, 4.0, 1.0, 2.0]


def test_stop_set_before_the_wait_still_allows_one_check() -> None:
    deadline = FakeDeadline(10.0)
    stop = threading.Event()
    stop.set()
    assert poll_until(Check(deadline), deadline, steady(1.0), stop) is None
    assert deadline.sleeps == []
    ready = Check(deadline, ready=1)
    assert poll_until(ready, deadline, steady(1.0), stop) == "done"
    assert ready.calls == [0.0]


def test_stop_set_by_a_check_makes_it_the_last() -> None:
    deadline = FakeDeadline(10.0)
    stop = threading.Event()
    check = Check(deadline, stop=stop, stop_at_call=3)
    assert poll_until(check, deadline, steady(1.0), stop) is None
    assert check.calls == [0.0, 1.0, 2.0]


def test_stop_set_during_a_sleep_cuts_it_short_and_one_more_check_runs() -> None:
    deadline = FakeDeadline(10.0)
    stop = threading.Event()
    deadline.on_sleep = lambda now: stop.set() if now >= 2.0 else None
    check = Check(deadline)
    assert poll_until(check, deadline, steady(1.0), stop) is None
    assert check.calls == [0.0, 1.0, 2.0]
    # a result that comes with the stop is not thrown away
    stop.clear()
    deadline = FakeDeadline(10.0)
    deadline.on_sleep = lambda now: stop.set()
    check = Check(deadline, ready=2)
    assert poll_until(check, deadline, steady(1.0), stop) == "done"


def test_real_clock_the_last_check_starts_after_the_deadline() -> None:
    deadline = Deadline(0.05)
    seen: list[bool] = []

    def check() -> None:
        seen.append(deadline.expired)

    assert poll_until(check, deadline, steady(0.01)) is None
    assert seen[-1] is True
    assert deadline.expired


def test_real_clock_stop_from_another_thread_ends_a_long_sleep() -> None:
    deadline = Deadline(300.0)
    stop = threading.Event()
    calls: list[int] = []

    def check() -> None:
        calls.append(1)
        if len(calls) == 1:
            threading.Timer(0.01, stop.set).start()

    assert poll_until(check, deadline, steady(300.0), stop) is None
    assert len(calls) == 2
    assert not deadline.expired


def test_wake_set_during_a_check_makes_the_next_check_come_at_once_and_is_cleared() -> None:
    deadline = FakeDeadline(100.0)
    wake = threading.Event()
    statuses = iter(["pending", "running", "successful"])
    woken: list[bool] = []

    def check() -> str | None:
        woken.append(wake.is_set())
        status = next(statuses)
        wake.set()  # the service pushes the next change while we read this one
        return status if status == "successful" else None

    assert poll_until(check, deadline, steady(30.0), wake=wake) == "successful"
    assert deadline.now == 0.0  # no sleep ran its course: each push cut it short
    assert woken == [False, False, False]  # cleared before each check


def test_real_clock_wake_from_another_thread_ends_a_long_sleep_and_stop_still_works() -> None:
    deadline = Deadline(300.0)
    wake, stop = threading.Event(), threading.Event()
    calls: list[int] = []

    def check() -> int | None:
        calls.append(1)
        if len(calls) == 1:
            threading.Timer(0.01, wake.set).start()
        if len(calls) == 2:
            threading.Timer(0.01, stop.set).start()
        return None

    assert poll_until(check, deadline, steady(300.0), stop, wake) is None
    assert len(calls) == 3
    assert stop.is_set()
    assert not deadline.expired


def test_relaxed_intervals_grow_while_pushed_and_follow_the_poll_otherwise() -> None:
    live = [False]
    relaxed = Relaxed(Poll(initial=1.0, factor=2.0, cap=4.0), lambda: live[0], factor=4.0)
    assert relaxed.next() == 1.0
    live[0] = True
    assert [relaxed.next(), relaxed.next()] == [8.0, 16.0]  # the poll's own growth goes on underneath
    live[0] = False  # the channel dropped: the poll's own pace at once
    assert relaxed.next() == 4.0
    relaxed.reset()
    assert relaxed.next() == 1.0
