"""The pure part of following a StatefulSet roll-out: is it done, and which pods are stuck and why.

``rollout_state(statefulset, pods)`` works on plain dicts as the Kubernetes API returns them (raw JSON, or
``ApiClient.sanitize_for_serialization`` of the typed models), so it can be table-tested without a cluster.

"Done" follows ``kubectl rollout status`` exactly (k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go,
``StatefulSetStatusViewer.Status``), messages included. Stuck pods follow FACTS.md "Kubernetes StatefulSet
roll-outs": StatefulSets have no progress deadline, so a stuck roll-out is only visible in its pods.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from clients.timestamps import parse_time

REVISION_LABEL = "controller-revision-hash"


class StuckReason(StrEnum):
    """Why a pod cannot make progress on its own (FACTS.md)."""

    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    ERR_IMAGE_PULL = "ErrImagePull"
    CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
    INVALID_IMAGE_NAME = "InvalidImageName"
    OOM_KILLED = "OOMKilled"
    RESTARTING = "Restarting"
    """``restartCount`` grew since the previous state and the pod is not ready."""
    UNSCHEDULABLE = "Unschedulable"


WAITING_REASONS = frozenset(
    {
        StuckReason.CRASH_LOOP_BACK_OFF,
        StuckReason.IMAGE_PULL_BACK_OFF,
        StuckReason.ERR_IMAGE_PULL,
        StuckReason.CREATE_CONTAINER_CONFIG_ERROR,
        StuckReason.INVALID_IMAGE_NAME,
    }
)


def pod_ordinal(name: str) -> int | None:
    """The ordinal of a StatefulSet pod name (``stack-1`` -> 1)."""
    head, _, tail = name.rpartition("-")
    return int(tail) if head and tail.isdigit() else None


def _condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


@dataclass(frozen=True)
class PodState:
    """One pod, as the roll-out sees it.

    Attributes:
        name: the pod name (``stack-1``); a replaced pod keeps its name and gets a new ``uid``.
        uid: the pod's uid.
        ordinal: its ordinal, from the name.
        revision: its ``controller-revision-hash`` label.
        updated: the revision is the StatefulSet's ``updateRevision``.
        ready: condition Ready is True.
        terminating: it has a ``deletionTimestamp``.
        phase: ``status.phase`` (Pending, Running, ...).
        restarts: the sum of its containers' ``restartCount``.
        stuck_reason: why it is stuck, or None.
        stuck_message: the kubelet's or scheduler's words for it.
        image_ids: ``containerStatuses[].imageID`` by container name.
        created_at, deleting_at, scheduled_at, started_at, ready_at: timestamps from the object
            (``creationTimestamp``, ``deletionTimestamp``, PodScheduled and Ready ``lastTransitionTime`` when
            True, the earliest container ``startedAt``).
        terminating_at: when the deletion was asked for. The API server sets ``deletionTimestamp`` to that
            moment plus the grace period (``deletionGracePeriodSeconds``), so this subtracts it.
    """

    name: str
    uid: str
    ordinal: int | None
    revision: str | None
    updated: bool
    ready: bool
    terminating: bool
    phase: str | None
    restarts: int
    stuck_reason: StuckReason | None
    stuck_message: str | None
    image_ids: Mapping[str, str]
    created_at: datetime | None
    deleting_at: datetime | None
    terminating_at: datetime | None
    scheduled_at: datetime | None
    started_at: datetime | None
    ready_at: datetime | None

    @property
    def stuck(self) -> bool:
        return self.stuck_reason is not None

    def describe(self) -> str:
        """``stack-1 (rev abc, updated, not ready, CrashLoopBackOff)`` for messages."""
        parts = [f"rev {self.revision}", "updated" if self.updated else "old", "ready" if self.ready else "not ready"]
        if self.terminating:
            parts.append("terminating")
        if self.stuck_reason:
            parts.append(str(self.stuck_reason))
        return f"{self.name} ({', '.join(parts)})"


@dataclass(frozen=True)
class RolloutState:
    """The roll-out as ``kubectl rollout status`` sees it, plus the pods.

    Attributes:
        done: kubectl would stop waiting (True also when it cannot tell: see ``error``).
        message: kubectl's message, without its trailing newline.
        error: kubectl's error when it cannot tell (update strategy not RollingUpdate), else None.
        generation / observed_generation / replicas / ready_replicas / updated_replicas / current_replicas /
        current_revision / update_revision / partition: the StatefulSet's fields.
        pods: the pods, highest ordinal first (the order the controller replaces them in).
    """

    done: bool
    message: str
    error: str | None
    generation: int
    observed_generation: int
    replicas: int | None
    ready_replicas: int
    updated_replicas: int
    current_replicas: int
    current_revision: str | None
    update_revision: str | None
    partition: int | None
    pods: tuple[PodState, ...]

    @property
    def stuck_pods(self) -> tuple[PodState, ...]:
        return tuple(pod for pod in self.pods if pod.stuck)

    @property
    def updated_pods(self) -> tuple[PodState, ...]:
        return tuple(pod for pod in self.pods if pod.updated and not pod.terminating)

    @property
    def ready_pods(self) -> tuple[PodState, ...]:
        return tuple(pod for pod in self.pods if pod.ready)

    @property
    def terminating_pods(self) -> tuple[PodState, ...]:
        return tuple(pod for pod in self.pods if pod.terminating)

    def describe(self) -> str:
        """kubectl's message and one phrase per pod, for errors and logs."""
        pods = "; ".join(pod.describe() for pod in self.pods) or "no pods"
        return f"{self.message} [{pods}]"


def kubectl_status(statefulset: Mapping[str, Any]) -> tuple[str, bool, str | None]:
    """``(message, done, error)`` exactly as kubectl's ``StatefulSetStatusViewer.Status`` decides them.

    Note kubectl's own quirk, kept on purpose: when ``spec.updateStrategy.rollingUpdate`` is present (the API
    server defaults it to ``{partition: 0}``), the partitioned branch decides, and ``currentRevision`` is not
    compared; only without ``rollingUpdate`` does kubectl wait for ``currentRevision == updateRevision``.
    """
    spec = statefulset.get("spec") or {}
    status = statefulset.get("status") or {}
    metadata = statefulset.get("metadata") or {}
    strategy = spec.get("updateStrategy") or {}
    # The API server defaults the strategy type to RollingUpdate; a raw object without it is treated the same.
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return "", True, "rollout status is only available for RollingUpdate strategy type"
    generation = int(metadata.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    if observed == 0 or generation > observed:
        return "Waiting for statefulset spec update to be observed...", False, None
    replicas = spec.get("replicas")
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    if replicas is not None and ready < int(replicas):
        return f"Waiting for {int(replicas) - ready} pods to be ready...", False, None
    rolling = strategy.get("rollingUpdate")
    if rolling is not None:
        partition = rolling.get("partition")
        if replicas is not None and partition is not None:
            wanted = int(replicas) - int(partition)
            if updated < wanted:
                message = f"Waiting for partitioned roll out to finish: {updated} out of {wanted} new pods"
                return f"{message} have been updated...", False, None
        return f"partitioned roll out complete: {updated} new pods have been updated...", True, None
    update_revision = status.get("updateRevision") or ""
    current_revision = status.get("currentRevision") or ""
    if update_revision != current_revision:
        return (
            f"waiting for statefulset rolling update to complete {updated} pods at revision {update_revision}...",
            False,
            None,
        )
    current = int(status.get("currentReplicas") or 0)
    return f"statefulset rolling update complete {current} pods at revision {current_revision}...", True, None


def _stuck(
    pod: Mapping[str, Any], ready: bool, restarts: int, previous: PodState | None
) -> tuple[StuckReason | None, str | None]:
    status = pod.get("status") or {}
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for container in statuses:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in WAITING_REASONS:
            message = waiting.get("message") or reason
            return StuckReason(reason), f"container {container.get('name')}: {message}"
    if ready:
        return None, None
    for container in statuses:
        for state_name in ("state", "lastState"):
            terminated = (container.get(state_name) or {}).get("terminated") or {}
            if terminated.get("reason") == StuckReason.OOM_KILLED:
                return StuckReason.OOM_KILLED, f"container {container.get('name')} was OOMKilled"
    if previous is not None and restarts > previous.restarts:
        return StuckReason.RESTARTING, f"restartCount grew from {previous.restarts} to {restarts}"
    scheduled = _condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == StuckReason.UNSCHEDULABLE:
        return StuckReason.UNSCHEDULABLE, scheduled.get("message") or "Unschedulable"
    return None, None


def pod_state(pod: Mapping[str, Any], update_revision: str | None, previous: PodState | None = None) -> PodState:
    """One pod's state; ``previous`` (the same pod, same uid, seen before) lets growing restarts count as stuck."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    name = str(metadata.get("name") or "")
    uid = str(metadata.get("uid") or "")
    revision = (metadata.get("labels") or {}).get(REVISION_LABEL)
    ready_condition = _condition(pod, "Ready")
    ready = bool(ready_condition and ready_condition.get("status") == "True")
    scheduled_condition = _condition(pod, "PodScheduled")
    containers = list(status.get("containerStatuses") or [])
    restarts = sum(int(c.get("restartCount") or 0) for c in containers)
    if previous is not None and previous.uid != uid:
        previous = None
    reason, message = _stuck(pod, ready, restarts, previous)
    terminating = metadata.get("deletionTimestamp") is not None
    deleting_at = parse_time(metadata.get("deletionTimestamp"))
    started = [
        parse_time(((c.get("state") or {}).get("running") or {}).get("startedAt"))
        or parse_time(((c.get("state") or {}).get("terminated") or {}).get("startedAt"))
        or parse_time(((c.get("lastState") or {}).get("terminated") or {}).get("startedAt"))
        for c in containers
    ]
    started_times = [t for t in started if t is not None]
    return PodState(
        name=name,
        uid=uid,
        ordinal=pod_ordinal(name),
        revision=revision,
        updated=revision is not None and revision == update_revision,
        ready=ready,
        terminating=terminating,
        phase=status.get("phase"),
        restarts=restarts,
        stuck_reason=None if terminating else reason,
        stuck_message=None if terminating else message,
        image_ids={str(c.get("name")): str(c["imageID"]) for c in containers if c.get("imageID")},
        created_at=parse_time(metadata.get("creationTimestamp")),
        deleting_at=deleting_at,
        terminating_at=deleting_at - timedelta(seconds=float(metadata.get("deletionGracePeriodSeconds") or 0))
        if deleting_at
        else None,
        scheduled_at=parse_time(scheduled_condition.get("lastTransitionTime"))
        if scheduled_condition and scheduled_condition.get("status") == "True"
        else None,
        started_at=min(started_times) if started_times else None,
        ready_at=parse_time(ready_condition.get("lastTransitionTime")) if ready and ready_condition else None,
    )


def rollout_state(
    statefulset: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any]],
    previous: RolloutState | None = None,
) -> RolloutState:
    """Decide whether a StatefulSet roll-out is done (as ``kubectl rollout status``) and which pods are stuck.

    Args:
        statefulset: the StatefulSet as a dict (``metadata``, ``spec``, ``status``).
        pods: its pods as dicts (those matching its ``spec.selector``).
        previous: the state computed before, so that a pod whose ``restartCount`` grew counts as stuck.

    Returns:
        The ``RolloutState``; its pods are sorted highest ordinal first.
    """
    message, done, error = kubectl_status(statefulset)
    spec = statefulset.get("spec") or {}
    status = statefulset.get("status") or {}
    update_revision = status.get("updateRevision")
    before = {pod.uid: pod for pod in previous.pods} if previous else {}
    states = [
        pod_state(pod, update_revision, before.get(str((pod.get("metadata") or {}).get("uid") or ""))) for pod in pods
    ]
    states.sort(key=lambda p: (-(p.ordinal if p.ordinal is not None else -1), p.name, p.terminating))
    rolling = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
    replicas = spec.get("replicas")
    partition = rolling.get("partition")
    return RolloutState(
        done=done,
        message=message,
        error=error,
        generation=int((statefulset.get("metadata") or {}).get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        replicas=int(replicas) if replicas is not None else None,
        ready_replicas=int(status.get("readyReplicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        current_replicas=int(status.get("currentReplicas") or 0),
        current_revision=status.get("currentRevision"),
        update_revision=update_revision,
        partition=int(partition) if partition is not None else None,
        pods=tuple(states),
    )
