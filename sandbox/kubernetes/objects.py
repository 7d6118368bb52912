"""Building, defaulting and validating the objects: Namespaces, StatefulSets, their Pods and revisions."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from sandbox.kubernetes.errors import invalid
from sandbox.scenario import PodTimings, StatefulSetSpec

Obj = dict[str, Any]

REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def namespace(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


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


def default_pull_policy(image: str) -> str:
    """The apiserver's default: ``Always`` for ``:latest`` or no tag, else ``IfNotPresent``; the Fragalysis
    templates set ``Always`` for the moving tags ``latest`` and ``stable`` too (FACTS.md)."""
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag in ("latest", "stable") else "IfNotPresent"


def statefulset_from_scenario(ns: str, spec: StatefulSetSpec, timings: PodTimings) -> Obj:
    """The StatefulSet the scenario declares, as the one-time AWX deploy playbook would have created it."""
    port = 5432 if spec.image.split("/")[-1].startswith("postgres") else 80
    container = {
        "name": spec.container,
        "image": spec.image,
        "imagePullPolicy": default_pull_policy(spec.image),
        "ports": [{"containerPort": port, "name": "http" if port == 80 else "postgres", "protocol": "TCP"}],
        # FACTS.md: tcp readiness probe with a long initial delay
        "readinessProbe": {
            "tcpSocket": {"port": port},
            "initialDelaySeconds": int(timings.readiness_delay_seconds),
            "periodSeconds": 10,
        },
    }
    return default_statefulset(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": spec.name, "namespace": ns, "labels": dict(spec.labels)},
            "spec": {
                "replicas": spec.replicas,
                "serviceName": spec.name,
                "podManagementPolicy": spec.pod_management_policy,
                "selector": {"matchLabels": dict(spec.labels)},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": spec.partition}},
                "template": {"metadata": {"labels": dict(spec.labels)}, "spec": {"containers": [container]}},
            },
        }
    )


def default_statefulset(obj: Obj) -> Obj:
    """Fill in the defaults the apiserver sets on a StatefulSet (so that a re-applied manifest hashes the same)."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {})
    if "creationTimestamp" not in template["metadata"]:
        template["metadata"]["creationTimestamp"] = None
    pod_spec = template.setdefault("spec", {})
    pod_spec.setdefault("restartPolicy", "Always")
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    pod_spec.setdefault("dnsPolicy", "ClusterFirst")
    pod_spec.setdefault("securityContext", {})
    pod_spec.setdefault("schedulerName", "default-scheduler")
    for container in pod_spec.get("containers") or []:
        if isinstance(container, dict):
            _default_container(container)
    obj.setdefault("status", {"replicas": 0, "availableReplicas": 0})
    return obj


def _default_container(container: Obj) -> None:
    image = str(container.get("image", "")).rsplit("/", 1)[-1]
    # the apiserver's own default: Always for ":latest" or no tag, IfNotPresent otherwise
    tagged = "@" in image or (":" in image and not image.endswith(":latest"))
    container.setdefault("imagePullPolicy", "IfNotPresent" if tagged else "Always")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = container.get(probe_name)
        if isinstance(probe, dict):
            probe.setdefault("timeoutSeconds", 1)
            probe.setdefault("periodSeconds", 10)
            probe.setdefault("successThreshold", 1)
            probe.setdefault("failureThreshold", 3)


def validate_statefulset(obj: Obj, old: Obj | None = None) -> None:
    """Raise 422 Invalid for what the apiserver's validation would reject (the common cases)."""
    name = str(obj.get("metadata", {}).get("name", ""))
    causes: list[tuple[str, str]] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise invalid("apps", "StatefulSet", "statefulsets", name, [("spec", "Required value")])
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        causes.append(("spec.replicas", f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0"))
    selector = spec.get("selector")
    labels = (spec.get("template") or {}).get("metadata", {}).get("labels") or {}
    if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.append(("spec.selector", "Required value"))
    else:
        wanted = selector.get("matchLabels") or {}
        if any(labels.get(k) != v for k, v in wanted.items()):
            causes.append(
                (
                    "spec.template.metadata.labels",
                    f"Invalid value: {json.dumps(labels)}: `selector` does not match template `labels`",
                )
            )
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers:
        causes.append(("spec.template.spec.containers", "Required value"))
    else:
        for index, container in enumerate(containers):
            if not isinstance(container, dict) or not container.get("name"):
                causes.append((f"spec.template.spec.containers[{index}].name", "Required value"))
            elif not container.get("image"):
                causes.append((f"spec.template.spec.containers[{index}].image", "Required value"))
    policy = spec.get("podManagementPolicy")
    if policy not in ("OrderedReady", "Parallel"):
        causes.append(
            ("spec.podManagementPolicy", f'Unsupported value: "{policy}": supported values: "OrderedReady", "Parallel"')
        )
    if old is not None:
        immutable = ("selector", "serviceName", "podManagementPolicy", "volumeClaimTemplates")
        if any(spec.get(k) != old["spec"].get(k) for k in immutable):
            causes.append(
                (
                    "spec",
                    "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                    "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' "
                    "are forbidden",
                )
            )
    if causes:
        raise invalid("apps", "StatefulSet", "statefulsets", name, causes)


def revision_name(sts: Obj) -> str:
    """``<name>-<hash of spec.template>``, the hash encoded like the controller's (``rand.SafeEncodeString``)."""
    template = json.dumps(sts["spec"]["template"], sort_keys=True, separators=(",", ":"))
    collisions = sts.get("status", {}).get("collisionCount") or 0
    digest = hashlib.sha256(f"{template}/{collisions}".encode()).digest()
    number = str(int.from_bytes(digest[:4], "big"))
    return str(sts["metadata"]["name"]) + "-" + "".join(_SAFE[int(c) % len(_SAFE)] for c in number.encode())


def controller_revision(sts: Obj, revision: str, number: int) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": revision,
            "namespace": sts["metadata"]["namespace"],
            "labels": {**(sts["spec"]["template"]["metadata"].get("labels") or {}), REVISION_LABEL: revision},
            "ownerReferences": [owner_reference(sts)],
        },
        "data": {"spec": {"template": {**copy.deepcopy(sts["spec"]["template"]), "$patch": "replace"}}},
        "revision": number,
    }


def owner_reference(sts: Obj) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": sts["metadata"]["name"],
        "uid": sts["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def ordinal_of(sts_name: str, pod_name: str) -> int | None:
    prefix = sts_name + "-"
    if not pod_name.startswith(prefix):
        return None
    rest = pod_name[len(prefix) :]
    return int(rest) if rest.isdigit() else None


def new_pod(sts: Obj, ordinal: int, revision: str, template: Obj) -> Obj:
    """A Pod as the StatefulSet controller creates it from ``template`` (the revision's pod template)."""
    name = f"{sts['metadata']['name']}-{ordinal}"
    meta = template.get("metadata") or {}
    labels = {
        **(meta.get("labels") or {}),
        REVISION_LABEL: revision,
        POD_NAME_LABEL: name,
        POD_INDEX_LABEL: str(ordinal),
    }
    spec = copy.deepcopy(template.get("spec") or {})
    spec["hostname"] = name
    spec["subdomain"] = sts["spec"].get("serviceName", "")
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    pod: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": sts["metadata"]["name"] + "-",
            "namespace": sts["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(sts)],
        },
        "spec": spec,
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }
    annotations = meta.get("annotations")
    if annotations:
        pod["metadata"]["annotations"] = dict(annotations)
    return pod


def is_running_and_ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))
