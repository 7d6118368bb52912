"""The roll-out client against the sandbox's Kubernetes emulator over real HTTP (kubeconfig from write_state)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clients.errors import ApiError, DeadlineExceeded, ImageMismatch, NotFound, RolloutStuck
from clients.kubernetes_api import Collection, Resource, WatchEvent
from clients.retry import RetryPolicy
from clients.rollout import RESTARTED_AT, STRATEGIC_MERGE, RolloutClient, label_selector
from clients.rollout_events import (
    PodCreated,
    PodReady,
    PodStuck,
    PodTerminating,
    RolloutDone,
    RolloutEvent,
    RolloutStarted,
)
from clients.rollout_state import StuckReason
from tests.conftest import wait_for

NAMESPACE = "staging-stack"
NAME = "stack"


def test_label_selector() -> None:
    assert label_selector({"matchLabels": {"name": "stack", "app": "x"}}) == "app=x,name=stack"
    expressions = [
        {"key": "tier", "operator": "In", "values": ["a", "b"]},
        {"key": "env", "operator": "NotIn", "values": ["dev"]},
        {"key": "managed", "operator": "Exists"},
        {"key": "legacy", "operator": "DoesNotExist"},
    ]
    assert label_selector({"matchExpressions": expressions}) == "tier in (a,b),env notin (dev),managed,!legacy"


def test_restart_and_follow_to_done(cluster: Callable[..., tuple[Any, RolloutClient]]) -> None:
    _sandbox, client = cluster(speed=1000)
    snapshot = client.snapshot(NAMESPACE, NAME)
    assert [p.name for p in sorted(snapshot.pods, key=lambda p: p.name)] == ["stack-0", "stack-1"]
    assert snapshot.selector == "name=stack"
    value = client.restart(NAMESPACE, NAME)
    statefulset = client.statefulset(NAMESPACE, NAME)
    assert statefulset["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == value
    assert statefulset["metadata"]["generation"] == snapshot.generation + 1

    events: list[RolloutEvent] = []
    report = client.wait(snapshot, timeout=60, stuck_grace=30, on_event=events.append)

    assert isinstance(events[-1], RolloutDone)
    started = [e for e in events if isinstance(e, RolloutStarted)]
    assert len(started) == 1
    assert started[0].previous_revision == snapshot.update_revision != started[0].update_revision
    # The controller replaces the highest ordinal first, and the next only once the new one is Ready.
    order = [(type(e).__name__, e.pod) for e in events if isinstance(e, PodTerminating | PodCreated | PodReady)]
    assert order == [
        ("PodTerminating", "stack-1"),
        ("PodCreated", "stack-1"),
        ("PodReady", "stack-1"),
        ("PodTerminating", "stack-0"),
        ("PodCreated", "stack-0"),
        ("PodReady", "stack-0"),
    ]
    assert report.done
    assert report.new_revision == started[0].update_revision
    assert [t.name for t in report.pods] == ["stack-1", "stack-0"]
    for timing in report.pods:
        assert timing.old_revision == snapshot.update_revision
        assert timing.new_revision == report.new_revision
        stamps = [timing.terminating_at, timing.created_at, timing.scheduled_at, timing.started_at, timing.ready_at]
        assert all(stamps), timing
        assert stamps == sorted(stamps)  # type: ignore[type-var]
        assert timing.image_id
    assert report.pods[0].ready_at <= report.pods[1].terminating_at  # type: ignore[operator]
    assert report.duration is not None
    state = client.state(NAMESPACE, NAME)
    assert state.done
    assert state.current_revision == state.update_revision == report.new_revision


def test_watch_survives_410_by_listing_again(cluster: Callable[..., tuple[Any, RolloutClient]]) -> None:
    sandbox, client = cluster(speed=300)
    sandbox.set_faults(watch_expire_seconds=0.3)
    snapshot = client.snapshot(NAMESPACE, NAME)
    client.restart(NAMESPACE, NAME)
    with client.follow(snapshot, timeout=60, stuck_grace=30) as follower:
        events = list(follower)
        assert follower.relists >= 1
    assert isinstance(events[-1], RolloutDone)
    assert [t.name for t in events[-1].report.pods] == ["stack-1", "stack-0"]
    assert all(t.ready_at for t in events[-1].report.pods)


def test_crash_looping_pod_is_stuck(cluster: Callable[..., tuple[Any, RolloutClient]]) -> None:
    sandbox, client = cluster(speed=1000)
    sandbox.set_faults(crashloop=[{"namespace": NAMESPACE, "statefulset": NAME}])
    snapshot = client.snapshot(NAMESPACE, NAME)
    client.restart(NAMESPACE, NAME)
    events: list[RolloutEvent] = []
    with pytest.raises(RolloutStuck) as caught:
        client.wait(snapshot, timeout=60, stuck_grace=1.0, on_event=events.append)
    message = str(caught.value)
    assert f"{NAMESPACE}/stack-1" in message
    assert "CrashLoopBackOff" in message
    stuck = [e for e in events if isinstance(e, PodStuck)]
    assert stuck
    assert stuck[0].pod == "stack-1"
    assert StuckReason.CRASH_LOOP_BACK_OFF in {e.reason for e in stuck}
    # The old stack-0 was never touched: the controller waits for stack-1.
    assert not any(isinstance(e, PodTerminating) and e.pod == "stack-0" for e in events)


def test_missing_image_is_stuck(cluster: Callable[..., tuple[Any, RolloutClient]]) -> None:
    _sandbox, client = cluster(speed=1000)
    snapshot = client.snapshot(NAMESPACE, NAME)
    patch = {
        "spec": {
            "template": {"spec": {"containers": [{"name": "stack", "image": "xchem/fragalysis-stack:no-such-tag"}]}}
        }
    }
    client.apps.patch_namespaced_stateful_set(
        NAME, NAMESPACE, patch, _content_type=STRATEGIC_MERGE, _request_timeout=10
    )
    with pytest.raises(RolloutStuck) as caught:
        client.wait(snapshot, timeout=60, stuck_grace=1.0)
    assert "stack-1" in str(caught.value)
    assert "ImagePullBackOff" in str(caught.value) or "ErrImagePull" in str(caught.value)


def test_expected_digest_is_checked(cluster: Callable[..., tuple[Any, RolloutClient]]) -> None:
    sandbox, client = cluster(speed=1000)
    digest = sandbox.call(sandbox.registry.resolve, "xchem/fragalysis-stack:latest")
    assert digest
    snapshot = client.snapshot(NAMESPACE, NAME)
    client.restart(NAMESPACE, NAME)
    report = client.wait(snapshot, timeout=60, stuck_grace=30, expected_digest=digest, container="stack")
    assert [t.image_id.endswith(digest) for t in report.pods if t.image_id] == [True, True]

    snapshot = client.snapshot(NAMESPACE, NAME)
    # restartedAt has whole seconds (as kubectl writes it): a second restart in the same second changes nothing.
    client.restart(NAMESPACE, NAME, at=datetime.now(UTC) + timedelta(seconds=5))
    wrong = "sha256:" + "0" * 64
    with pytest.raises(ImageMismatch) as caught:
        client.wait(snapshot, timeout=60, stuck_grace=30, expected_digest=wrong)
    assert wrong in str(caught.value)
    assert f"{NAMESPACE}/stack-1" in str(caught.value)


def test_deadline_names_the_statefulset_and_its_state(cluster: Callable[..., tuple[Any, RolloutClient]]) -> None:
    _sandbox, client = cluster(speed=5)
    snapshot = client.snapshot(NAMESPACE, NAME)
    client.restart(NAMESPACE, NAME)
    with pytest.raises(DeadlineExceeded) as caught:
        client.wait(snapshot, timeout=1.0)
    message = str(caught.value)
    assert f"statefulset {NAMESPACE}/{NAME}" in message
    assert "stack-1" in message


def test_no_change_waits_unless_told(cluster: Callable[..., tuple[Any, RolloutClient]]) -> None:
    _sandbox, client = cluster(speed=1000)
    snapshot = client.snapshot(NAMESPACE, NAME)
    report = client.wait(snapshot, timeout=10, require_change=False)
    assert report.done
    assert report.pods == ()
    with pytest.raises(DeadlineExceeded, match="the change itself was never seen"):
        client.wait(snapshot, timeout=0.5)


def test_missing_statefulset_and_secrets(
    cluster: Callable[..., tuple[Any, RolloutClient]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox, client = cluster(speed=1000)
    token = sandbox.endpoints()["kubernetes"]["token"]
    with pytest.raises(NotFound) as caught:
        client.snapshot(NAMESPACE, "no-such-set")
    assert f"{NAMESPACE}/no-such-set" in str(caught.value)
    assert sandbox.urls["kubernetes"] in str(caught.value)
    for text in (str(caught.value), repr(client), str(client), caplog.text):
        assert token not in text


def test_plain_calls_retry_through_5xx_with_bounded_attempts(
    cluster: Callable[..., tuple[Any, RolloutClient]],
) -> None:
    sandbox, client = cluster(speed=1000)
    client.retry = RetryPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.02, jitter=0.0)
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets/{NAME}"

    def reads() -> list[int]:
        return [r.status for r in sandbox.requests("kubernetes") if r.path == path and r.method == "GET"]

    before = len(reads())
    sandbox.set_faults(kubernetes={"fail_next": 2, "error_status": 503})
    assert client.statefulset(NAMESPACE, NAME)["metadata"]["name"] == NAME
    assert reads()[before:] == [503, 503, 200]

    before = len(reads())
    sandbox.set_faults(kubernetes={"fail_next": 10, "error_status": 503})
    with pytest.raises(ApiError) as caught:
        client.statefulset(NAMESPACE, NAME)
    assert caught.value.status == 503
    assert reads()[before:] == [503, 503, 503]
    assert f"{NAMESPACE}/{NAME}" in str(caught.value)
    sandbox.set_faults(kubernetes={"fail_next": 0})


def test_follow_through_flaky_api(cluster: Callable[..., tuple[Any, RolloutClient]]) -> None:
    sandbox, client = cluster(speed=600)
    client.retry = RetryPolicy(attempts=6, backoff_initial=0.01, backoff_max=0.05, jitter=0.0)
    snapshot = client.snapshot(NAMESPACE, NAME)
    sandbox.set_faults(kubernetes={"error_rate": 0.3, "drop_rate": 0.1, "error_status": 503})
    report = client.wait(snapshot, timeout=60, stuck_grace=30, change=lambda: client.restart(NAMESPACE, NAME))
    assert report.done
    assert [t.name for t in report.pods] == ["stack-1", "stack-0"]
    assert all(t.ready_at for t in report.pods)
    statuses = {r.status for r in sandbox.requests("kubernetes")}
    assert 503 in statuses


def test_client_from_a_kubeconfig_dict(cluster: Callable[..., tuple[Any, RolloutClient]]) -> None:
    sandbox, _client = cluster(speed=1000)
    with RolloutClient.from_kubeconfig_dict(sandbox.kubeconfig(), context="sandbox", request_timeout=5.0) as client:
        assert client.server == sandbox.urls["kubernetes"]
        assert client.statefulset(NAMESPACE, NAME)["spec"]["selector"] == {"matchLabels": {"name": "stack"}}
        assert sandbox.scenario.kubernetes.token not in repr(client)


def test_follow_ends_early_when_told_to_stop(cluster: Callable[..., tuple[Any, RolloutClient]]) -> None:
    """Another stage failed: the watch stops without RolloutDone, and what it saw so far stays readable."""
    _sandbox, client = cluster(speed=1000, crashloop=[{"namespace": NAMESPACE, "statefulset": NAME}])
    snapshot = client.snapshot(NAMESPACE, NAME)
    client.restart(NAMESPACE, NAME)
    stop = threading.Event()
    seen = []
    with client.follow(snapshot, timeout=600, stuck_grace=600, stop=stop) as follower:
        for event in follower:
            seen.append(event)
            if isinstance(event, PodStuck):
                stop.set()
    assert not [event for event in seen if isinstance(event, RolloutDone)]
    assert any(isinstance(event, PodStuck) for event in seen)
    assert [pod.name for pod in follower.report.pods] == ["stack-1"]


def test_closing_a_quiet_watch_unblocks_its_read(
    cluster: Callable[..., tuple[Any, RolloutClient]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``WatchStream.close()`` from another thread ends a watch blocked in a read on a quiet stream (no events,
    no bookmarks), long before the server's ``timeoutSeconds`` would."""
    monkeypatch.setattr("sandbox.kubernetes.watch.BOOKMARK_SECONDS", 3600.0)
    _sandbox, client = cluster(speed=1000)
    client.api.watch_seconds = 300
    statefulsets = Collection(Resource.STATEFULSETS, NAMESPACE, field_selector=f"metadata.name={NAME}")
    listed = client.api.list(statefulsets)
    stream = client.api.watch(statefulsets, listed.resource_version)
    seen: list[WatchEvent] = []
    ended = threading.Event()

    def read() -> None:
        seen.extend(stream)
        ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    client.restart(NAMESPACE, NAME)
    wait_for(lambda: seen, "a watch event: the stream is open")
    wait_for(lambda: client.state(NAMESPACE, NAME).done, "the roll-out to end: the watch turns quiet")
    assert not ended.is_set()
    stream.close()
    assert ended.wait(30.0), "the watch was still reading after close()"
    assert {event.type for event in seen} == {"MODIFIED"}
