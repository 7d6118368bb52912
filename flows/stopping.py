"""The signal that stops the stages running beside each other, and why it was given."""

from __future__ import annotations

import threading


class Stop(threading.Event):
    """A ``threading.Event`` that says why it was set: another stage failed (the default), or the run was cancelled.
    Stages pass it on to the clients' waits as any event, and name ``reason`` when they stop."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = "another stage failed"

    def stop(self, reason: str) -> None:
        """Set, with the reason the stages will give (the first reason given stays)."""
        if not self.is_set():
            self.reason = reason
        self.set()


def why(stop: threading.Event) -> str:
    """Why ``stop`` was set ("another stage failed" for a plain event)."""
    return getattr(stop, "reason", "another stage failed")
