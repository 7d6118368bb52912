"""The sandbox's shared clock: real wall time, with every modelled duration divided by a speed factor.

Timestamps that the emulators report are real UTC times, so that a client's own clock and the services'
timestamps agree; only durations are compressed (``--speed 60``: a 5-minute build takes 5 s).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime


class Clock:
    """Wall-clock time plus a speed factor applied to modelled durations."""

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self.speed = float(speed)

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def scaled(self, seconds: float) -> float:
        """Real seconds that a modelled duration of ``seconds`` takes at this speed."""
        return max(0.0, seconds) / self.speed

    async def sleep(self, seconds: float) -> None:
        """Sleep for a modelled duration (scaled by the speed factor)."""
        await asyncio.sleep(self.scaled(seconds))


def isoformat(moment: datetime | None, *, precise: bool = True) -> str | None:
    """RFC 3339 in UTC with a ``Z``.

    The real GitHub and Kubernetes APIs give whole seconds; the sandbox keeps milliseconds so that
    time-scaled runs (a 3-minute pod in 3 s) stay measurable. Clients accept both.
    """
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    if precise:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
