"""Deadlines and adaptive polling: every wait in the clients has a ``time.monotonic()`` deadline."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


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

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Sleep ``seconds``, or until the deadline if that comes first (or until ``stop`` is set)."""
        wait = max(0.0, min(seconds, self.remaining()))
        if stop is not None:
            stop.wait(wait)
        else:
            time.sleep(wait)


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
