"""Server-side printing: the ``meta.k8s.io/v1`` Table that ``kubectl get`` asks for (``Accept:
application/json;as=Table;v=v1;g=meta.k8s.io``), with the columns the real apiserver prints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sandbox.kubernetes.objects import Obj

_NAME = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "priority": 0,
    "description": "Name must be unique within a namespace.",
}
_AGE = {
    "name": "Age",
    "type": "string",
    "format": "",
    "priority": 0,
    "description": "CreationTimestamp is a timestamp representing the server time when this object was created.",
}


def _col(name: str, kind: str = "string", priority: int = 0, description: str = "") -> dict[str, Any]:
    return {"name": name, "type": kind, "format": "", "description": description or name, "priority": priority}


COLUMNS: dict[str, list[dict[str, Any]]] = {
    "pods": [
        _NAME,
        _col("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
        _col("Status", description="The aggregate status of the containers in this pod."),
        _col("Restarts", description="The number of times the containers in this pod have been restarted."),
        _AGE,
        _col("IP", priority=1, description="IP address allocated to the pod."),
        _col("Node", priority=1, description="Name of the node this pod runs on."),
        _col("Nominated Node", priority=1, description="Name of the node nominated for this pod."),
        _col("Readiness Gates", priority=1, description="Readiness gates of this pod."),
    ],
    "statefulsets": [
        _NAME,
        _col("Ready", description="Number of the pod with ready state"),
        _AGE,
        _col("Containers", priority=1, description="Names of each container in the template."),
        _col("Images", priority=1, description="Images referenced by each container in the template."),
    ],
    "namespaces": [_NAME, _col("Status", description="The status of the namespace"), _AGE],
    "events": [
        _col("Last Seen", description="The time at which the most recent occurrence of this event was recorded."),
        _col("Type", description="Type of this event (Normal, Warning), new types could be added in the future"),
        _col(
            "Reason",
            description="This should be a short, machine understandable string that gives the reason "
            "for the transition into the object's current status.",
        ),
        _col("Object", description="The object that this event is about."),
        _col(
            "Subobject",
            priority=1,
            description="If referring to a piece of an object instead of an entire "
            "object, this string should contain a valid JSON/Go field access statement.",
        ),
        _col("Source", priority=1, description="The component reporting this event."),
        _col("Message", description="A human-readable description of the status of this operation."),
        _col("First Seen", priority=1, description="The time at which the event was first recorded."),
        _col("Count", priority=1, description="The number of times this event has occurred."),
        {**_NAME, "priority": 1},
    ],
    "controllerrevisions": [
        _NAME,
        _col("Controller", description="Controller of the object"),
        _col("Revision", "integer", description="Revision of the ControllerRevision"),
        _AGE,
    ],
}


def human_duration(seconds: float) -> str:
    """kubectl's ``duration.HumanDuration``: 45s, 5m30s, 3h12m, 4d, ..."""
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    return f"{hours // 24 // 365}y"


def _age(obj: Obj, now: datetime) -> str:
    created = obj["metadata"].get("creationTimestamp")
    if not created:
        return "<unknown>"
    then = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    return human_duration((now - then).total_seconds())


def pod_status_text(pod: Obj) -> str:
    """The STATUS column, as the apiserver's ``printPod`` computes it (a waiting or terminated reason wins over
    the phase; a pod being deleted shows Terminating)."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for cs in reversed(status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
        elif terminated:
            reason = f"ExitCode:{terminated.get('exitCode', 0)}"
    if pod["metadata"].get("deletionTimestamp") and status.get("phase") not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return str(reason)


def _cells(resource: str, obj: Obj, now: datetime) -> list[Any]:
    name = obj["metadata"]["name"]
    if resource == "pods":
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        statuses = status.get("containerStatuses") or []
        total = len(spec.get("containers") or [])
        ready = sum(1 for cs in statuses if cs.get("ready"))
        restarts = sum(int(cs.get("restartCount", 0)) for cs in statuses)
        last = max(
            (cs.get("lastState", {}).get("terminated", {}).get("finishedAt") or "" for cs in statuses), default=""
        )
        restart_text = str(restarts)
        if restarts and last:
            then = datetime.fromisoformat(last.replace("Z", "+00:00"))
            restart_text = f"{restarts} ({human_duration((now - then).total_seconds())} ago)"
        return [
            name,
            f"{ready}/{total}",
            pod_status_text(obj),
            restart_text,
            _age(obj, now),
            status.get("podIP") or "<none>",
            spec.get("nodeName") or "<none>",
            "<none>",
            "<none>",
        ]
    if resource == "statefulsets":
        containers = obj["spec"]["template"]["spec"].get("containers") or []
        ready = (obj.get("status") or {}).get("readyReplicas", 0)
        return [
            name,
            f"{ready}/{obj['spec'].get('replicas', 1)}",
            _age(obj, now),
            ",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers),
        ]
    if resource == "namespaces":
        return [name, (obj.get("status") or {}).get("phase", "Active"), _age(obj, now)]
    if resource == "events":
        return _event_cells(obj, now)
    if resource == "controllerrevisions":
        owners = obj["metadata"].get("ownerReferences") or [{}]
        owner = owners[0]
        controller = f"statefulset.apps/{owner.get('name')}" if owner else "<none>"
        return [name, controller, obj.get("revision", 0), _age(obj, now)]
    return [name, _age(obj, now)]


def _since(stamp: Any, now: datetime) -> str:
    if not stamp:
        return "<unknown>"
    then = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    return human_duration((now - then).total_seconds())


def _event_cells(event: Obj, now: datetime) -> list[Any]:
    """The apiserver's ``printEvent``: a new-API event (eventTime, series) or a legacy one (first/last, count)."""
    first = _since(event.get("firstTimestamp") or event.get("eventTime"), now)
    last = _since(event["lastTimestamp"], now) if event.get("lastTimestamp") else first
    count = event.get("count") or 1
    series = event.get("series")
    if series:
        last, count = _since(series.get("lastObservedTime"), now), series.get("count", 1)
    ref = event.get("involvedObject") or {}
    kind = str(ref.get("kind", "")).lower()
    target = f"{kind}/{ref['name']}" if ref.get("name") else kind
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    instance = source.get("host") or event.get("reportingInstance") or ""
    return [
        last,
        event.get("type", ""),
        event.get("reason", ""),
        target,
        ref.get("fieldPath", ""),
        f"{component}, {instance}" if instance else component,
        str(event.get("message", "")).strip(),
        first,
        int(count),
        event["metadata"]["name"],
    ]


def table(resource: str, objs: list[Obj], now: datetime, include: str, rv: str | None) -> dict[str, Any]:
    """A Table of ``objs``; ``include`` is the ``includeObject`` parameter (None, Metadata or Object)."""
    rows = []
    for obj in objs:
        row: dict[str, Any] = {"cells": _cells(resource, obj, now)}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    result: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv} if rv else {},
        "columnDefinitions": COLUMNS.get(resource, [_NAME, _AGE]),
        "rows": rows,
    }
    return result
