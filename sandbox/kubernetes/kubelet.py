"""The kubelet (and scheduler) of the emulated cluster: moves each new Pod through its life.

Pending -> PodScheduled (schedule_seconds; a pod that does not fit on the node stays Pending, Unschedulable, and
is tried again every ``SCHEDULER_RETRY_SECONDS``) -> image pull, resolving the tag in the registry emulator at
that moment (ErrImagePull/ImagePullBackOff while it is missing) -> Running, container started but not ready
(start_seconds) -> Ready after readiness_delay_seconds. A crash-loop fault (scenario.CrashLoopFault: by namespace,
StatefulSet, new revision and the image the pod runs) makes the container exit after crash_seconds and restart
with a growing back-off (CrashLoopBackOff), never Ready. Deleting a Pod sets its deletionTimestamp; it stays
Terminating for terminate_seconds and is then gone. Every modelled duration goes through ``clock.sleep``.

Along the way it writes what the real components write: core/v1 Events (the scheduler's Scheduled and
FailedScheduling; the kubelet's Pulling, Pulled, Failed, BackOff, Created, Started, Killing) and each container's
log (``application``: the start-up lines; a crashing container's traceback as its last lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sandbox.clock import isoformat
from sandbox.emulator import ImageStore, Runtime
from sandbox.kubernetes import application
from sandbox.kubernetes.events import KUBELET, NORMAL, SCHEDULER, WARNING, EventRecorder
from sandbox.kubernetes.logs import LogStore
from sandbox.kubernetes.node import HOST_IP, NODE, insufficient_message, unschedulable_message
from sandbox.kubernetes.objects import REVISION_LABEL, Obj, image_reference
from sandbox.kubernetes.store import Store
from sandbox.scenario import CrashLoopFault, UnschedulableFault

__all__ = ["HOST_IP", "NODE", "Kubelet", "PodEvent"]

BACKOFF_START = 10.0
BACKOFF_MAX = 300.0
"""Kubelet's image-pull and crash back-off: 10 s doubling up to 5 minutes (modelled seconds)."""
SCHEDULER_RETRY_SECONDS = 300.0
"""An unschedulable pod is tried again when the scheduler flushes its unschedulable queue (5 minutes) if nothing in
the cluster changed before."""
BACKOFF_EVENT_SECONDS = 60.0
"""While a container waits in crash back-off, the kubelet's periodic pod sync repeats the BackOff event."""


@dataclass(frozen=True)
class PodEvent:
    """One step in a pod's life, for tests that check the order of a roll-out."""

    namespace: str
    name: str
    ordinal: int | None
    revision: str
    event: str
    """created, unschedulable, scheduled, ErrImagePull, ImagePullBackOff, pulled, running, CrashLoopBackOff,
    ready, terminating, deleted."""
    time: datetime
    uid: str

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["time"] = isoformat(self.time)
        return data


class _PodGone(Exception):
    """The pod was deleted (or replaced by a new pod of the same name) while its life went on."""


def container_path(name: str) -> str:
    """The involvedObject.fieldPath of a container's events."""
    return f"spec.containers{{{name}}}"


def image_size(digest: str) -> int:
    """A stable, plausible image size in bytes for the Pulled event (the registry emulator keeps no layers)."""
    return 150_000_000 + int(digest.removeprefix("sha256:")[:8] or "0", 16) % 400_000_000


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` truncated to milliseconds: 312ms, 10s, 1.5s, 2m3s."""
    millis = round(seconds * 1000)
    if millis < 1000:
        return f"{millis}ms"
    minutes, rest = divmod(millis, 60_000)
    text = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{minutes}m{text}" if minutes else text


class Kubelet:
    """Runs one task per live pod and records every step in ``events``; pulls resolve tags in ``images``."""

    def __init__(
        self, runtime: Runtime, store: Store, images: ImageStore, recorder: EventRecorder, logs: LogStore
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.images = images
        self.recorder = recorder
        self.logs = logs
        self.events: list[PodEvent] = []
        self.node_images: set[tuple[str, str]] = set()
        """Image references (``image_reference``) the node has pulled: IfNotPresent does not pull them again."""
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._next_ip = 1

    # ------------------------------------------------------------ records

    def record(self, pod: Obj, event: str) -> None:
        meta = pod["metadata"]
        ordinal = meta.get("labels", {}).get("apps.kubernetes.io/pod-index")
        self.events.append(
            PodEvent(
                namespace=meta["namespace"],
                name=meta["name"],
                ordinal=int(ordinal) if ordinal is not None and ordinal.isdigit() else None,
                revision=meta.get("labels", {}).get(REVISION_LABEL, ""),
                event=event,
                time=self.runtime.clock.now(),
                uid=meta.get("uid", ""),
            )
        )

    def _event(self, pod: Obj, kind: str, reason: str, message: str, container: str = "") -> None:
        """A core/v1 Event from this kubelet about ``pod`` (about one of its containers when ``container``)."""
        path = container_path(container) if container else ""
        self.recorder.record(KUBELET, pod, kind, reason, message, field_path=path)

    def pod_ip(self) -> str:
        self._next_ip += 1
        return f"10.244.0.{self._next_ip % 250 + 2}"

    def write_start(self, pod: Obj, container: str, container_id: str, image: str, when: datetime) -> None:
        """The log of a container that started healthy (also used for the pods the emulator starts with)."""
        log = self.logs.open(pod["metadata"]["uid"], container, container_id)
        for line in application.start_lines(image, when, crashing=False):
            log.write(when, line)

    # ------------------------------------------------------------ life

    def start(self, pod: Obj, *, crash_candidate: bool, owner: str) -> None:
        """Start the life of a new pod (already stored, phase Pending)."""
        uid = pod["metadata"]["uid"]
        self.record(pod, "created")
        self._tasks[uid] = self.runtime.spawn(self._live(pod, crash_candidate, owner), name=f"pod-{uid}")

    def terminate(self, pod: Obj, grace_seconds: int | None = None) -> Obj:
        """Begin deleting a pod: deletionTimestamp now + grace, gone after terminate_seconds."""
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            return pod
        task = self._tasks.pop(meta["uid"], None)
        if task is not None:
            task.cancel()
        grace = pod.get("spec", {}).get("terminationGracePeriodSeconds", 30) if grace_seconds is None else grace_seconds
        now = self.runtime.clock.now()
        meta["deletionTimestamp"] = isoformat(now + timedelta(seconds=grace))
        meta["deletionGracePeriodSeconds"] = grace
        updated = self.store.update("pods", pod)
        self.record(updated, "terminating")
        for cs in (updated.get("status") or {}).get("containerStatuses") or []:
            if (cs.get("state") or {}).get("running") is not None:
                self._event(updated, NORMAL, "Killing", f"Stopping container {cs['name']}", cs["name"])
        self.logs.end_pod(meta["uid"])
        self.runtime.spawn(self._remove(updated, grace), name=f"terminate-{meta['uid']}")
        return updated

    async def _remove(self, pod: Obj, grace: int) -> None:
        timings = self.runtime.scenario.kubernetes.pod_timings
        if grace > 0:
            await self.runtime.clock.sleep(min(timings.terminate_seconds, float(grace)))
        meta = pod["metadata"]
        current = self.store.get("pods", meta["namespace"], meta["name"])
        if current is not None and current["metadata"].get("uid") == meta["uid"]:
            gone = self.store.delete("pods", meta["namespace"], meta["name"])
            if gone is not None:
                self.record(gone, "deleted")
        self.logs.forget_pod(meta["uid"])

    def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        self.logs.close()

    def _update(self, pod: Obj, change: Callable[[Obj], None]) -> Obj:
        """Apply ``change(pod)`` to the stored pod (if it is still this pod and not terminating) and store it."""
        meta = pod["metadata"]
        current = self.store.get("pods", meta["namespace"], meta["name"])
        if current is None or current["metadata"]["uid"] != meta["uid"] or current["metadata"].get("deletionTimestamp"):
            raise _PodGone
        change(current)
        return self.store.update("pods", current)

    async def _live(self, pod: Obj, crash_candidate: bool, owner: str) -> None:
        with contextlib.suppress(_PodGone):
            await self._run(pod, crash_candidate, owner)

    async def _run(self, pod: Obj, crash_candidate: bool, owner: str) -> None:
        timings = self.runtime.scenario.kubernetes.pod_timings
        await self.runtime.clock.sleep(timings.schedule_seconds)
        pod = await self._schedule(pod, crash_candidate, owner)
        containers = {c["name"]: c for c in pod["spec"].get("containers", [])}
        image_ids = await self._pull(pod, containers)
        await self.runtime.clock.sleep(timings.start_seconds)
        pod = await self._run_containers(pod, containers, image_ids, crash_candidate, owner)
        await self.runtime.clock.sleep(timings.readiness_delay_seconds)
        ready_at = isoformat(self.runtime.clock.now())

        def ready(p: Obj) -> None:
            status = p["status"]
            for cs in status["containerStatuses"]:
                cs["ready"] = True
            _set_condition(status, "Ready", "True", ready_at)
            _set_condition(status, "ContainersReady", "True", ready_at)

        pod = self._update(pod, ready)
        self.record(pod, "ready")
        self._tasks.pop(pod["metadata"]["uid"], None)

    async def _schedule(self, pod: Obj, new_revision: bool, owner: str) -> Obj:
        """The scheduler: bind the pod to the node once it fits (FailedScheduling until then); an unschedulable
        fault (``new_revision``: the pod was created at a revision other than the StatefulSet's currentRevision)
        makes it never fit while the fault is on."""
        clock = self.runtime.clock
        while True:
            others = [
                p
                for p in self.store.list("pods")
                if p["spec"].get("nodeName") == NODE
                and p["metadata"]["uid"] != pod["metadata"]["uid"]
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            ]
            fault = self._unschedulable_fault(pod, owner, new_revision)
            message = insufficient_message([fault.resource]) if fault else unschedulable_message(pod, others)
            if message is None:
                break
            now = isoformat(clock.now())

            def unschedulable(p: Obj, message: str = message, now: str | None = now) -> None:
                conditions = p["status"].setdefault("conditions", [])
                if not any(c.get("type") == "PodScheduled" and c.get("message") == message for c in conditions):
                    p["status"]["conditions"] = [
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "lastProbeTime": None,
                            "lastTransitionTime": now,
                            "reason": "Unschedulable",
                            "message": message,
                        }
                    ]

            pod = self._update(pod, unschedulable)
            self.recorder.record(SCHEDULER, pod, WARNING, "FailedScheduling", message, action="Scheduling")
            self.record(pod, "unschedulable")
            await clock.sleep(SCHEDULER_RETRY_SECONDS)

        now = isoformat(clock.now())
        names = [c["name"] for c in pod["spec"].get("containers", [])]
        images = {c["name"]: c["image"] for c in pod["spec"].get("containers", [])}

        def schedule(p: Obj) -> None:
            p["spec"]["nodeName"] = NODE
            status = p["status"]
            status.update(
                {
                    "phase": "Pending",
                    "hostIP": HOST_IP,
                    "hostIPs": [{"ip": HOST_IP}],
                    "startTime": now,
                    "conditions": [
                        _condition("PodReadyToStartContainers", "False", now),
                        _condition("Initialized", "True", now),
                        _condition("Ready", "False", now, "ContainersNotReady", names),
                        _condition("ContainersReady", "False", now, "ContainersNotReady", names),
                        _condition("PodScheduled", "True", now),
                    ],
                    "containerStatuses": [
                        {
                            "name": n,
                            "image": images[n],
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "started": False,
                            "state": {"waiting": {"reason": "ContainerCreating"}},
                            "lastState": {},
                        }
                        for n in names
                    ],
                }
            )

        pod = self._update(pod, schedule)
        meta = pod["metadata"]
        message = f"Successfully assigned {meta['namespace']}/{meta['name']} to {NODE}"
        self.recorder.record(SCHEDULER, pod, NORMAL, "Scheduled", message, action="Binding")
        self.record(pod, "scheduled")
        return pod

    async def _pull(self, pod: Obj, containers: dict[str, Obj]) -> dict[str, str]:
        """Pull every container's image: the tag is resolved in the registry emulator now, not when the pod was
        created; a missing one fails (ErrImagePull) and is tried again after a growing back-off. Returns digests."""
        clock = self.runtime.clock
        timings = self.runtime.scenario.kubernetes.pod_timings
        image_ids: dict[str, str] = {}
        backoff = BACKOFF_START
        while True:
            missing = [n for n in containers if n not in image_ids]
            for n in missing:
                image = containers[n]["image"]
                if not self._present(containers[n]):
                    self._event(pod, NORMAL, "Pulling", f'Pulling image "{image}"', n)
                digest = None if self._unpullable(image) else self.images.resolve(image)
                if digest is not None:
                    image_ids[n] = digest
            missing = [n for n in containers if n not in image_ids]
            if not missing:
                break
            pod = self._set_waiting(pod, missing, "ErrImagePull", containers)
            for n in missing:
                image = containers[n]["image"]
                self._event(pod, WARNING, "Failed", f'Failed to pull image "{image}": {self._pull_error(image)}', n)
                self._event(pod, WARNING, "Failed", "Error: ErrImagePull", n)
            self.record(pod, "ErrImagePull")
            await clock.sleep(1.0)
            pod = self._set_waiting(pod, missing, "ImagePullBackOff", containers)
            for n in missing:
                self._event(pod, NORMAL, "BackOff", f'Back-off pulling image "{containers[n]["image"]}"', n)
                self._event(pod, WARNING, "Failed", "Error: ImagePullBackOff", n)
            self.record(pod, "ImagePullBackOff")
            await clock.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
        await clock.sleep(timings.pull_seconds)
        for n, container in containers.items():
            self._pulled(pod, container, image_ids[n], timings.pull_seconds)
        self.record(pod, "pulled")
        return image_ids

    def _present(self, container: Obj) -> bool:
        """IfNotPresent (or Never) and the node has the image: no pull."""
        policy = container.get("imagePullPolicy", "IfNotPresent")
        return policy != "Always" and image_reference(container["image"]) in self.node_images

    def _pulled(self, pod: Obj, container: Obj, digest: str, seconds: float) -> None:
        image, name = container["image"], container["name"]
        if self._present(container):
            self._event(pod, NORMAL, "Pulled", f'Container image "{image}" already present on machine', name)
            return
        took = go_duration(seconds)
        message = (
            f'Successfully pulled image "{image}" in {took} ({took} including waiting). '
            f"Image size: {image_size(digest)} bytes."
        )
        self._event(pod, NORMAL, "Pulled", message, name)
        self.node_images.add(image_reference(image))

    async def _run_containers(
        self, pod: Obj, containers: dict[str, Obj], image_ids: dict[str, str], crash_candidate: bool, owner: str
    ) -> Obj:
        """Create and start the containers; while they crash (the crash-loop fault), restart them after a
        growing back-off. Returns the pod once they run."""
        clock = self.runtime.clock
        timings = self.runtime.scenario.kubernetes.pod_timings
        images = {n: c["image"] for n, c in containers.items()}
        ip = self.pod_ip()
        backoff = BACKOFF_START
        while True:
            now = clock.now()
            started = isoformat(now)
            container_ids = {n: "containerd://" + secrets.token_hex(32) for n in containers}

            def run(p: Obj, started: str | None = started, ids: dict[str, str] = container_ids) -> None:
                status = p["status"]
                status["phase"] = "Running"
                status["podIP"] = ip
                status["podIPs"] = [{"ip": ip}]
                _set_condition(status, "PodReadyToStartContainers", "True", started)
                for cs in status["containerStatuses"]:
                    name = cs["name"]
                    repo, suffix = image_reference(images[name])
                    cs.update(
                        {
                            "image": repo + suffix,
                            "imageID": f"{repo}@{image_ids[name]}",
                            "containerID": ids[name],
                            "started": True,
                            "ready": False,
                            "state": {"running": {"startedAt": started}},
                        }
                    )

            pod = self._update(pod, run)
            for n in containers:
                self._event(pod, NORMAL, "Created", f"Created container: {n}", n)
                self._event(pod, NORMAL, "Started", f"Started container {n}", n)
            self.record(pod, "running")
            fault = self._crash_fault(pod, owner, crash_candidate, images)
            logs = {n: self.logs.open(pod["metadata"]["uid"], n, container_ids[n]) for n in containers}
            for n, log in logs.items():
                for line in application.start_lines(images[n], now, crashing=fault is not None):
                    log.write(now, line)
            if fault is None:
                return pod

            await clock.sleep(timings.crash_seconds)
            crashed_at = clock.now()
            for n, log in logs.items():
                for line in application.crash_lines(images[n], crashed_at, fault.error):
                    log.write(crashed_at, line)
                log.end()
            finished = isoformat(crashed_at)

            def crash(
                p: Obj, started: str | None = started, finished: str | None = finished, b: float = backoff
            ) -> None:
                for cs in p["status"]["containerStatuses"]:
                    cs["restartCount"] = cs.get("restartCount", 0) + 1
                    cs["started"] = False
                    cs["ready"] = False
                    cs["lastState"] = {
                        "terminated": {
                            "exitCode": 1,
                            "reason": "Error",
                            "startedAt": started,
                            "finishedAt": finished,
                            "containerID": cs.get("containerID"),
                        }
                    }
                    cs["state"] = {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off {int(b)}s restarting failed container={cs['name']} "
                            f"pod={p['metadata']['name']}_{p['metadata']['namespace']}({p['metadata']['uid']})",
                        }
                    }

            pod = self._update(pod, crash)
            self.record(pod, "CrashLoopBackOff")
            await self._back_off(pod, list(containers), backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            for n, container in containers.items():
                # a restart pulls again unless the policy lets the node use the image it has
                if not self._present(container):
                    self._event(pod, NORMAL, "Pulling", f'Pulling image "{container["image"]}"', n)
                self._pulled(pod, container, image_ids[n], 0.4)

    async def _back_off(self, pod: Obj, names: list[str], seconds: float) -> None:
        """Wait out a crash back-off; the kubelet's pod syncs meanwhile repeat the BackOff event."""
        meta = pod["metadata"]
        left = seconds
        while True:
            for n in names:
                message = (
                    f"Back-off restarting failed container {n} in pod {meta['name']}_{meta['namespace']}({meta['uid']})"
                )
                self._event(pod, WARNING, "BackOff", message, n)
            step = min(left, BACKOFF_EVENT_SECONDS)
            await self.runtime.clock.sleep(step)
            left -= step
            if left <= 0:
                return

    def _crash_fault(self, pod: Obj, owner: str, new_revision: bool, images: dict[str, str]) -> CrashLoopFault | None:
        """The crash-loop fault (read now, so it can be switched at run time) that applies to this pod, if any;
        ``new_revision``: the pod was created at a revision other than the StatefulSet's currentRevision;
        ``images``: the pod's container images (its spec's references, as the kubelet pulled them)."""
        namespace = pod["metadata"]["namespace"]
        running = {image_reference(image) for image in images.values()}
        return next(
            (
                f
                for f in self.runtime.faults.crashloop
                if f.namespace == namespace
                and f.statefulset == owner
                and (new_revision or not f.only_new_revision)
                and (f.image is None or image_reference(f.image) in running)
            ),
            None,
        )

    def _unschedulable_fault(self, pod: Obj, owner: str, new_revision: bool) -> UnschedulableFault | None:
        """The unschedulable fault (read now) that applies to this pod, if any."""
        namespace = pod["metadata"]["namespace"]
        return next(
            (
                f
                for f in self.runtime.faults.unschedulable
                if f.namespace == namespace and f.statefulset == owner and (new_revision or not f.only_new_revision)
            ),
            None,
        )

    def _unpullable(self, image: str) -> bool:
        """The unpullable-images fault (read now) names this image."""
        return image_reference(image) in {image_reference(i) for i in self.runtime.faults.unpullable_images}

    def _pull_error(self, image: str) -> str:
        return _access_denied(image) if self._unpullable(image) else _not_found(image)

    def _set_waiting(self, pod: Obj, names: list[str], reason: str, containers: dict[str, Obj]) -> Obj:
        def change(p: Obj) -> None:
            for cs in p["status"]["containerStatuses"]:
                if cs["name"] not in names:
                    continue
                image = containers[cs["name"]]["image"]
                if reason == "ErrImagePull":
                    message = self._pull_error(image)
                else:
                    message = f'Back-off pulling image "{image}"'
                cs["state"] = {"waiting": {"reason": reason, "message": message}}

        return self._update(pod, change)


def _not_found(image: str) -> str:
    """containerd's answer for a tag the registry does not have."""
    return _pull_failed(image, "NotFound", "{ref}: not found")


def _access_denied(image: str) -> str:
    """containerd's answer when the registry refuses the node's pull (a private repository, no pull secret)."""
    return _pull_failed(
        image,
        "Unknown",
        "pull access denied, repository does not exist or may require authorization: server message: "
        "insufficient_scope: authorization failed",
    )


def _pull_failed(image: str, code: str, why: str) -> str:
    """containerd's pull error for ``image`` (``why`` may name the reference as ``{ref}``)."""
    repo, suffix = image_reference(image)
    ref = repo + suffix
    return (
        f'rpc error: code = {code} desc = failed to pull and unpack image "{ref}": failed to resolve reference '
        f'"{ref}": ' + why.replace("{ref}", ref)
    )


def _condition(kind: str, status: str, when: str | None, reason: str = "", names: list[str] | None = None) -> Obj:
    condition: Obj = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": when}
    if reason:
        condition["reason"] = reason
        condition["message"] = f"containers with unready status: [{' '.join(names or [])}]"
    return condition


def _set_condition(status: Obj, kind: str, value: str, when: str | None) -> None:
    for condition in status.setdefault("conditions", []):
        if condition["type"] == kind:
            if condition["status"] != value:
                condition["status"] = value
                condition["lastTransitionTime"] = when
                condition.pop("reason", None)
                condition.pop("message", None)
            return
    status["conditions"].append(_condition(kind, value, when))
