"""GitHub's primary rate limit: a number of requests per window, reported in ``x-ratelimit-*`` headers.

The window is in real seconds because ``x-ratelimit-reset`` is an epoch time that clients compare with their own
clock (FACTS.md "Rate limits"). Conditional requests answered 304 are not counted, as on GitHub.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    """One window of ``limit`` requests; a new window starts with the first request after the reset time, and the
    first window with the first request (not when the emulator is built: a short window would otherwise be partly
    spent, by a varying amount, before a client's first request)."""

    def __init__(self, limit: int, window_seconds: float, now: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._now = now
        self.used = 0
        self.reset_at: float | None = None

    def _roll(self) -> float:
        now = self._now()
        if self.reset_at is None or now >= self.reset_at:
            self.used = 0
            self.reset_at = now + self.window_seconds
        return self.reset_at

    @property
    def remaining(self) -> int:
        self._roll()
        return max(0, self.limit - self.used)

    @property
    def reset(self) -> int:
        """The epoch second at which the window resets (``x-ratelimit-reset``)."""
        return math.ceil(self._roll())

    def exhausted(self) -> bool:
        return self.remaining <= 0

    def count(self) -> None:
        self._roll()
        self.used += 1

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(self.reset),
            "x-ratelimit-used": str(min(self.used, self.limit)),
            "x-ratelimit-resource": "core",
        }

    def resource_json(self) -> dict[str, int]:
        return {
            "limit": self.limit,
            "used": min(self.used, self.limit),
            "remaining": self.remaining,
            "reset": self.reset,
        }
