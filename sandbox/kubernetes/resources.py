"""The resources this apiserver serves, and discovery documents built from them (``/api``, ``/apis``, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Resource:
    """One REST resource, as discovery describes it."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = field(default=())

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version


_RW = ("create", "delete", "get", "list", "patch", "update", "watch")

NAMESPACES = Resource(
    "",
    "v1",
    "namespaces",
    "namespace",
    "Namespace",
    False,
    ("create", "get", "list", "patch", "update", "watch"),
    ("ns",),
)
PODS = Resource("", "v1", "pods", "pod", "Pod", True, ("delete", "get", "list", "watch"), ("po",), ("all",), ("log",))
EVENTS = Resource("", "v1", "events", "event", "Event", True, ("get", "list", "watch"), ("ev",))
"""Written by the emulated kubelet, scheduler and controllers only (``events.py``)."""
STATEFULSETS = Resource(
    "apps", "v1", "statefulsets", "statefulset", "StatefulSet", True, _RW, ("sts",), ("all",), ("status", "scale")
)
CONTROLLER_REVISIONS = Resource(
    "apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision", True, ("get", "list", "watch")
)

RESOURCES: tuple[Resource, ...] = (NAMESPACES, EVENTS, PODS, STATEFULSETS, CONTROLLER_REVISIONS)
SUBRESOURCE_VERBS = {"log": ("get",), "status": ("get", "patch", "update"), "scale": ("get", "patch", "update")}


def find(group: str, version: str, plural: str) -> Resource | None:
    return next((r for r in RESOURCES if (r.group, r.version, r.plural) == (group, version, plural)), None)


def version_info(git_version: str) -> dict[str, Any]:
    """``GET /version``."""
    parts = git_version.lstrip("v").split(".")
    return {
        "major": parts[0],
        "minor": parts[1] if len(parts) > 1 else "0",
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-08-13T07:28:49Z",
        "goVersion": "go1.22.5",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def core_versions(server_address: str) -> dict[str, Any]:
    """``GET /api`` (legacy discovery; kubectl falls back to it when the answer is not aggregated discovery)."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group(name: str) -> dict[str, Any]:
    versions = sorted({r.version for r in RESOURCES if r.group == name})
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def groups() -> dict[str, Any]:
    """``GET /apis``."""
    names = sorted({r.group for r in RESOURCES if r.group})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(n) for n in names]}


def group(name: str) -> dict[str, Any] | None:
    """``GET /apis/<group>``."""
    if not any(r.group == name for r in RESOURCES):
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name)}


def resource_list(group_name: str, version: str) -> dict[str, Any] | None:
    """``GET /api/v1`` or ``GET /apis/<group>/<version>``: an APIResourceList."""
    served = [r for r in RESOURCES if (r.group, r.version) == (group_name, version)]
    if not served:
        return None
    entries: list[dict[str, Any]] = []
    for r in served:
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entries.append(entry)
        for sub in r.subresources:
            entry = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced, "kind": r.kind}
            if sub == "scale":
                entry.update({"group": "autoscaling", "version": "v1", "kind": "Scale"})
            entries.append({**entry, "verbs": list(SUBRESOURCE_VERBS[sub])})
    gv = f"{group_name}/{version}" if group_name else version
    result: dict[str, Any] = {"kind": "APIResourceList", "groupVersion": gv, "resources": entries}
    if group_name:
        result["apiVersion"] = "v1"
    return result


def openapi_v3_root() -> dict[str, Any]:
    """``GET /openapi/v3``: the group-versions whose documents the server publishes."""
    paths = {}
    for gv in sorted({r.group_version for r in RESOURCES}):
        key = f"api/{gv}" if "/" not in gv else f"apis/{gv}"
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash=sandbox"}
    return {"paths": paths}


def openapi_v3_document(group_name: str, version: str) -> dict[str, Any] | None:
    """A minimal OpenAPI v3 document of one group-version: the item paths with their PATCH operation, its
    ``x-kubernetes-group-version-kind`` and the ``fieldValidation`` parameter, which is what kubectl looks for
    to decide that the server validates fields itself (so ``kubectl apply`` needs no client-side schema).
    There are no schemas: kubectl then computes strategic merge patches from its compiled-in types."""
    served = [r for r in RESOURCES if (r.group, r.version) == (group_name, version)]
    if not served:
        return None
    prefix = f"/apis/{group_name}/{version}" if group_name else f"/api/{version}"
    params = [
        {"name": name, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
        for name in ("dryRun", "fieldManager", "fieldValidation", "force")
    ]
    paths: dict[str, Any] = {}
    for r in served:
        item = (
            f"{prefix}/namespaces/{{namespace}}/{r.plural}/{{name}}"
            if r.namespaced
            else f"{prefix}/{r.plural}/{{name}}"
        )
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        operations: dict[str, Any] = {}
        for verb, method in (("get", "get"), ("patch", "patch"), ("update", "put"), ("delete", "delete")):
            if verb in r.verbs:
                operations[method] = {
                    "operationId": f"{verb}{r.kind}",
                    "parameters": params if method in ("patch", "put") else [],
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": verb,
                    "x-kubernetes-group-version-kind": gvk,
                }
        paths[item] = operations
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "sandbox"},
        "paths": paths,
        "components": {"schemas": {}},
    }
