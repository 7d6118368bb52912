"""The StatefulSet controller: RollingUpdate as the real one does it (FACTS.md "Kubernetes StatefulSet roll-outs").

Each pass over a StatefulSet, like ``defaultStatefulSetControl.updateStatefulSet`` in kube-controller-manager:
1. record the revision of the current ``spec.template`` (``<name>-<hash>``) as ``status.updateRevision``;
2. create missing pods in ordinal order (a pod below the partition gets the current revision, the others the
   update revision); with OrderedReady stop at the first pod that is not Running and Ready or is terminating;
3. scale down: delete the highest surplus ordinal, one at a time;
4. rolling update: from the highest ordinal down to the partition, delete the first pod not at the update
   revision (the pod is recreated at the update revision on a later pass), or wait for an unhealthy one;
5. write status: replicas, readyReplicas, currentReplicas, updatedReplicas, availableReplicas, revisions,
   observedGeneration; when every pod is updated and ready, currentRevision = updateRevision.

Step 2 comes before step 4, so with OrderedReady a pod that never becomes Ready (CrashLoopBackOff,
ImagePullBackOff) blocks the StatefulSet even after its template is reverted: the controller never deletes it for
the update. Someone must delete it; the controller then recreates it at the update revision. This is the
StatefulSet docs' "Forced rollback" (kubernetes/kubernetes#67250):
https://kubernetes.io/docs/concepts/workloads/controllers/statefulset/#forced-rollback
With Parallel, step 2 does not stop, and step 4 replaces the broken pod itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sandbox.kubernetes import objects
from sandbox.kubernetes.events import NORMAL, STATEFULSET_CONTROLLER, EventRecorder
from sandbox.kubernetes.kubelet import Kubelet
from sandbox.kubernetes.objects import REVISION_LABEL, Obj, is_running_and_ready, is_terminating
from sandbox.kubernetes.store import Change, Store

log = logging.getLogger(__name__)


class StatefulSetController:
    """Reconciles every StatefulSet whenever a StatefulSet or a Pod changes."""

    def __init__(self, store: Store, kubelet: Kubelet, recorder: EventRecorder) -> None:
        self.store = store
        self.kubelet = kubelet
        self.recorder = recorder
        self._wake = asyncio.Event()
        store.on_change(self._on_change)

    def _on_change(self, change: Change) -> None:
        if change.resource in ("pods", "statefulsets"):
            self._wake.set()

    async def run(self) -> None:
        """Reconcile until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            for sts in self.store.list("statefulsets"):
                try:
                    self.reconcile(sts)
                except Exception:  # one odd object must not stop the controller for every other
                    meta = sts.get("metadata", {})
                    log.exception("reconciling statefulset %s/%s failed", meta.get("namespace"), meta.get("name"))
            self._collect_orphans()
            # let the writes of this pass (which wake us again) settle into one more pass
            await asyncio.sleep(0)

    def _collect_orphans(self) -> None:
        """Garbage collection: pods whose StatefulSet is gone are deleted (background propagation)."""
        owners = {s["metadata"]["uid"] for s in self.store.list("statefulsets")}
        for pod in self.store.list("pods"):
            refs = pod["metadata"].get("ownerReferences") or []
            if refs and not is_terminating(pod) and not any(r.get("uid") in owners for r in refs):
                self.kubelet.terminate(pod)

    def _revision_template(self, sts: Obj, revision: str) -> Obj:
        cr = self.store.get("controllerrevisions", sts["metadata"]["namespace"], revision)
        if cr is None:
            return dict(sts["spec"]["template"])
        template: Obj = dict(cr["data"]["spec"]["template"])
        template.pop("$patch", None)
        return template

    def _ensure_revision(self, sts: Obj, revision: str) -> None:
        ns = sts["metadata"]["namespace"]
        if self.store.get("controllerrevisions", ns, revision) is not None:
            return
        owned = [
            cr
            for cr in self.store.list("controllerrevisions", ns)
            if any(r.get("uid") == sts["metadata"]["uid"] for r in cr["metadata"].get("ownerReferences") or [])
        ]
        number = max((cr.get("revision", 0) for cr in owned), default=0) + 1
        self.store.create("controllerrevisions", objects.controller_revision(sts, revision, number))

    def owned_pods(self, sts: Obj) -> dict[int, Obj]:
        pods: dict[int, Obj] = {}
        for pod in self.store.list("pods", sts["metadata"]["namespace"]):
            refs = pod["metadata"].get("ownerReferences") or []
            ordinal = objects.ordinal_of(sts["metadata"]["name"], pod["metadata"]["name"])
            if ordinal is not None and any(r.get("uid") == sts["metadata"]["uid"] for r in refs):
                pods[ordinal] = pod
        return pods

    def reconcile(self, sts: Obj) -> None:
        """One pass of the controller over one StatefulSet (synchronous: no other writes interleave)."""
        spec, status = sts["spec"], sts.get("status") or {}
        update_revision = objects.revision_name(sts)
        self._ensure_revision(sts, update_revision)
        current_revision = status.get("currentRevision") or update_revision
        replicas = int(spec.get("replicas", 1))
        rolling = spec.get("updateStrategy", {}).get("type", "RollingUpdate") == "RollingUpdate"
        partition = int((spec.get("updateStrategy", {}).get("rollingUpdate") or {}).get("partition") or 0)
        monotonic = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        pods = self.owned_pods(sts)
        self._act(sts, pods, replicas, partition, monotonic, rolling, current_revision, update_revision)
        self._write_status(sts, self.owned_pods(sts), current_revision, update_revision)

    def _act(
        self,
        sts: Obj,
        pods: dict[int, Obj],
        replicas: int,
        partition: int,
        monotonic: bool,
        rolling: bool,
        current_revision: str,
        update_revision: str,
    ) -> None:
        for ordinal in range(replicas):
            pod = pods.get(ordinal)
            if pod is None:
                revision = current_revision if rolling and ordinal < partition else update_revision
                self._create(sts, ordinal, revision, current_revision)
                if monotonic:
                    return
                continue
            if monotonic and (is_terminating(pod) or not is_running_and_ready(pod)):
                return
        surplus = sorted((o for o in pods if o >= replicas), reverse=True)
        for ordinal in surplus:
            pod = pods[ordinal]
            if is_terminating(pod):
                if monotonic:
                    return
                continue
            self._delete(sts, pod)
            if monotonic:
                return
        if not rolling:
            return  # OnDelete: pods change revision only when someone deletes them
        for ordinal in range(replicas - 1, partition - 1, -1):
            pod = pods.get(ordinal)
            if pod is None:
                return
            if _revision(pod) != update_revision and not is_terminating(pod):
                self._delete(sts, pod)
                return
            if is_terminating(pod) or not is_running_and_ready(pod):
                return

    def _create(self, sts: Obj, ordinal: int, revision: str, current_revision: str) -> None:
        template = self._revision_template(sts, revision)
        pod = objects.new_pod(sts, ordinal, revision, template)
        stored = self.store.create("pods", pod)
        self._pod_event(sts, "create", stored)
        # the crash-loop fault's only_new_revision: pods of a revision other than the one running before
        self.kubelet.start(stored, crash_candidate=revision != current_revision, owner=sts["metadata"]["name"])

    def _delete(self, sts: Obj, pod: Obj) -> None:
        self.kubelet.terminate(pod)
        self._pod_event(sts, "delete", pod)

    def _pod_event(self, sts: Obj, verb: str, pod: Obj) -> None:
        """SuccessfulCreate / SuccessfulDelete on the StatefulSet, worded as its controller words them."""
        message = f"{verb} Pod {pod['metadata']['name']} in StatefulSet {sts['metadata']['name']} successful"
        self.recorder.record(STATEFULSET_CONTROLLER, sts, NORMAL, f"Successful{verb.title()}", message)

    def _write_status(self, sts: Obj, pods: dict[int, Obj], current_revision: str, update_revision: str) -> None:
        counted: dict[str, Any] = {"replicas": 0, "ready": 0, "current": 0, "updated": 0}
        for pod in pods.values():
            counted["replicas"] += 1
            if is_running_and_ready(pod):
                counted["ready"] += 1
            if not is_terminating(pod):
                revision = _revision(pod)
                counted["current"] += revision == current_revision
                counted["updated"] += revision == update_revision
        current_replicas = counted["current"]
        if counted["updated"] == counted["replicas"] and counted["ready"] == counted["replicas"]:
            # completeRollingUpdate: every pod is at the update revision and ready
            current_revision, current_replicas = update_revision, counted["updated"]
        old = sts.get("status") or {}
        status = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": counted["replicas"],
            "readyReplicas": counted["ready"],
            "currentReplicas": current_replicas,
            "updatedReplicas": counted["updated"],
            "currentRevision": current_revision,
            "updateRevision": update_revision,
            "collisionCount": old.get("collisionCount", 0),
            "availableReplicas": counted["ready"],
        }
        if status != {k: old.get(k) for k in status}:
            latest = self.store.get("statefulsets", sts["metadata"]["namespace"], sts["metadata"]["name"])
            if latest is None or latest["metadata"]["uid"] != sts["metadata"]["uid"]:
                return
            latest["status"] = {**(latest.get("status") or {}), **status}
            self.store.update("statefulsets", latest)


def _revision(pod: Obj) -> str:
    return str(pod["metadata"].get("labels", {}).get(REVISION_LABEL, ""))


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
