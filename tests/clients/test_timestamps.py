"""The one reader and writer of API timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from clients.timestamps import format_time, parse_time, seconds_between


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T11:18:49Z", datetime(2026, 11, 26, 11, 18, 49, tzinfo=UTC)),
        ("2026-11-26T11:18:49.123Z", datetime(2026, 11, 26, 11, 18, 49, 123000, tzinfo=UTC)),
        ("2026-11-26T11:18:49.123456Z", datetime(2026, 11, 26, 11, 18, 49, 123456, tzinfo=UTC)),
        ("2026-11-26T11:18:49.123456789Z", datetime(2026, 11, 26, 11, 18, 49, 123456, tzinfo=UTC)),
        ("2026-11-26T12:18:49+01:00", datetime(2026, 11, 26, 11, 18, 49, tzinfo=UTC)),
        ("2026-11-26T11:18:49.5z", datetime(2026, 11, 26, 11, 18, 49, 500000, tzinfo=UTC)),
        ("2026-11-26T11:18:49.047216Z", datetime(2026, 11, 26, 11, 18, 49, 47216, tzinfo=UTC)),  # AWX
        ("2026-11-26T11:18:49", datetime(2026, 11, 26, 11, 18, 49, tzinfo=UTC)),  # naive: UTC
        (datetime(2026, 11, 26, 11, 18, 49), datetime(2026, 11, 26, 11, 18, 49, tzinfo=UTC)),
        (None, None),
        ("", None),
        (17, None),
    ],
)
def test_parse_time(text: object, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_a_non_timestamp_is_an_error() -> None:
    with pytest.raises(ValueError, match="Invalid isoformat"):
        parse_time("yesterday")


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 11, 26, 11, 18, 49, 999999, tzinfo=UTC), "2026-11-26T11:18:49Z"),  # whole seconds
        (datetime(2026, 11, 26, 12, 18, 49, tzinfo=timezone(timedelta(hours=1))), "2026-11-26T11:18:49Z"),
        (datetime(2026, 11, 26, 11, 18, 49), "2026-11-26T11:18:49Z"),  # naive: UTC
    ],
)
def test_format_time(moment: datetime, text: str) -> None:
    assert format_time(moment) == text
    assert parse_time(text) == moment.replace(microsecond=0, tzinfo=moment.tzinfo or UTC)


def test_seconds_between() -> None:
    start = datetime(2026, 11, 26, 11, 0, 0, tzinfo=UTC)
    assert seconds_between(start, start + timedelta(minutes=2, milliseconds=500)) == 120.5
    assert seconds_between(None, start) is None
    assert seconds_between(start, None) is None
