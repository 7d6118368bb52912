"""``rollout_state`` table-tested against kubectl's ``StatefulSetStatusViewer`` rules and the FACTS.md stuck list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from clients.rollout_state import (
    PodState,
    StuckReason,
    kubectl_status,
    pod_ordinal,
    pod_state,
    rollout_state,
)

_DEFAULT: Any = object()


def sts(
    *,
    generation: int = 2,
    observed: int | None = 2,
    replicas: int | None = 2,
    ready: int = 2,
    updated: int = 2,
    current: int = 2,
    current_rev: str = "stack-new",
    update_rev: str = "stack-new",
    strategy: str | None = "RollingUpdate",
    rolling: Any = _DEFAULT,
) -> dict[str, Any]:
    """A StatefulSet as the API returns it (rollingUpdate defaulted to partition 0 like the API server)."""
    update_strategy: dict[str, Any] = {}
    if strategy is not None:
        update_strategy["type"] = strategy
    rolling_value = {"partition": 0} if rolling is _DEFAULT else rolling
    if rolling_value is not None and strategy == "RollingUpdate":
        update_strategy["rollingUpdate"] = rolling_value
    spec: dict[str, Any] = {"selector": {"matchLabels": {"name": "stack"}}, "updateStrategy": update_strategy}
    if replicas is not None:
        spec["replicas"] = replicas
    status: dict[str, Any] = {
        "readyReplicas": ready,
        "updatedReplicas": updated,
        "currentReplicas": current,
        "currentRevision": current_rev,
        "updateRevision": update_rev,
    }
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "metadata": {"name": "stack", "namespace": "staging-stack", "generation": generation},
        "spec": spec,
        "status": status,
    }


# (id, statefulset, done, message, error) -- the messages are kubectl's, word for word.
KUBECTL_ROWS = [
    (
        "ondelete-cannot-tell",
        sts(strategy="OnDelete"),
        True,
        "",
        "rollout status is only available for RollingUpdate strategy type",
    ),
    ("observed-missing", sts(observed=None), False, "Waiting for statefulset spec update to be observed...", None),
    ("observed-zero", sts(observed=0), False, "Waiting for statefulset spec update to be observed...", None),
    (
        "generation-ahead",
        sts(generation=3, observed=2),
        False,
        "Waiting for statefulset spec update to be observed...",
        None,
    ),
    (
        "observed-ahead-is-fine",
        sts(generation=2, observed=3),
        True,
        "partitioned roll out complete: 2 new pods have been updated...",
        None,
    ),
    ("one-not-ready", sts(ready=1), False, "Waiting for 1 pods to be ready...", None),
    ("none-ready", sts(ready=0), False, "Waiting for 2 pods to be ready...", None),
    ("ready-checked-before-updated", sts(ready=1, updated=0), False, "Waiting for 1 pods to be ready...", None),
    (
        "partition0-not-updated",
        sts(updated=1, current_rev="stack-old"),
        False,
        "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...",
        None,
    ),
    (
        "partition0-updated-ignores-current-revision",
        sts(updated=2, current_rev="stack-old"),
        True,
        "partitioned roll out complete: 2 new pods have been updated...",
        None,
    ),
    (
        "partition1-one-updated-is-done",
        sts(updated=1, rolling={"partition": 1}, current_rev="stack-old"),
        True,
        "partitioned roll out complete: 1 new pods have been updated...",
        None,
    ),
    (
        "partition1-none-updated",
        sts(replicas=3, ready=3, updated=0, rolling={"partition": 1}),
        False,
        "Waiting for partitioned roll out to finish: 0 out of 2 new pods have been updated...",
        None,
    ),
    (
        "partition-above-replicas",
        sts(updated=0, rolling={"partition": 5}),
        True,
        "partitioned roll out complete: 0 new pods have been updated...",
        None,
    ),
    (
        "rollingupdate-without-partition",
        sts(updated=0, rolling={"maxUnavailable": 1}),
        True,
        "partitioned roll out complete: 0 new pods have been updated...",
        None,
    ),
    (
        "no-rollingupdate-revisions-differ",
        sts(updated=1, rolling=None, current_rev="stack-old"),
        False,
        "waiting for statefulset rolling update to complete 1 pods at revision stack-new...",
        None,
    ),
    (
        "no-rollingupdate-complete",
        sts(current=2, rolling=None),
        True,
        "statefulset rolling update complete 2 pods at revision stack-new...",
        None,
    ),
    (
        "no-replicas-skips-ready-check",
        sts(replicas=None, ready=0, updated=0, rolling=None),
        True,
        "statefulset rolling update complete 2 pods at revision stack-new...",
        None,
    ),
    (
        "no-replicas-skips-partition-check",
        sts(replicas=None, ready=0, updated=0),
        True,
        "partitioned roll out complete: 0 new pods have been updated...",
        None,
    ),
    (
        "zero-replicas",
        sts(replicas=0, ready=0, updated=0, current=0),
        True,
        "partitioned roll out complete: 0 new pods have been updated...",
        None,
    ),
    (
        "strategy-type-absent-is-rolling",
        sts(strategy=None, updated=2),
        True,
        "statefulset rolling update complete 2 pods at revision stack-new...",
        None,
    ),
]


@pytest.mark.parametrize(
    ("statefulset", "done", "message", "error"), [row[1:] for row in KUBECTL_ROWS], ids=[row[0] for row in KUBECTL_ROWS]
)
def test_done_as_kubectl_decides(statefulset: dict[str, Any], done: bool, message: str, error: str | None) -> None:
    assert kubectl_status(statefulset) == (message, done, error)
    state = rollout_state(statefulset, [])
    assert (state.done, state.message, state.error) == (done, message, error)


def pod(
    name: str = "stack-1",
    *,
    uid: str | None = None,
    revision: str = "stack-new",
    ready: bool = True,
    deleting: str | None = None,
    waiting: str | None = None,
    waiting_message: str | None = None,
    init_waiting: str | None = None,
    restarts: int = 0,
    last_terminated: str | None = None,
    unschedulable: bool = False,
    image_id: str = "docker.io/xchem/fragalysis-stack@sha256:" + "a" * 64,
    created: str = "2026-11-26T10:00:00Z",
    scheduled: str = "2026-11-26T10:00:01Z",
    started: str | None = "2026-11-26T10:00:12.250Z",
    ready_at: str = "2026-11-26T10:03:00Z",
) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {"startedAt": started}} if started and not waiting else {}
    if waiting:
        state = {"waiting": {"reason": waiting, **({"message": waiting_message} if waiting_message else {})}}
    container: dict[str, Any] = {
        "name": "stack",
        "ready": ready,
        "restartCount": restarts,
        "state": state,
        "lastState": {"terminated": {"reason": last_terminated, "exitCode": 137}} if last_terminated else {},
        "image": "xchem/fragalysis-stack:latest",
        "imageID": image_id,
    }
    conditions = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient cpu.",
            "lastTransitionTime": scheduled,
        }
        if unschedulable
        else {"type": "PodScheduled", "status": "True", "lastTransitionTime": scheduled},
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ready_at if ready else created},
    ]
    metadata: dict[str, Any] = {
        "name": name,
        "uid": uid or f"uid-{name}-{revision}",
        "labels": {"name": "stack", "controller-revision-hash": revision},
        "creationTimestamp": created,
    }
    if deleting:
        metadata["deletionTimestamp"] = deleting
        metadata["deletionGracePeriodSeconds"] = 30
    status: dict[str, Any] = {"phase": "Running" if not unschedulable else "Pending", "conditions": conditions}
    if not unschedulable:
        status["containerStatuses"] = [container]
    if init_waiting:
        status["initContainerStatuses"] = [
            {"name": "migrate", "state": {"waiting": {"reason": init_waiting}}, "restartCount": 0}
        ]
    return {"metadata": metadata, "status": status}


STUCK_ROWS = [
    ("healthy", pod(), None),
    ("crashloop", pod(ready=False, waiting="CrashLoopBackOff", restarts=3), StuckReason.CRASH_LOOP_BACK_OFF),
    ("imagepullbackoff", pod(ready=False, waiting="ImagePullBackOff"), StuckReason.IMAGE_PULL_BACK_OFF),
    ("errimagepull", pod(ready=False, waiting="ErrImagePull"), StuckReason.ERR_IMAGE_PULL),
    (
        "createcontainerconfigerror",
        pod(ready=False, waiting="CreateContainerConfigError"),
        StuckReason.CREATE_CONTAINER_CONFIG_ERROR,
    ),
    ("invalidimagename", pod(ready=False, waiting="InvalidImageName"), StuckReason.INVALID_IMAGE_NAME),
    (
        "init-container-imagepull",
        pod(ready=False, init_waiting="ImagePullBackOff", started=None),
        StuckReason.IMAGE_PULL_BACK_OFF,
    ),
    ("containercreating-is-progress", pod(ready=False, waiting="ContainerCreating"), None),
    ("podinitializing-is-progress", pod(ready=False, waiting="PodInitializing"), None),
    ("oomkilled-not-ready", pod(ready=False, last_terminated="OOMKilled", restarts=1), StuckReason.OOM_KILLED),
    ("oomkilled-long-ago-but-ready", pod(ready=True, last_terminated="OOMKilled", restarts=1), None),
    ("error-exit-not-ready-no-history", pod(ready=False, last_terminated="Error", restarts=1), None),
    ("unschedulable", pod(ready=False, unschedulable=True), StuckReason.UNSCHEDULABLE),
    ("terminating-never-stuck", pod(ready=False, waiting="CrashLoopBackOff", deleting="2026-11-26T10:05:00Z"), None),
    ("starting-not-ready-yet", pod(ready=False), None),
]


@pytest.mark.parametrize(("raw", "reason"), [row[1:] for row in STUCK_ROWS], ids=[row[0] for row in STUCK_ROWS])
def test_stuck_reasons(raw: dict[str, Any], reason: StuckReason | None) -> None:
    state = pod_state(raw, "stack-new")
    assert state.stuck_reason == reason
    assert state.stuck == (reason is not None)
    if reason is not None:
        assert state.stuck_message


def test_waiting_message_is_kept() -> None:
    raw = pod(ready=False, waiting="ErrImagePull", waiting_message="manifest for xchem/fragalysis-stack:nope not found")
    assert (
        pod_state(raw, "stack-new").stuck_message
        == "container stack: manifest for xchem/fragalysis-stack:nope not found"
    )


def test_growing_restart_count_is_stuck_only_against_the_same_pod() -> None:
    first = pod_state(pod(ready=False, last_terminated="Error", restarts=1), "stack-new")
    assert first.stuck_reason is None
    grown = pod_state(pod(ready=False, last_terminated="Error", restarts=2), "stack-new", first)
    assert grown.stuck_reason == StuckReason.RESTARTING
    assert "1 to 2" in (grown.stuck_message or "")
    replaced = pod_state(pod(uid="another", ready=False, restarts=2), "stack-new", first)
    assert replaced.stuck_reason is None
    now_ready = pod_state(pod(ready=True, restarts=3), "stack-new", first)
    assert now_ready.stuck_reason is None


def test_restart_growth_through_rollout_state_previous() -> None:
    statefulset = sts(ready=1)
    before = rollout_state(statefulset, [pod(ready=False, last_terminated="Error", restarts=1)])
    after = rollout_state(statefulset, [pod(ready=False, last_terminated="Error", restarts=4)], before)
    assert [p.stuck_reason for p in after.stuck_pods] == [StuckReason.RESTARTING]


def test_pods_updated_ready_terminating_and_order() -> None:
    statefulset = sts(ready=1, updated=1, current_rev="stack-old", current=1)
    pods = [
        pod("stack-0", revision="stack-old", ready=True),
        pod("stack-1", revision="stack-new", ready=False, waiting="ContainerCreating"),
        pod("stack-10", revision="stack-old", ready=True, deleting="2026-11-26T10:05:00.5Z"),
    ]
    state = rollout_state(statefulset, pods)
    assert [p.name for p in state.pods] == ["stack-10", "stack-1", "stack-0"]
    assert [p.name for p in state.updated_pods] == ["stack-1"]
    assert [p.name for p in state.ready_pods] == ["stack-10", "stack-0"]
    assert [p.name for p in state.terminating_pods] == ["stack-10"]
    assert state.pods[0].deleting_at == datetime(2026, 11, 26, 10, 5, 0, 500000, tzinfo=UTC)
    # deletionTimestamp is the request time plus the grace period: the deletion was asked for 30 s earlier.
    assert state.pods[0].terminating_at == datetime(2026, 11, 26, 10, 4, 30, 500000, tzinfo=UTC)
    assert not state.done
    assert state.message == "Waiting for 1 pods to be ready..."
    assert "stack-1 (rev stack-new, updated, not ready)" in state.describe()


def test_timestamps_come_from_the_object() -> None:
    state = pod_state(pod(), "stack-new")
    assert state.created_at == datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    assert state.scheduled_at == datetime(2026, 11, 26, 10, 0, 1, tzinfo=UTC)
    assert state.started_at == datetime(2026, 11, 26, 10, 0, 12, 250000, tzinfo=UTC)
    assert state.ready_at == datetime(2026, 11, 26, 10, 3, 0, tzinfo=UTC)
    assert state.image_ids == {"stack": "docker.io/xchem/fragalysis-stack@sha256:" + "a" * 64}
    not_ready = pod_state(pod(ready=False, started=None), "stack-new")
    assert (not_ready.ready_at, not_ready.started_at) == (None, None)


@pytest.mark.parametrize(
    ("name", "ordinal"), [("stack-0", 0), ("stack-12", 12), ("my-stack-3", 3), ("stack", None), ("stack-x", None)]
)
def test_pod_ordinal(name: str, ordinal: int | None) -> None:
    assert pod_ordinal(name) == ordinal


def test_pod_state_is_frozen() -> None:
    state = pod_state(pod(), "stack-new")
    assert isinstance(state, PodState)
    with pytest.raises(AttributeError):
        state.ready = False  # type: ignore[misc]
