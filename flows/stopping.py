"""The signal that stops the stages running beside each other, and why it was given."""

from __future__ import annotations

import threading


class Stop(threading.Event):
    """A ``threading.Event`` that says why it was set: another stage failed (the default), or the run was cancelled.
    Stages pass it on to the clients' waits as any event, and name ``reason`` when they stop."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = "another stage failed"
        self.cancel_remote = True

    def stop(self, reason: str, *, cancel_remote: bool = True) -> None:
        """Set, with the reason the stages will give (the first reason given stays). ``cancel_remote``: whether a
        stage cancels the remote work it started (an AWX job we launched); not when only this process is stopping
        (the launch record lets a later run find the job again)."""
        if not self.is_set():
            self.reason = reason
            self.cancel_remote = cancel_remote
        self.set()


def cancels_remote(stop: threading.Event) -> bool:
    """Whether a stage told by ``stop`` cancels the remote work it started (True for a plain event)."""
    return bool(getattr(stop, "cancel_remote", True))


def why(stop: threading.Event) -> str:
    """Why ``stop`` was set ("another stage failed" for a plain event)."""
    return getattr(stop, "reason", "another stage failed")
