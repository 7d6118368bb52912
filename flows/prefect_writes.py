"""The pipeline's own writes to Prefect's API on a deploy's path, tried again soon when the server is busy.

Prefect's server on SQLite answers 503 when a write meets another's lock ("database is locked"): the lock clears in
milliseconds, but Prefect's client waits 2 s before trying again (then 4, 8, 16, 32: ``2 ** n``). A deploy's writes
come in bursts (the hand-off to the AWX job: the launch claim, the roll-out's progress artifact, the stage labels;
the end: the report's artifacts, the launch record's removal), so one of them often meets another's lock, and the
deploy then waits those 2 s (benchmarks/README.md, "Overhead"). Here a write runs with Prefect's own retries off and
is tried again after 0.05 s, growing to 1 s with jitter, for as long as Prefect's retries would (about a minute).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import httpx
from prefect.context import SettingsContext
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, get_current_settings
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential, wait_random

T = TypeVar("T")
P = ParamSpec("P")

RETRIED_STATUSES = frozenset({408, 429, 502, 503, 504})
"""The answers Prefect's own client tries again on (with ``PREFECT_CLIENT_RETRY_EXTRA_CODES`` empty)."""
GIVE_UP_SECONDS = 60.0
"""About as long as Prefect's five retries (2 + 4 + 8 + 16 + 32 s)."""

_settings: dict[int, tuple[Any, Any]] = {}
"""By the id of the settings in force: those settings (kept, so that the id stays theirs) and their copy."""
_lock = threading.Lock()


def write(action: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``action(*args, **kwargs)`` (a write through Prefect's client), tried again soon on a busy server's answer or
    a dropped connection; the last error is raised after ``GIVE_UP_SECONDS``."""
    with _no_client_retries():
        for attempt in Retrying(
            retry=retry_if_exception(_busy),
            wait=wait_exponential(multiplier=0.05, max=1.0) + wait_random(0, 0.05),
            stop=stop_after_delay(GIVE_UP_SECONDS),
            reraise=True,
        ):
            with attempt:
                return action(*args, **kwargs)
    raise AssertionError("unreachable: tenacity returns or raises")


def _busy(error: BaseException) -> bool:
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code in RETRIED_STATUSES
    return isinstance(error, httpx.TransportError)


def _no_client_retries() -> SettingsContext:
    """The settings in force with Prefect's client retries off, as a context to enter (the copy is made once per
    settings: copying Prefect's settings takes tens of milliseconds, a context a fraction of one)."""
    current = get_current_settings()
    with _lock:
        found = _settings.get(id(current))
        if found is None or found[0] is not current:
            copy = current.copy_with_update(updates={PREFECT_CLIENT_MAX_RETRIES: 0})
            found = _settings[id(current)] = (current, copy)
    context = SettingsContext.get()
    assert context is not None, "Prefect always has a root settings context"
    return SettingsContext(profile=context.profile, settings=found[1])
