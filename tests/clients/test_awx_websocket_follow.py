"""``AwxClient.follow`` learns of status changes from AWX's websocket and reads the job at once, the poll staying
the source of truth; a websocket that is refused or drops leaves it polling, with one debug log and no secret.

The "before the next poll" tests give the poll an interval that never comes within the test (and a guard that
stops the follow after 30 s): a follow that returned with the job finished and the guard unset was woken by the
websocket, not by its poll. No test asserts on how much real time anything took."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clients.awx import WEBSOCKET_RELAX, AwxClient, Job, JobStatus
from clients.waiting import Poll, Relaxed
from sandbox.runtime import Sandbox
from tests.conftest import PATIENT_AWX_SECONDS, awx_timeout

STAGING_VC = "Staging Fragalysis Stack (Version Change)"
TAG = {"stack_image_tag": "stable"}
NEVER = Poll(initial=3600.0, factor=1.0, cap=3600.0)
"""A poll whose next read never comes within a test."""
GUARD_SECONDS = 30.0


@pytest.fixture
def guard() -> Iterator[threading.Event]:
    """A stop event set after GUARD_SECONDS: a follow that waited for its poll returns unfinished, and fails."""
    stop = threading.Event()
    timer = threading.Timer(GUARD_SECONDS, stop.set)
    timer.start()
    yield stop
    timer.cancel()


def _client(sb: Sandbox, **kwargs: Any) -> AwxClient:
    awx = sb.endpoints()["awx"]
    return AwxClient(awx["url"], api_path=awx["api_path"], token=awx["token"], **kwargs)


def _job_reads(sb: Sandbox, job_id: int) -> int:
    return sum(1 for r in sb.requests("awx") if r.method == "GET" and r.path.endswith(f"/jobs/{job_id}/"))


def test_follow_returns_on_the_websocket_message_not_the_poll(
    make_sandbox: Callable[..., Sandbox], guard: threading.Event
) -> None:
    sb = make_sandbox(awx_timeout(PATIENT_AWX_SECONDS), speed=600)
    seen: list[JobStatus] = []
    with _client(sb) as awx:
        job = awx.launch(awx.find_template(STAGING_VC), TAG)
        done = awx.follow(job, 120, poll=NEVER, stop=guard, on_status=lambda j: seen.append(j.status))
    assert not guard.is_set(), "the follow waited for its poll: no websocket message woke it"
    assert done.status == JobStatus.SUCCESSFUL
    assert seen[-1] == JobStatus.SUCCESSFUL
    # one read at the start, one when subscribed, then one per status message at most (waiting, running,
    # successful; the "pending" of the launch came before the follow)
    assert _job_reads(sb, job.id) <= 5


def test_the_watch_subscribes_with_the_clients_token(make_sandbox: Callable[..., Sandbox]) -> None:
    from clients.awx_events import StatusWatch, websocket_url

    # the job stays pending (no playbook left running when the sandbox stops)
    sb = make_sandbox(speed=600, faults={"awx_jobs": [{"template": STAGING_VC, "outcome": "pending"}]})
    wake = threading.Event()
    with _client(sb) as awx:
        watch = awx._watch(1, wake)
        assert isinstance(watch, StatusWatch)
        assert watch.url == websocket_url(sb.urls["awx"], "/websocket/")
        try:
            assert watch.subscribed.wait(10)
            assert watch.live
            assert wake.wait(10)  # subscribed: one read now, for a change that came before it listened
            wake.clear()
            sb.call(sb.awx.launch, STAGING_VC, TAG)  # job 1: its "pending" message wakes the follow
            assert wake.wait(10)
        finally:
            watch.close()
        assert not watch.live


def test_refused_websocket_falls_back_to_polling_with_one_debug_log(
    make_sandbox: Callable[..., Sandbox], caplog: pytest.LogCaptureFixture
) -> None:
    sb = make_sandbox(awx_timeout(PATIENT_AWX_SECONDS), speed=600)
    caplog.set_level(logging.DEBUG)
    with _client(sb, websocket_path="/no-websocket-here/") as awx:
        job = awx.launch(awx.find_template(STAGING_VC), TAG)
        done = awx.follow(job, 120, poll=Poll(initial=0.05, factor=1.5, cap=0.2))
    assert done.status == JobStatus.SUCCESSFUL
    fallbacks = [r for r in caplog.records if r.name == "clients.awx_events"]
    assert len(fallbacks) == 1
    assert fallbacks[0].levelno == logging.DEBUG
    assert "polling alone" in fallbacks[0].getMessage()
    assert "403" in fallbacks[0].getMessage()
    assert sb.scenario.awx.token not in caplog.text


def test_the_poll_relaxes_while_the_websocket_is_live(
    make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    # speed 120: the job runs about 5 s, so that the watch (a thread, a handshake, a subscription) is live for part of
    # it even on a loaded machine; at 600 it ran under a second
    sb = make_sandbox(awx_timeout(PATIENT_AWX_SECONDS), speed=120)
    slept: list[tuple[float, bool]] = []  # each interval the follow slept by, and whether the websocket was live
    original = Relaxed.next

    def spy(self: Relaxed) -> float:
        interval = original(self)
        slept.append((interval, self.pushed()))
        return interval

    monkeypatch.setattr(Relaxed, "next", spy)
    base = 0.05
    with _client(sb) as awx:
        job = awx.launch(awx.find_template(STAGING_VC), TAG)
        done = awx.follow(job, 120, poll=Poll(initial=base, factor=1.0, cap=base))
    assert done.status == JobStatus.SUCCESSFUL
    assert slept, "the follow never slept"
    assert {interval for interval, live in slept if live} == {base * WEBSOCKET_RELAX}
    assert {interval for interval, live in slept if not live} <= {base}


def test_a_websocket_that_drops_leaves_the_poll_to_finish(
    make_sandbox: Callable[..., Sandbox], caplog: pytest.LogCaptureFixture
) -> None:
    sb = make_sandbox(awx_timeout(PATIENT_AWX_SECONDS), speed=600)
    caplog.set_level(logging.DEBUG)
    statuses: list[Job] = []

    def on_status(job: Job) -> None:
        statuses.append(job)
        if len(statuses) == 1:
            # AWX goes away under the follow (a restart, a proxy's idle timeout) once the watch is connected
            for _ in range(250):
                if sb.call(lambda: sb.awx.websocket.connections):
                    break
                time.sleep(0.02)
            sb.call(sb.awx.websocket.close_all)

    with _client(sb) as awx:
        job = awx.launch(awx.find_template(STAGING_VC), TAG)
        done = awx.follow(job, 120, poll=Poll(initial=0.05, factor=1.5, cap=0.2), on_status=on_status)
    assert done.status == JobStatus.SUCCESSFUL
    dropped = [r.getMessage() for r in caplog.records if r.name == "clients.awx_events"]
    assert len(dropped) == 1
    assert "AWX closed the websocket" in dropped[0]
    assert sb.scenario.awx.token not in caplog.text


def test_no_websocket_when_turned_off(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(speed=600)
    with _client(sb, websocket_path=None) as awx:
        assert awx._watch(1, threading.Event()) is None
