"""What the local Prefect server is started with."""

from __future__ import annotations

from deployments.prefect_server import event_retention


def test_events_are_kept_at_least_90_days():
    ninety = {"PREFECT_SERVER_EVENTS_RETENTION_PERIOD": "P90D"}  # ISO 8601: the form Prefect's settings read
    assert event_retention({}) == ninety, "Prefect's default of 7 days is raised"
    assert event_retention({"PREFECT_EVENTS_RETENTION_PERIOD": "P1D"}) == ninety, "a shorter one too"
    assert event_retention({"PREFECT_SERVER_EVENTS_RETENTION_PERIOD": "P30D"}) == ninety
    assert event_retention({"PREFECT_SERVER_EVENTS_RETENTION_PERIOD": "P120D"}) == {}, "a longer one is kept"
    assert event_retention({"PREFECT_EVENTS_RETENTION_PERIOD": "P365D"}) == {}
