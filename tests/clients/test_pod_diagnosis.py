"""A stuck pod's diagnosis (its last log lines and recent events): the pure parts table-tested, and the whole of it
through ``RolloutStuck`` against the sandbox's Kubernetes emulator over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from clients.errors import RolloutStuck
from clients.pod_diagnosis import (
    LOG_LINES,
    MAX_CHARS,
    bounded,
    event_selector,
    failing_container,
    mask_secrets,
    recent_events,
)
from clients.rollout import STRATEGIC_MERGE, RolloutClient

NAMESPACE = "staging-stack"
NAME = "stack"
ERROR = "ModuleNotFoundError: No module named 'viewer.squonk2'"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("connecting to postgres://stack:s3cr3t@db:5432/frag", "connecting to postgres://stack:***@db:5432/frag"),
        ("Authorization: Bearer abcdefgh12345678", "Authorization: Bearer ***"),
        ("DATABASE_PASSWORD=hunter22 next", "DATABASE_PASSWORD=*** next"),
        ('{"api_key": "k-123456"}', '{"api_key": "***"}'),
        ("SECRET_KEY: 'abc'", "SECRET_KEY: '***'"),
        (ERROR, ERROR),
        ('Error: secret "stack-secrets" not found', 'Error: secret "stack-secrets" not found'),
        (
            'Back-off pulling image "xchem/fragalysis-stack:9.9.9"',
            'Back-off pulling image "xchem/fragalysis-stack:9.9.9"',
        ),
    ],
)
def test_mask_secrets(text: str, masked: str) -> None:
    assert mask_secrets(text) == masked


def _event(kind: str, reason: str, last: str, count: int | None = 1, **extra: Any) -> dict[str, Any]:
    event = {"type": kind, "reason": reason, "message": f"{reason} message", "lastTimestamp": last, **extra}
    if count is not None:
        event["count"] = count
    return event


def test_recent_events_warnings_first_then_newest_at_most_five() -> None:
    events = [
        _event("Normal", "Scheduled", "", count=None, eventTime="2026-11-30T10:00:00.000000Z", series=None),
        _event("Normal", "Pulled", "2026-11-30T10:00:05Z", count=3),
        _event("Warning", "Failed", "2026-11-30T10:00:04Z", count=2),
        _event("Warning", "BackOff", "2026-11-30T10:00:09Z", count=7),
        _event("Normal", "Created", "2026-11-30T10:00:06Z"),
        _event("Normal", "Started", "2026-11-30T10:00:07Z"),
        # events.k8s.io writers (the scheduler): a series instead of count and lastTimestamp
        _event(
            "Warning",
            "FailedScheduling",
            "",
            count=None,
            eventTime="2026-11-30T10:00:01.000000Z",
            series={"count": 4, "lastObservedTime": "2026-11-30T10:00:08.000000Z"},
        ),
    ]
    assert recent_events(events) == [
        "Warning BackOff (x7): BackOff message",
        "Warning FailedScheduling (x4): FailedScheduling message",
        "Warning Failed (x2): Failed message",
        "Normal Started (x1): Started message",
        "Normal Created (x1): Created message",
    ]
    assert recent_events([], 5) == []
    # a message's line breaks and runs of spaces become one space; a long one is cut
    long = _event("Warning", "Failed", "2026-11-30T10:00:04Z", message="a\n  b " + "x" * 500)
    (line,) = recent_events([long])
    assert line.startswith("Warning Failed (x1): a b xxx")
    assert line.endswith("...")
    assert len(line) < 350


def test_event_selector_is_kubectl_describes() -> None:
    pod = {"metadata": {"name": "stack-1", "namespace": NAMESPACE, "uid": "u-1"}}
    assert event_selector(pod) == (
        "involvedObject.name=stack-1,involvedObject.namespace=staging-stack,involvedObject.kind=Pod,"
        "involvedObject.uid=u-1"
    )


@pytest.mark.parametrize(
    ("statuses", "preferred", "chosen"),
    [
        ([], None, None),
        ([], "stack", "stack"),
        (
            [{"name": "a", "ready": True}, {"name": "b", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
            None,
            "b",
        ),
        (
            [{"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}}, {"name": "b", "restartCount": 2}],
            None,
            "b",
        ),
        ([{"name": "a", "ready": True}, {"name": "b", "ready": False, "state": {"running": {}}}], "a", "b"),
        ([{"name": "a", "ready": True}], "a", "a"),
    ],
)
def test_failing_container(statuses: list[dict[str, Any]], preferred: str | None, chosen: str | None) -> None:
    assert failing_container({"status": {"containerStatuses": statuses}}, preferred) == chosen


def test_bounded_drops_the_oldest_log_lines_first() -> None:
    log = ["last 10 log lines:", *(f"    line {n} " + "x" * 300 for n in range(10))]
    events = ["events (...):", "    Warning BackOff (x3): back-off"]
    text = bounded(log, events)
    assert len(text) <= MAX_CHARS
    assert text.startswith("last 10 log lines:\n")
    assert "line 9 " in text
    assert "line 0 " not in text
    assert text.endswith("Warning BackOff (x3): back-off")
    assert len(bounded(["x" * 5000], [], 100)) == 100


# ---------------------------------------------------------------- against the sandbox


def _stuck(client: RolloutClient, change: Callable[[], object]) -> RolloutStuck:
    snapshot = client.snapshot(NAMESPACE, NAME)
    change()
    with pytest.raises(RolloutStuck) as caught:
        client.wait(snapshot, timeout=60, stuck_grace=1.0)
    return caught.value


def test_a_crash_loop_names_its_error_from_the_log_and_its_back_off(
    cluster: Callable[..., tuple[Any, RolloutClient]],
) -> None:
    _sandbox, client = cluster(crashloop=[{"namespace": NAMESPACE, "statefulset": NAME, "error": ERROR}])
    stuck = _stuck(client, lambda: client.restart(NAMESPACE, NAME))

    message = str(stuck)
    headline, _, diagnosis = message.partition("\n")
    assert headline.startswith(f"pod {NAMESPACE}/stack-1 of statefulset {NAMESPACE}/{NAME} stuck")
    assert stuck.pod == "stack-1"
    assert stuck.diagnosis == diagnosis
    lines = diagnosis.splitlines()
    # the crashed container's last lines, as `kubectl logs --previous --tail=10`: the traceback and its error
    assert lines[0] == f"last {LOG_LINES} log lines of the previous (crashed) container stack:"
    assert lines[LOG_LINES] == f"    {ERROR}"
    assert all(line.startswith("    ") for line in lines[1 : LOG_LINES + 1])
    # then its events, Warning first: the kubelet's BackOff, counted
    events = lines[LOG_LINES + 1 :]
    assert events[0].startswith("events (Warning first, then newest; ")
    assert events[1].startswith("    Warning BackOff (x")
    assert "Back-off restarting failed container stack in pod stack-1_staging-stack(" in events[1]
    assert 2 <= len(events) <= 6
    assert len(diagnosis) <= MAX_CHARS


def test_an_image_that_cannot_be_pulled_says_so_from_the_log_and_events(
    cluster: Callable[..., tuple[Any, RolloutClient]],
) -> None:
    _sandbox, client = cluster()
    patch = {"spec": {"template": {"spec": {"containers": [{"name": NAME, "image": "xchem/fragalysis-stack:9.9.9"}]}}}}
    stuck = _stuck(
        client,
        lambda: client.apps.patch_namespaced_stateful_set(
            NAME, NAMESPACE, patch, _content_type=STRATEGIC_MERGE, _request_timeout=10
        ),
    )

    lines = stuck.diagnosis.splitlines()
    # the container never ran: the log's 400 says why, in the kubelet's words
    assert lines[0].startswith('logs: none: container "stack" in pod "stack-1" is waiting to start: ')
    assert lines[0].endswith(("image can't be pulled", "trying and failing to pull image"))
    reasons = [line.split()[1] for line in lines[2:]]
    assert lines[2].startswith("    Warning ")
    assert {"Failed", "BackOff"} <= set(reasons)
    assert any("ErrImagePull" in line for line in lines[2:])
    assert "xchem/fragalysis-stack:9.9.9" in stuck.diagnosis


def test_reads_that_fail_are_named_and_the_stuck_pod_still_reported(
    cluster: Callable[..., tuple[Any, RolloutClient]],
) -> None:
    _sandbox, client = cluster(
        crashloop=[{"namespace": NAMESPACE, "statefulset": NAME}],
        kubernetes={"error_rate": 1.0, "error_status": 403, "paths": r"/log$|/events$"},
    )
    stuck = _stuck(client, lambda: client.restart(NAMESPACE, NAME))

    assert "CrashLoopBackOff" in str(stuck).partition("\n")[0]
    log, events = stuck.diagnosis.splitlines()
    assert log.startswith("logs: could not be read: Kubernetes ")
    assert "GET pod staging-stack/stack-1 log (previous) answered 403" in log
    assert events.startswith("events: could not be read: Kubernetes ")
    assert "answered 403" in events
