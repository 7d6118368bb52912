"""Deadlines, adaptive polling and the one poll loop: every wait in the clients has a ``time.monotonic()`` deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")

STOP_CHECK_SECONDS = 0.05
"""How often a sleep that waits on a wake-up event looks at its stop event."""


class Deadline:
    """A point in monotonic time; ``None`` seconds is refused (every wait ends)."""

    def __init__(self, seconds: float) -> None:
        if seconds is None or seconds < 0:
            raise ValueError(f"a deadline needs a non-negative number of seconds, not {seconds!r}")
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self._end

    def sleep(self, seconds: float, stop: threading.Event | None = None, wake: threading.Event | None = None) -> None:
        """Sleep ``seconds``, or until the deadline if that comes first (or until ``stop`` or ``wake`` is set)."""
        wait = max(0.0, min(seconds, self.remaining()))
        if wake is None:
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)
            return
        # Python cannot wait on two events at once: wait on ``wake`` (the one that must act at once) and look at
        # ``stop`` every STOP_CHECK_SECONDS
        end = time.monotonic() + wait
        while True:
            left = end - time.monotonic()
            if left <= 0 or (stop is not None and stop.is_set()):
                return
            if wake.wait(min(left, STOP_CHECK_SECONDS) if stop is not None else left):
                return


@dataclass
class Poll:
    """An adaptive poll interval: fast at first, growing by ``factor`` to ``cap``; ``reset()`` on a change."""

    initial: float = 0.5
    factor: float = 1.5
    cap: float = 5.0

    def __post_init__(self) -> None:
        self._current = self.initial

    def next(self) -> float:
        current = self._current
        self._current = min(self.cap, self._current * self.factor)
        return current

    def reset(self) -> None:
        self._current = self.initial


class Intervals(Protocol):
    """What ``poll_until`` sleeps by: ``Poll``, or ``Relaxed``."""

    def next(self) -> float: ...

    def reset(self) -> None: ...


@dataclass
class Relaxed:
    """``poll``, its intervals ``factor`` times longer while ``pushed()`` says a channel that wakes the wait on every
    change is live (AWX's websocket): the poll is then only the safety net, and costs that many times fewer reads.
    """

    poll: Poll
    pushed: Callable[[], bool]
    factor: float = 4.0

    def next(self) -> float:
        interval = self.poll.next()
        return interval * self.factor if self.pushed() else interval

    def reset(self) -> None:
        self.poll.reset()


def poll_until(
    check: Callable[[], T | None],
    deadline: Deadline,
    poll: Intervals,
    stop: threading.Event | None = None,
    wake: threading.Event | None = None,
) -> T | None:
    """Call ``check`` until it returns a value (anything but None), and return that value.

    ``check`` runs at once, and again after each ``poll.next()`` seconds; a sleep never passes the deadline and
    ``stop`` cuts it short. ``check`` may call ``poll.reset()`` when it sees a change, to look again soon.

    ``check`` always runs at least once, and always once more after the last sleep, so a result that came in
    time is never thrown away:

    - at the deadline: the last ``check`` starts after the deadline has passed; if it returns None, so does
      ``poll_until``, and the caller raises its own ``DeadlineExceeded`` naming what it waited for;
    - on ``stop``: the ``check`` that follows the setting of ``stop`` is the last; if it returns None, so does
      ``poll_until``. A caller that must tell the two apart asks ``stop.is_set()`` (when both hold, stop wins:
      whoever set it has given up on the result).

    Args:
        check: reads and decides; returns None for "not yet".
        deadline: when to give up.
        poll: the intervals between checks.
        stop: an event that ends the wait early (e.g. another stage of the deployment failed).
        wake: an event that cuts the current sleep short and makes ``check`` run at once (e.g. the service pushed
            a change); it is cleared before that check, so a push during the check wakes the next sleep.

    Returns:
        The first value ``check`` returned, or None at the deadline or on ``stop``.
    """
    while True:
        late = deadline.expired  # sampled before the check, so that the last check starts after the deadline
        value = check()
        if value is not None:
            return value
        if late or (stop is not None and stop.is_set()):
            return None
        deadline.sleep(poll.next(), stop, wake)
        if wake is not None:
            wake.clear()
