"""The kubelet (and scheduler) of the emulated cluster: moves each new Pod through its life.

Pending -> PodScheduled (schedule_seconds) -> image pull, resolving the tag in the registry emulator at that
moment (ErrImagePull/ImagePullBackOff while it is missing) -> Running, container started but not ready
(start_seconds) -> Ready after readiness_delay_seconds. A crash-loop fault (scenario.CrashLoopFault: by namespace,
StatefulSet, new revision and the image the pod runs) makes the container exit after crash_seconds and restart
with a growing back-off (CrashLoopBackOff), never Ready. Deleting a Pod sets its deletionTimestamp; it stays
Terminating for terminate_seconds and is then gone. Every modelled duration goes through ``clock.sleep``.
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
from sandbox.kubernetes.objects import REVISION_LABEL, Obj
from sandbox.kubernetes.store import Store

NODE = "sandbox-node-1"
HOST_IP = "10.0.0.10"
BACKOFF_START = 10.0
BACKOFF_MAX = 300.0
"""Kubelet's image-pull and crash back-off: 10 s doubling up to 5 minutes (modelled seconds)."""


@dataclass(frozen=True)
class PodEvent:
    """One step in a pod's life, for tests that check the order of a roll-out."""

    namespace: str
    name: str
    ordinal: int | None
    revision: str
    event: str
    """created, scheduled, ErrImagePull, ImagePullBackOff, pulled, running, crashed, CrashLoopBackOff, ready,
    terminating, deleted."""
    time: datetime
    uid: str

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["time"] = isoformat(self.time)
        return data


def image_reference(image: str) -> tuple[str, str]:
    """``(repository, tag-or-digest suffix)`` with Docker's defaults: ``postgres:12`` ->
    ``("docker.io/library/postgres", ":12")``."""
    if "@" in image:
        name, suffix = image.split("@", 1)
        suffix = "@" + suffix
    else:
        slash = image.rfind("/")
        colon = image.rfind(":")
        name, suffix = (image[:colon], image[colon:]) if colon > slash else (image, ":latest")
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return name, suffix


class _PodGone(Exception):
    """The pod was deleted (or replaced by a new pod of the same name) while its life went on."""


class Kubelet:
    """Runs one task per live pod and records every step in ``events``; pulls resolve tags in ``images``."""

    def __init__(self, runtime: Runtime, store: Store, images: ImageStore) -> None:
        self.runtime = runtime
        self.store = store
        self.images = images
        self.events: list[PodEvent] = []
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

    def pod_ip(self) -> str:
        self._next_ip += 1
        return f"10.244.0.{self._next_ip % 250 + 2}"

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

    def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

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
        clock = self.runtime.clock
        timings = self.runtime.scenario.kubernetes.pod_timings
        names = [c["name"] for c in pod["spec"].get("containers", [])]
        images = {c["name"]: c["image"] for c in pod["spec"].get("containers", [])}

        await clock.sleep(timings.schedule_seconds)
        now = isoformat(clock.now())

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
        self.record(pod, "scheduled")

        # image pull: the tag is resolved in the registry emulator now, not when the pod was created
        image_ids: dict[str, str] = {}
        backoff = BACKOFF_START
        while True:
            missing = [n for n in names if n not in image_ids]
            for n in missing:
                digest = self.images.resolve(images[n])
                if digest is not None:
                    image_ids[n] = digest
            missing = [n for n in names if n not in image_ids]
            if not missing:
                break
            pod = self._set_waiting(pod, missing, "ErrImagePull", images)
            self.record(pod, "ErrImagePull")
            await clock.sleep(1.0)
            pod = self._set_waiting(pod, missing, "ImagePullBackOff", images)
            self.record(pod, "ImagePullBackOff")
            await clock.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
        await clock.sleep(timings.pull_seconds)
        self.record(pod, "pulled")
        await clock.sleep(timings.start_seconds)

        ip = self.pod_ip()
        backoff = BACKOFF_START
        while True:
            started = isoformat(clock.now())
            container_ids = {n: "containerd://" + secrets.token_hex(32) for n in names}

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
            self.record(pod, "running")
            if self._crashes(pod, owner, crash_candidate, images):
                await clock.sleep(timings.crash_seconds)
                finished = isoformat(clock.now())

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
                await clock.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            break

        await clock.sleep(timings.readiness_delay_seconds)
        ready_at = isoformat(clock.now())

        def ready(p: Obj) -> None:
            status = p["status"]
            for cs in status["containerStatuses"]:
                cs["ready"] = True
            _set_condition(status, "Ready", "True", ready_at)
            _set_condition(status, "ContainersReady", "True", ready_at)

        pod = self._update(pod, ready)
        self.record(pod, "ready")
        self._tasks.pop(pod["metadata"]["uid"], None)

    def _crashes(self, pod: Obj, owner: str, new_revision: bool, images: dict[str, str]) -> bool:
        """Whether the crash-loop fault (read now, so it can be switched at run time) applies to this pod;
        ``new_revision``: the pod was created at a revision other than the StatefulSet's currentRevision;
        ``images``: the pod's container images (its spec's references, as the kubelet pulled them)."""
        namespace = pod["metadata"]["namespace"]
        running = {image_reference(image) for image in images.values()}
        return any(
            f.namespace == namespace
            and f.statefulset == owner
            and (new_revision or not f.only_new_revision)
            and (f.image is None or image_reference(f.image) in running)
            for f in self.runtime.faults.crashloop
        )

    def _set_waiting(self, pod: Obj, names: list[str], reason: str, images: dict[str, str]) -> Obj:
        def change(p: Obj) -> None:
            for cs in p["status"]["containerStatuses"]:
                if cs["name"] not in names:
                    continue
                image = images[cs["name"]]
                repo, suffix = image_reference(image)
                if reason == "ErrImagePull":
                    ref = repo + suffix
                    message = (
                        f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": failed to '
                        f'resolve reference "{ref}": {ref}: not found'
                    )
                else:
                    message = f'Back-off pulling image "{image}"'
                cs["state"] = {"waiting": {"reason": reason, "message": message}}

        return self._update(pod, change)


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
