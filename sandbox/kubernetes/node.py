"""The emulated cluster's one node, and the scheduler's check of whether a pod fits on it.

The scheduler's filters that a pod of this sandbox can fail: NodeAffinity (``spec.nodeSelector`` against the node's
labels) and NodeResourcesFit (the containers' requests against what the node has left). A pod that fails stays
Pending with ``PodScheduled=False`` reason Unschedulable and the scheduler's message, e.g. "0/1 nodes are
available: 1 Insufficient cpu. preemption: ...", which is also the message of its FailedScheduling event.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

NODE = "sandbox-node-1"
HOST_IP = "10.0.0.10"
CONTROL_PLANE = "sandbox-control-plane"
"""Where the scheduler runs (its events' reportingInstance is ``default-scheduler-<host>``)."""

LABELS = {
    "kubernetes.io/hostname": NODE,
    "kubernetes.io/os": "linux",
    "kubernetes.io/arch": "amd64",
}
ALLOCATABLE = {
    "cpu": Decimal(4),
    "memory": Decimal(16 * 2**30),
    "ephemeral-storage": Decimal(100 * 2**30),
    "pods": Decimal(110),
}

_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_SUFFIX: dict[str | None, Decimal] = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    **{s: Decimal(1000) ** (i + 1) for i, s in enumerate("kMGTPE")},
    **{s + "i": Decimal(1024) ** (i + 1) for i, s in enumerate("KMGTPE")},
}


def quantity(text: Any) -> Decimal:
    """A resource.Quantity (``500m``, ``2``, ``1Gi``, ``1e3``) as a number; what does not parse counts as 0."""
    match = _QUANTITY.match(str(text).strip())
    if match is None:
        return Decimal(0)
    try:
        return Decimal(match.group(1)) * _SUFFIX[match.group(2)]
    except InvalidOperation:
        return Decimal(0)


def requests(pod: dict[str, Any]) -> dict[str, Decimal]:
    """The sum of the containers' resource requests (a limit without a request counts as the request, as the
    apiserver's defaulting makes it)."""
    total: dict[str, Decimal] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name, value in wanted.items():
            total[name] = total.get(name, Decimal(0)) + quantity(value)
    return total


def unschedulable_message(pod: dict[str, Any], others: list[dict[str, Any]]) -> str | None:
    """None when ``pod`` fits on the node beside ``others`` (the pods already bound to it), else the scheduler's
    message for the one node it filtered out."""
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    if any(LABELS.get(key) != value for key, value in selector.items()):
        return (
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes "
            "are available: 1 Preemption is not helpful for scheduling."
        )
    used: dict[str, Decimal] = {"pods": Decimal(len(others))}
    for other in others:
        for name, value in requests(other).items():
            used[name] = used.get(name, Decimal(0)) + value
    wanted = {**requests(pod), "pods": Decimal(1)}
    short = sorted(
        name
        for name, value in wanted.items()
        if value > 0 and value > ALLOCATABLE.get(name, Decimal(0)) - used.get(name, Decimal(0))
    )
    if not short:
        return None
    return insufficient_message(short)


def insufficient_message(short: list[str]) -> str:
    """The scheduler's message for a pod that the node has too little of ``short`` (resource names) left for."""
    reasons = ", ".join(f"1 Insufficient {name}" if name != "pods" else "1 Too many pods" for name in short)
    return (
        f"0/1 nodes are available: {reasons}. preemption: 0/1 nodes are available: 1 No preemption victims found "
        "for incoming pod."
    )
