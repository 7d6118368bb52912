"""The one reader of API timestamps: AWX, GitHub and Kubernetes all send RFC 3339."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(value: object) -> datetime | None:
    """An API timestamp as an aware datetime, or None when there is none.

    RFC 3339 as the services write it: ``Z`` (or ``z``) or an offset; whole seconds (Kubernetes, GitHub) or
    fractions (AWX, Kubernetes MicroTime and the sandbox; nanoseconds are trimmed to microseconds). A naive
    timestamp or datetime is taken as UTC.

    Raises:
        ValueError: a non-empty string that is not a timestamp.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text[-1] in "zZ":
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
    else:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    """``2026-11-26T11:18:49Z``: a moment in UTC with whole seconds, as kubectl writes ``restartedAt`` and
    GitHub's search syntax takes it (a naive datetime is taken as UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """The seconds from ``start`` to ``end``, or None when either is unknown."""
    if start is None or end is None:
        return None
    return (end - start).total_seconds()
