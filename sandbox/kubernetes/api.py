"""The HTTP face of the emulated apiserver: auth, discovery, and the REST verbs on the served resources.

Paths follow the real API: ``/api/v1/namespaces/{ns}/pods/{name}``, ``/apis/apps/v1/namespaces/{ns}/statefulsets``,
``/api/v1/pods`` (all namespaces), the deprecated ``/api/v1/watch/...`` prefix. Every error is a ``Status``.
"""

from __future__ import annotations

import copy
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from sandbox.emulator import Runtime
from sandbox.kubernetes import errors, objects, resources
from sandbox.kubernetes.errors import ApiError
from sandbox.kubernetes.kubelet import Kubelet
from sandbox.kubernetes.logs import LogStore, log_options, log_response
from sandbox.kubernetes.patch import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, apply_patch
from sandbox.kubernetes.resources import Resource
from sandbox.kubernetes.selectors import field_selector, label_selector
from sandbox.kubernetes.store import Store
from sandbox.kubernetes.table import table
from sandbox.kubernetes.watch import watch_response

Obj = dict[str, Any]
PUBLIC = {"/version", "/healthz", "/livez", "/readyz"}
"""Paths the apiserver's ``system:public-info-viewer`` role lets anyone read."""


@dataclass(frozen=True)
class Target:
    """What a resource path names."""

    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_prefix: bool


class ApiHost(Protocol):
    """What the HTTP face needs of its emulator (``KubernetesEmulator`` is one)."""

    runtime: Runtime
    store: Store
    kubelet: Kubelet
    logs: LogStore


class Api:
    """Dispatches every request of the emulator."""

    def __init__(self, emulator: ApiHost) -> None:
        self.emulator = emulator
        self.store = emulator.store

    async def handle(self, request: Request) -> Response:
        try:
            if request.url.path not in PUBLIC:
                self._authenticate(request)
            return await self._dispatch(request)
        except ApiError as error:
            return error.response()

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        settings = self.emulator.runtime.scenario.kubernetes
        if not header and settings.anonymous_auth:
            # a cluster whose anonymous user may do anything (off by default); a wrong token is still rejected
            # below, as the apiserver rejects it even with anonymous auth on
            return
        scheme, _, token = header.partition(" ")
        expected = settings.token
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise errors.unauthorized()

    # ------------------------------------------------------------ routing

    async def _dispatch(self, request: Request) -> Response:
        path = request.url.path
        parts = [p for p in path.split("/") if p]
        method = request.method
        if not parts:
            return JSONResponse({"paths": ["/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/version"]})
        if parts[0] in ("healthz", "livez", "readyz") and len(parts) == 1:
            return PlainTextResponse("ok")
        if parts == ["version"]:
            return JSONResponse(resources.version_info(self.emulator.runtime.scenario.kubernetes.version))
        if parts[0] == "openapi":
            return self._openapi(parts)
        discovery = self._discovery(request, parts)
        if discovery is not None:
            if method != "GET":
                raise errors.method_not_allowed()
            return JSONResponse(discovery)
        target = self._target(parts)
        if target is None:
            raise errors.unknown_path()
        return await self._serve(request, target)

    def _discovery(self, request: Request, parts: list[str]) -> Obj | None:
        # legacy discovery only: kubectl asks for aggregated discovery in Accept and falls back to these when the
        # answer's Content-Type is plain application/json
        if parts == ["api"]:
            return resources.core_versions(f"{request.url.hostname}:{request.url.port}")
        if parts == ["api", "v1"]:
            return resources.resource_list("", "v1")
        if parts == ["apis"]:
            return resources.groups()
        if len(parts) == 2 and parts[0] == "apis":
            return resources.group(parts[1])
        if len(parts) == 3 and parts[0] == "apis":
            return resources.resource_list(parts[1], parts[2])
        return None

    def _openapi(self, parts: list[str]) -> Response:
        # no OpenAPI v2 (kubectl tolerates its absence); a minimal v3 so that kubectl apply validates server-side
        if parts == ["openapi", "v3"]:
            return JSONResponse(resources.openapi_v3_root())
        document = None
        if len(parts) == 4 and parts[2] == "api":
            document = resources.openapi_v3_document("", parts[3])
        elif len(parts) == 5 and parts[2] == "apis":
            document = resources.openapi_v3_document(parts[3], parts[4])
        if document is None:
            raise errors.unknown_path()
        return JSONResponse(document)

    def _target(self, parts: list[str]) -> Target | None:
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        watch_prefix = bool(rest) and rest[0] == "watch"
        if watch_prefix:
            rest = rest[1:]
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            return None
        resource = resources.find(group, version, rest[0])
        if resource is None or (namespace is not None and not resource.namespaced):
            return None
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in resource.subresources:
            return None
        return Target(resource, namespace, name, sub, watch_prefix)

    # ------------------------------------------------------------ verbs

    async def _serve(self, request: Request, target: Target) -> Response:
        method, params = request.method, request.query_params
        r = target.resource
        if target.name is None:
            if method == "GET":
                watching = params.get("watch", "").lower() in ("true", "1") or target.watch_prefix
                if watching:
                    return self._watch(request, target)
                return self._list(request, target)
            if method == "POST":
                if target.namespace is None and r.namespaced:
                    raise errors.method_not_allowed()
                return self._create(await self._body(request), target, params.get("dryRun") == "All")
            raise errors.method_not_allowed()
        if target.watch_prefix:
            return self._watch(request, target)
        if target.subresource == "scale":
            return await self._scale(request, target)
        if target.subresource == "log":
            if method != "GET":
                raise errors.method_not_allowed()
            pod = self._get(target)
            return log_response(pod, log_options(request, pod, self.emulator.runtime.clock.now()), self.emulator.logs)
        if method == "GET":
            obj = self._get(target)
            return self._answer(request, target, obj)
        if method == "PUT":
            if "update" not in r.verbs:
                raise errors.method_not_allowed()
            return self._replace(await self._body(request), target, params.get("dryRun") == "All")
        if method == "PATCH":
            if "patch" not in r.verbs:
                raise errors.method_not_allowed()
            return await self._patch(request, target)
        if method == "DELETE":
            if "delete" not in r.verbs:
                raise errors.method_not_allowed()
            return await self._delete(request, target)
        raise errors.method_not_allowed()

    def _answer(self, request: Request, target: Target, obj: Obj, status_code: int = 200) -> Response:
        if wants_table(request):
            include = request.query_params.get("includeObject", "Metadata")
            body = table(target.resource.plural, [obj], self.emulator.runtime.clock.now(), include, None)
            return JSONResponse(body, status_code=status_code)
        return JSONResponse(obj, status_code=status_code)

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        content_type = request.headers.get("content-type", "application/json")
        try:
            if "yaml" in content_type:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as error:
            raise errors.bad_request(f"the object provided is unrecognized (must be of type object): {error}") from None

    def _get(self, target: Target) -> Obj:
        r = target.resource
        obj = self.store.get(r.plural, target.namespace or "", target.name or "")
        if obj is None:
            raise errors.not_found(r.group, r.plural, target.name or "")
        return obj

    def _predicate(self, request: Request, target: Target) -> Callable[[Obj], bool]:
        params = request.query_params
        labels = label_selector(params.get("labelSelector"))
        fields = field_selector(params.get("fieldSelector"), target.resource.kind)
        namespace, name = target.namespace, target.name

        def matches(obj: Obj) -> bool:
            meta = obj["metadata"]
            if namespace is not None and meta.get("namespace") != namespace:
                return False
            if name is not None and meta.get("name") != name:
                return False
            return labels(meta.get("labels") or {}) and fields(obj)

        return matches

    def _list(self, request: Request, target: Target) -> Response:
        r = target.resource
        matches = self._predicate(request, target)
        items = [o for o in self.store.list(r.plural, target.namespace) if matches(o)]
        rv = str(self.store.rv)
        if wants_table(request):
            include = request.query_params.get("includeObject", "Metadata")
            return JSONResponse(table(r.plural, items, self.emulator.runtime.clock.now(), include, rv))
        return JSONResponse(
            {"kind": f"{r.kind}List", "apiVersion": r.api_version, "metadata": {"resourceVersion": rv}, "items": items}
        )

    def _watch(self, request: Request, target: Target) -> Response:
        predicate = self._predicate(request, target)
        return watch_response(self.emulator.runtime, self.store, request, target.resource, predicate)

    # ------------------------------------------------------------ writes

    def _check_identity(self, body: Any, target: Target) -> Obj:
        r = target.resource
        if not isinstance(body, dict):
            raise errors.bad_request("the object provided is unrecognized (must be of type object)")
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if (kind is not None and kind != r.kind) or (api_version is not None and api_version != r.api_version):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version ({r.api_version})"
                if api_version != r.api_version
                else f"the kind in the data ({kind}) does not match the expected kind ({r.kind})"
            )
        body["kind"], body["apiVersion"] = r.kind, r.api_version
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if r.namespaced:
            ns = meta.get("namespace")
            if ns and ns != target.namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = target.namespace
        return body

    def _create(self, body: Any, target: Target, dry_run: bool) -> Response:
        r = target.resource
        obj = self._check_identity(body, target)
        meta = obj["metadata"]
        for server_field in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation"):
            meta.pop(server_field, None)
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(secrets.choice(objects._SAFE) for _ in range(5))
            else:
                raise errors.invalid(
                    r.group,
                    r.kind,
                    r.plural,
                    "",
                    [("metadata.name", "Required value: name or generateName is required")],
                )
        name = meta["name"]
        if r.namespaced and self.store.get("namespaces", "", target.namespace or "") is None:
            raise errors.not_found("", "namespaces", target.namespace or "")
        if self.store.get(r.plural, target.namespace or "", name) is not None:
            raise errors.already_exists(r.group, r.plural, name)
        if r.plural == "namespaces":
            obj = {**objects.namespace(name), "metadata": {**meta, **objects.namespace(name)["metadata"]}}
            obj["metadata"]["labels"] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": name}
        elif r.plural == "statefulsets":
            obj.pop("status", None)
            objects.default_statefulset(obj)
            objects.validate_statefulset(obj)
            meta["generation"] = 1
        else:
            raise errors.method_not_allowed()
        if dry_run:
            return JSONResponse(obj, status_code=201)
        return JSONResponse(self.store.create(r.plural, obj), status_code=201)

    def _replace(self, body: Any, target: Target, dry_run: bool) -> Response:
        obj = self._check_identity(body, target)
        if obj["metadata"].get("name") != target.name:
            raise errors.bad_request(
                f"the name of the object ({obj['metadata'].get('name')}) does not match the name on the URL "
                f"({target.name})"
            )
        return JSONResponse(self._update(obj, target, dry_run))

    def _update(self, obj: Obj, target: Target, dry_run: bool) -> Obj:
        """The write behind PUT and PATCH: optimistic concurrency, defaulting, validation, generation."""
        r = target.resource
        old = self._get(target)
        meta = obj.setdefault("metadata", {})
        rv = meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(r.group, r.plural, target.name or "")
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        for kept in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if kept in old["metadata"]:
                meta[kept] = old["metadata"][kept]
            else:
                meta.pop(kept, None)
        meta["name"], meta["namespace"] = old["metadata"]["name"], old["metadata"].get("namespace")
        if not r.namespaced:
            meta.pop("namespace", None)
        if target.subresource == "status":
            # the status subresource changes status only
            updated = {**old, "status": obj.get("status") or {}}
            updated["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        else:
            updated = obj
            updated["status"] = old.get("status") or {}
            if r.plural == "statefulsets":
                objects.default_statefulset(updated)
                objects.validate_statefulset(updated, old)
                if updated["spec"] != old["spec"]:
                    meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if updated == old or dry_run:
            return updated if dry_run else old
        return self.store.update(r.plural, copy.deepcopy(updated))

    async def _patch(self, request: Request, target: Target) -> Response:
        r = target.resource
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH):
            raise errors.unsupported_patch(content_type)
        body = await self._body(request)
        dry_run = request.query_params.get("dryRun") == "All"
        if content_type == APPLY_PATCH:
            # server-side apply, simplified: no managed fields or conflicts; the manifest merges strategically
            if not request.query_params.get("fieldManager"):
                raise errors.bad_request("PATCH /: fieldManager is required for apply requests")
            if self.store.get(r.plural, target.namespace or "", target.name or "") is None:
                return self._create(body, target, dry_run)
        current = self._get(target)
        patched = apply_patch(current, content_type, body)
        if not isinstance(patched.get("metadata"), dict):
            raise errors.bad_request("metadata must be an object")
        patched["kind"], patched["apiVersion"] = r.kind, r.api_version
        if patched["metadata"].get("name") != target.name:
            raise errors.bad_request("the name of the object does not match the name on the URL")
        return JSONResponse(self._update(patched, target, dry_run))

    async def _scale(self, request: Request, target: Target) -> Response:
        """The ``scale`` subresource (``kubectl scale``): an autoscaling/v1 Scale over spec.replicas."""
        sts = self._get(target)
        if request.method in ("PUT", "PATCH"):
            body = await self._body(request)
            if request.method == "PATCH":
                content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
                if content_type not in (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH):
                    raise errors.unsupported_patch(content_type)
                body = apply_patch(_scale_of(sts), content_type, body)
            if not isinstance(body, dict):
                raise errors.bad_request("the object provided is unrecognized (must be of type object)")
            replicas = (body.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise errors.invalid(
                    "autoscaling",
                    "Scale",
                    "statefulsets",
                    target.name or "",
                    [("spec.replicas", f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0")],
                )
            rv = (body.get("metadata") or {}).get("resourceVersion")
            sts["spec"]["replicas"] = replicas
            sts["metadata"]["resourceVersion"] = rv or sts["metadata"]["resourceVersion"]
            sts = self._update(sts, Target(target.resource, target.namespace, target.name, None, False), False)
        elif request.method != "GET":
            raise errors.method_not_allowed()
        return JSONResponse(_scale_of(sts))

    async def _delete(self, request: Request, target: Target) -> Response:
        r = target.resource
        obj = self._get(target)
        options: Obj = {}
        raw = await request.body()
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError as error:
                raise errors.bad_request(f"invalid DeleteOptions: {error}") from None
            options = parsed if isinstance(parsed, dict) else {}
        grace = options.get("gracePeriodSeconds")
        if request.query_params.get("gracePeriodSeconds", "").isdigit():
            grace = int(request.query_params["gracePeriodSeconds"])
        preconditions = options.get("preconditions") or {}
        if not isinstance(preconditions, dict):
            raise errors.bad_request("invalid DeleteOptions: preconditions must be an object")
        _check_preconditions(r.group, r.plural, obj, preconditions)
        if request.query_params.get("dryRun") == "All":
            return JSONResponse(obj)
        if r.plural == "pods":
            # graceful deletion: the pod stays (Terminating, with deletionTimestamp) until the kubelet is done
            return JSONResponse(self.emulator.kubelet.terminate(obj, grace))
        self.store.delete(r.plural, target.namespace or "", target.name or "")
        details: Obj = {"name": target.name, "kind": r.plural, "uid": obj["metadata"]["uid"]}
        if r.group:
            details["group"] = r.group
        return JSONResponse(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
        )


def _check_preconditions(group: str, plural: str, obj: Obj, preconditions: Obj) -> None:
    """DeleteOptions ``preconditions``: the object must still have that uid / resourceVersion, or 409 Conflict
    (the storage layer's "Precondition failed"), so a client deletes exactly the pod it looked at and not the
    pod that the StatefulSet controller made again under the same name."""
    meta = obj["metadata"]
    for field, key in (("UID", "uid"), ("ResourceVersion", "resourceVersion")):
        wanted = preconditions.get(key)
        if wanted is not None and wanted != meta.get(key):
            detail = f"{field} in precondition: {wanted}, {field} in object meta: {meta.get(key)}"
            raise errors.precondition_failed(group, plural, meta.get("namespace", ""), meta["name"], detail)


def _scale_of(sts: Obj) -> Obj:
    labels = (sts["spec"].get("selector") or {}).get("matchLabels") or {}
    meta = sts["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
        },
        "spec": {"replicas": sts["spec"].get("replicas", 1)},
        "status": {
            "replicas": (sts.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in labels.items()),
        },
    }


def wants_table(request: Request) -> bool:
    """kubectl get asks for ``application/json;as=Table;v=v1;g=meta.k8s.io`` (server-side printing)."""
    accept = request.headers.get("accept", "")
    return any("as=Table" in part and "g=meta.k8s.io" in part for part in accept.split(","))
