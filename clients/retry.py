"""How every client retries: one policy object with small methods, used by the HTTP clients and the roll-out client.

The rules (as openai-python's ``_base_client`` and githubkit's ``retry.py`` have them):

- no answer (a dropped connection, a timeout) and the statuses 408, 425, 429 and 5xx are retried, for idempotent
  requests only; a non-idempotent one (an AWX launch, a GitHub dispatch) is repeated only when the server says it
  did not act on it: 429, or GitHub's 403 rate limit;
- the wait before another try is what the server asks for (``Retry-After`` in seconds or as an HTTP date, or
  GitHub's ``x-ratelimit-reset``), else a jittered exponential backoff;
- a server that asks for a longer wait than ``max_retry_after`` gets no other try: ``RateLimited`` at once.

A client's ``send`` callable makes one try and raises ``Retry`` for an outcome worth another; ``RetryPolicy.call``
runs the tries (with tenacity) and raises the last ``Retry``'s error when they run out.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from clients.errors import ClientError

T = TypeVar("T")

RATE_LIMIT_STATUSES = frozenset({403, 429})
"""Where an exhausted GitHub primary rate limit shows (``x-ratelimit-remaining: 0``)."""
RETRY_AFTER_STATUSES = frozenset({403, 429, 503})
"""Where a ``Retry-After`` is read: 429 and 503 (RFC 9110), and GitHub's 403 secondary rate limit."""


class Retry(Exception):
    """One try's outcome is worth another try.

    Args:
        error: what to raise when the tries run out.
        wait: the seconds the server asked to wait, if it did.
    """

    def __init__(self, error: ClientError, wait: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = wait


@dataclass(frozen=True)
class RetryPolicy:
    """How requests are retried.

    Attributes:
        attempts: tries in all, the first included. Six: with one try in five failing (the fault matrix's 10% 5xx,
            5% 429, 2% dropped and 2% lost answers) four tries still lose one call in about 800, a deploy in ten;
            six lose one in about 20,000 (``benchmarks/fault_matrix.py``).
        backoff_initial: the first backoff in seconds; it doubles each time up to ``backoff_max``.
        backoff_max: the longest backoff between two tries.
        jitter: up to this fraction of a backoff is added at random.
        max_retry_after: the longest ``Retry-After`` (or rate-limit reset) the client will wait; a longer one
            raises ``RateLimited`` at once.
        statuses: answers that are retried (for idempotent requests; non-idempotent ones only on 429).
    """

    attempts: int = 6
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    jitter: float = 0.5
    max_retry_after: float = 60.0
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({408, 425, 429, 500, 502, 503, 504}))

    def backoff(self, attempt: int) -> float:
        """The wait before try ``attempt + 1`` (``attempt`` counts from 1)."""
        base: float = min(self.backoff_max, self.backoff_initial * 2.0 ** (attempt - 1))
        return base * (1.0 + random.uniform(0.0, self.jitter))

    def should_retry(self, status: int | None, *, idempotent: bool, wait: float | None = None) -> bool:
        """Whether an outcome is worth another try.

        Args:
            status: the answer's status; None when no answer came (the request may or may not have acted).
            idempotent: whether sending the request twice does no more than once.
            wait: the wait the server asked for (``requested_wait``), if any.
        """
        if status is None:
            return idempotent
        retryable = status in self.statuses or wait is not None
        # A 503 with Retry-After may follow work done (e.g. an AWX launch): only 429, or GitHub's 403 rate limit,
        # say that the server did not act.
        did_not_act = status == 429 or (wait is not None and status == 403)
        return retryable and (idempotent or did_not_act)

    def waits_too_long(self, wait: float | None) -> bool:
        """The server asks for a longer wait than ``max_retry_after``: give up at once (``RateLimited``)."""
        return wait is not None and wait > self.max_retry_after

    def delay(self, attempt: int, wait: float | None = None) -> float:
        """The seconds before try ``attempt + 1``: the server's ``wait`` when it gave one, else the backoff."""
        return wait if wait is not None else self.backoff(attempt)

    def call(self, send: Callable[[], T]) -> T:
        """Call ``send`` up to ``attempts`` times while it raises ``Retry``, waiting ``delay()`` in between.

        Raises:
            ClientError: the last ``Retry``'s error, when the tries run out; whatever else ``send`` raises, at once.
        """
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._delay,
            retry=retry_if_exception_type(Retry),
            reraise=True,
        )
        try:
            return retrying(send)
        except Retry as final:
            raise final.error from None

    def _delay(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return self.delay(state.attempt_number, error.wait if isinstance(error, Retry) else None)


NO_RETRY = RetryPolicy(attempts=1)


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """The seconds a ``Retry-After`` value asks for: delay-seconds or an HTTP date (RFC 9110 section 10.2.3).

    Args:
        value: the header's value, or None when it is absent.
        now: the time (``time.time()``) an HTTP date is measured from; by default now.

    Returns:
        The seconds (0 for a date in the past), or None when the value is absent or unreadable.
    """
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, moment - (time.time() if now is None else now))


def resets_at(wait: float, *, now: float | None = None) -> str:
    """When a wait of ``wait`` seconds from ``now`` (``time.time()``) ends, in UTC: the moment a rate limit resets,
    for messages ("the limit resets at 2026-11-30 23:59:59 UTC")."""
    moment = (time.time() if now is None else now) + wait
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def requested_wait(status: int, headers: Mapping[str, str]) -> float | None:
    """The seconds a server asks to wait before another try, or None when it does not say.

    ``Retry-After`` on 403, 429 and 503; or GitHub's exhausted primary limit (403/429 with
    ``x-ratelimit-remaining: 0``: wait until ``x-ratelimit-reset``, an epoch second, plus one).

    Args:
        status: the answer's status.
        headers: its headers (a case-insensitive mapping: ``httpx.Headers``, urllib3's ``HTTPHeaderDict``).
    """
    if status not in RETRY_AFTER_STATUSES:
        return None
    value = headers.get("retry-after")
    if value:
        return retry_after(value)
    if status in RATE_LIMIT_STATUSES and headers.get("x-ratelimit-remaining") == "0":
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - time.time()) + 1.0
        except (KeyError, ValueError):
            return None
    return None
