"""What a roll-out follower reports: the snapshot taken before a change, progress events, and the timing report.

All timestamps come from the Kubernetes objects themselves (FACTS.md "Per-pod timing"), never from the clock of
the machine that watches, so the report is true however late the watcher saw an event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from clients.rollout_state import StuckReason


@dataclass(frozen=True)
class SnapshotPod:
    """A pod as it was before the change."""

    name: str
    uid: str
    revision: str | None


@dataclass(frozen=True)
class RolloutSnapshot:
    """A StatefulSet before a change: what "new" will be measured against.

    Attributes:
        namespace, name: the StatefulSet.
        generation: ``metadata.generation``.
        observed_generation: ``status.observedGeneration``.
        update_revision, current_revision: ``status.updateRevision`` / ``currentRevision``.
        replicas: ``spec.replicas``.
        selector: the label selector of its pods, from ``spec.selector``.
        resource_version: the StatefulSet's ``resourceVersion`` when read.
        pods: its pods then.
        server: the API server URL (for messages).
        pods_resource_version: the pod list's resourceVersion: following starts watching from here, so
            nothing that happens after the snapshot is missed (unless the server compacted it: then 410 and a
            fresh list).
        statefulset_object, pod_objects: the objects as read (kept out of ``repr`` and comparisons).
    """

    namespace: str
    name: str
    generation: int
    observed_generation: int
    update_revision: str | None
    current_revision: str | None
    replicas: int | None
    selector: str
    resource_version: str
    pods: tuple[SnapshotPod, ...]
    server: str = ""
    pods_resource_version: str = ""
    statefulset_object: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    pod_objects: tuple[dict[str, Any], ...] = field(default=(), repr=False, compare=False)

    @property
    def pod_uids(self) -> frozenset[str]:
        return frozenset(pod.uid for pod in self.pods)

    def pod(self, name: str) -> SnapshotPod | None:
        return next((pod for pod in self.pods if pod.name == name), None)


@dataclass(frozen=True)
class PodTiming:
    """One pod's replacement.

    Attributes:
        name, ordinal: the pod (a replacement keeps the name).
        old_revision, new_revision: the ``controller-revision-hash`` before and after.
        terminating_at: the old pod's ``deletionTimestamp``.
        created_at: the new pod's ``creationTimestamp``.
        scheduled_at: its PodScheduled condition's ``lastTransitionTime``.
        started_at: its first container's ``startedAt``.
        ready_at: its Ready condition's ``lastTransitionTime``.
        image_id: ``containerStatuses[].imageID`` (the digest that really runs).
    """

    name: str
    ordinal: int | None
    old_revision: str | None = None
    new_revision: str | None = None
    terminating_at: datetime | None = None
    created_at: datetime | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    ready_at: datetime | None = None
    image_id: str | None = None

    @property
    def duration(self) -> timedelta | None:
        """From the old pod's termination (or the new pod's creation) to the new pod being Ready."""
        start = self.terminating_at or self.created_at
        return self.ready_at - start if start and self.ready_at else None


@dataclass(frozen=True)
class RolloutReport:
    """A roll-out's per-pod timings, highest ordinal first (the order the controller replaces pods).

    Attributes:
        namespace, statefulset: the StatefulSet.
        previous_revision: ``updateRevision`` in the snapshot.
        new_revision: ``updateRevision`` now (None while the change is not seen).
        done: whether ``kubectl rollout status`` would call it complete.
        message: kubectl's last message.
        pods: one ``PodTiming`` per replaced (or new) pod.
    """

    namespace: str
    statefulset: str
    previous_revision: str | None
    new_revision: str | None
    done: bool
    message: str
    pods: tuple[PodTiming, ...]

    @property
    def started_at(self) -> datetime | None:
        times = [t for pod in self.pods for t in (pod.terminating_at, pod.created_at) if t]
        return min(times) if times else None

    @property
    def finished_at(self) -> datetime | None:
        times = [pod.ready_at for pod in self.pods if pod.ready_at]
        return max(times) if times and all(pod.ready_at for pod in self.pods) else None

    @property
    def duration(self) -> timedelta | None:
        start, end = self.started_at, self.finished_at
        return end - start if start and end else None


@dataclass(frozen=True)
class RolloutEvent:
    """Base of the progress events."""

    namespace: str
    statefulset: str

    def describe(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class RolloutStarted(RolloutEvent):
    """A new ``updateRevision`` differs from the snapshot's: the controller starts replacing pods."""

    previous_revision: str | None
    update_revision: str | None
    generation: int

    def describe(self) -> str:
        return f"roll-out of {self.namespace}/{self.statefulset} started: revision {self.update_revision}"


@dataclass(frozen=True)
class RolloutProgress(RolloutEvent):
    """``kubectl rollout status``'s message changed."""

    message: str

    def describe(self) -> str:
        return self.message


@dataclass(frozen=True)
class PodEvent(RolloutEvent):
    """Something happened to one pod; ``at`` is the object's own timestamp (None when it has none)."""

    pod: str
    uid: str
    revision: str | None
    at: datetime | None

    def describe(self) -> str:
        what = type(self).__name__.removeprefix("Pod").lower()
        when = f" at {self.at.isoformat()}" if self.at else ""
        return f"pod {self.namespace}/{self.pod} (rev {self.revision}) {what}{when}"


@dataclass(frozen=True)
class PodTerminating(PodEvent):
    """The pod got a ``deletionTimestamp``."""


@dataclass(frozen=True)
class PodGone(PodEvent):
    """The pod object is deleted."""


@dataclass(frozen=True)
class PodCreated(PodEvent):
    """A pod that was not in the snapshot appeared."""


@dataclass(frozen=True)
class PodScheduled(PodEvent):
    """Condition PodScheduled turned True."""


@dataclass(frozen=True)
class PodStarted(PodEvent):
    """A container of the pod started running."""


@dataclass(frozen=True)
class PodReady(PodEvent):
    """Condition Ready turned True."""


@dataclass(frozen=True)
class PodStuck(PodEvent):
    """The pod is stuck (it may still recover within the grace period)."""

    reason: StuckReason
    message: str

    def describe(self) -> str:
        return f"pod {self.namespace}/{self.pod} (rev {self.revision}) stuck: {self.reason}: {self.message}"


@dataclass(frozen=True)
class RolloutDone(RolloutEvent):
    """``kubectl rollout status`` would say complete, and every updated pod runs the expected digest."""

    report: RolloutReport

    def describe(self) -> str:
        return f"roll-out of {self.namespace}/{self.statefulset} done: {self.report.message}"
