"""The Kubernetes emulator: an apiserver with a StatefulSet controller and a kubelet (see issue 2 and
FACTS.md "Kubernetes StatefulSet roll-outs").

Modules: ``store`` (objects, resourceVersions, watch history), ``api`` (HTTP verbs), ``watch`` (streams),
``resources`` (discovery), ``patch`` (JSON/merge/strategic merge), ``selectors``, ``table`` (kubectl's
server-side printing), ``objects`` (building and defaulting objects), ``controller``, ``kubelet`` (with the
scheduler's check in ``node``), ``events`` (core/v1 Events), ``logs`` (container logs and ``pods/log``) and
``application`` (what the containers print).

In-process API (call on the sandbox's loop, e.g. ``sandbox.call(sandbox.kubernetes.pods, "staging-stack")``):
``statefulset(ns, name)``, ``pods(ns, selector)``, ``pod(ns, name)``, ``pod_events(ns)``, ``namespaces()``,
``write_log(ns, pod, container, text)``.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sandbox.clock import isoformat
from sandbox.emulator import Emulator, ImageStore, Runtime
from sandbox.kubernetes import objects
from sandbox.kubernetes.api import Api
from sandbox.kubernetes.controller import StatefulSetController, stop_task
from sandbox.kubernetes.errors import fault_status
from sandbox.kubernetes.events import EventRecorder
from sandbox.kubernetes.kubelet import Kubelet
from sandbox.kubernetes.logs import LogStore
from sandbox.kubernetes.node import HOST_IP, NODE
from sandbox.kubernetes.objects import image_reference
from sandbox.kubernetes.store import Store

__all__ = ["KubernetesEmulator"]

Obj = dict[str, Any]
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class KubernetesEmulator(Emulator):
    """The emulated cluster: namespaces, StatefulSets, their pods and controller revisions."""

    name = "kubernetes"

    def __init__(self, runtime: Runtime, *, images: ImageStore) -> None:
        super().__init__(runtime)
        self.store = Store(runtime.clock, runtime.scenario.kubernetes.history_size)
        self.images = images
        self.recorder = EventRecorder(self.store, runtime.clock)
        self.logs = LogStore()
        self.kubelet = Kubelet(runtime, self.store, images, self.recorder, self.logs)
        self.controller = StatefulSetController(self.store, self.kubelet, self.recorder)
        self.api = Api(self)
        self._controller_task: asyncio.Task[Any] | None = None

    def routes(self) -> list[BaseRoute]:
        return [Route("/{path:path}", self.api.handle, methods=_METHODS)]

    def fault_response(self, status: int, message: str, headers: dict[str, str]) -> Response:
        error = fault_status(status, message, headers)
        error.headers.update(headers)
        return error.response()

    async def start(self) -> None:
        self._seed()
        self._controller_task = self.runtime.spawn(self.controller.run(), name="kubernetes-controller")

    async def stop(self) -> None:
        self.store.close_watches()
        self.kubelet.stop()
        await stop_task(self._controller_task)
        self._controller_task = None

    # ------------------------------------------------------------ initial state

    def _seed(self) -> None:
        """The scenario's namespaces, each StatefulSet with all pods Running and Ready, created a while ago."""
        scenario = self.runtime.scenario.kubernetes
        now = self.runtime.clock.now()
        long_ago = now - timedelta(days=3)
        for name in ("default", "kube-system"):
            self._seed_namespace(name, long_ago)
        for ns in scenario.namespaces:
            self._seed_namespace(ns.name, long_ago)
            for spec in ns.statefulsets:
                sts = objects.statefulset_from_scenario(ns.name, spec, scenario.pod_timings)
                sts["metadata"]["creationTimestamp"] = isoformat(long_ago)
                sts["metadata"]["generation"] = 1
                sts = self.store.create("statefulsets", sts)
                revision = objects.revision_name(sts)
                self.store.create("controllerrevisions", objects.controller_revision(sts, revision, 1))
                for ordinal in range(spec.replicas):
                    self._seed_pod(sts, ordinal, revision, long_ago + timedelta(minutes=ordinal * 3))
                sts["status"] = {
                    "observedGeneration": 1,
                    "replicas": spec.replicas,
                    "readyReplicas": spec.replicas,
                    "currentReplicas": spec.replicas,
                    "updatedReplicas": spec.replicas,
                    "currentRevision": revision,
                    "updateRevision": revision,
                    "collisionCount": 0,
                    "availableReplicas": spec.replicas,
                }
                self.store.update("statefulsets", sts)

    def _seed_namespace(self, name: str, when: Any) -> None:
        if self.store.get("namespaces", "", name) is None:
            obj = objects.namespace(name)
            obj["metadata"]["creationTimestamp"] = isoformat(when)
            self.store.create("namespaces", obj)

    def _seed_pod(self, sts: Obj, ordinal: int, revision: str, created: Any) -> None:
        pod = objects.new_pod(sts, ordinal, revision, sts["spec"]["template"])
        pod["metadata"]["creationTimestamp"] = isoformat(created)
        pod["spec"]["nodeName"] = NODE
        started_at = created + timedelta(seconds=15)
        started = isoformat(started_at)
        ready = isoformat(created + timedelta(minutes=3))
        statuses = []
        for container in pod["spec"]["containers"]:
            image = container["image"]
            repo, suffix = image_reference(image)
            digest = self.images.resolve(image) or "sha256:" + "0" * 64
            self.kubelet.node_images.add((repo, suffix))
            statuses.append(
                {
                    "name": container["name"],
                    "image": repo + suffix,
                    "imageID": f"{repo}@{digest}",
                    "containerID": "containerd://" + secrets.token_hex(32),
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": started}},
                    "lastState": {},
                }
            )
        pod["status"] = {
            "phase": "Running",
            "qosClass": "BestEffort",
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": self.kubelet.pod_ip(),
            "startTime": isoformat(created),
            "conditions": [
                {"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": when}
                for kind, when in (
                    ("PodReadyToStartContainers", started),
                    ("Initialized", isoformat(created)),
                    ("Ready", ready),
                    ("ContainersReady", ready),
                    ("PodScheduled", isoformat(created)),
                )
            ],
            "containerStatuses": statuses,
        }
        pod["status"]["podIPs"] = [{"ip": pod["status"]["podIP"]}]
        pod = self.store.create("pods", pod)
        for container, status in zip(pod["spec"]["containers"], statuses, strict=True):
            self.kubelet.write_start(pod, container["name"], status["containerID"], container["image"], started_at)

    # ------------------------------------------------------------ in-process API (call on the loop)

    def statefulset(self, namespace: str, name: str) -> Obj | None:
        """A copy of the StatefulSet, or None."""
        return self.store.get("statefulsets", namespace, name)

    def pods(self, namespace: str, selector: dict[str, str] | None = None) -> list[Obj]:
        """Copies of the pods in ``namespace`` whose labels include ``selector``, by name."""
        wanted = selector or {}
        return [
            pod
            for pod in self.store.list("pods", namespace)
            if all(pod["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
        ]

    def pod(self, namespace: str, name: str) -> Obj | None:
        return self.store.get("pods", namespace, name)

    def namespaces(self) -> list[str]:
        return [ns["metadata"]["name"] for ns in self.store.list("namespaces")]

    def pod_events(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """The recorded pod lifecycle steps (``PodEvent.as_dict``: namespace, name, ordinal, revision, event,
        time, uid), oldest first; events: created, unschedulable, scheduled, ErrImagePull, ImagePullBackOff, pulled,
        running, CrashLoopBackOff, ready, terminating, deleted. (The core/v1 Events clients read are served by the
        API: ``GET /api/v1/namespaces/{ns}/events``.)"""
        return [e.as_dict() for e in self.kubelet.events if namespace is None or e.namespace == namespace]

    def write_log(self, namespace: str, pod: str, container: str, text: str) -> bool:
        """The application in the pod's running ``container`` prints ``text`` now (one line or several); False when
        that container is not running."""
        obj = self.store.get("pods", namespace, pod)
        statuses = ((obj or {}).get("status") or {}).get("containerStatuses") or []
        status = next((cs for cs in statuses if cs.get("name") == container), None)
        if status is None or (status.get("state") or {}).get("running") is None:
            return False
        log = self.logs.get(status.get("containerID", ""))
        if log is None or log.ended:
            return False
        log.write(self.runtime.clock.now(), text)
        return True

    @property
    def resource_version(self) -> int:
        """The store's current resourceVersion (the etcd revision)."""
        return self.store.rv
