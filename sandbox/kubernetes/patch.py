"""The three PATCH flavours of the apiserver: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and
strategic merge patch (lists of containers, ports, env, ... merge by their key instead of being replaced)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from sandbox.kubernetes.errors import ApiError, bad_request

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# patchMergeKey of the list fields (by field name) in the core/apps types this server serves
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
# lists of scalars with patchStrategy merge
MERGE_SETS = {"finalizers"}


def apply_patch(obj: dict[str, Any], content_type: str, patch: Any) -> dict[str, Any]:
    """Apply a PATCH body of the given media type to a copy of ``obj``."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == JSON_PATCH:
        if not isinstance(patch, list):
            raise bad_request("json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp")
        try:
            result = jsonpatch.apply_patch(obj, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
            # the apiserver answers 422 when a patch operation cannot be applied
            raise ApiError(
                422, "Invalid", f"the server rejected our request due to an error in our request: {error}"
            ) from None
        except (TypeError, KeyError, ValueError) as error:
            raise bad_request(f"invalid JSON patch: {error}") from None
        if not isinstance(result, dict):
            raise bad_request("the JSON patch did not produce an object")
        return result
    if not isinstance(patch, dict):
        raise bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
    merged = merge_patch(obj, patch) if kind == MERGE_PATCH else strategic_merge(obj, patch)
    return dict(merged or {})


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge, ``null`` deletes, everything else (lists included) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge(target: Any, patch: Any, field: str = "") -> Any:
    """Strategic merge: like a merge patch, but lists named in ``MERGE_KEYS`` merge item by item on their key,
    and the directives ``$patch`` (replace/delete/merge), ``$retainKeys``, ``$setElementOrder/<list>`` and
    ``$deleteFromPrimitiveList/<list>`` are honoured."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    body = {k: v for k, v in patch.items() if k != "$patch"}
    if directive == "replace":
        return _strip_directives(body)
    if directive == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) and directive != "replace" else {}
    orders: dict[str, list[Any]] = {}
    for key, value in body.items():
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = [v for v in result[name] if v not in value]
            continue
        if key == "$retainKeys":
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, key)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value, key)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    if isinstance(body.get("$retainKeys"), list):
        keep = set(body["$retainKeys"])
        result = {k: v for k, v in result.items() if k in keep}
    for name, order in orders.items():
        result[name] = _reorder(result.get(name), order, MERGE_KEYS.get(name))
    return result


def _merge_list(current: Any, patch: list[Any], field: str) -> list[Any]:
    key = MERGE_KEYS.get(field)
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [_strip_directives(i) for i in patch if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    if field in MERGE_SETS and isinstance(current, list):
        return current + [v for v in patch if v not in current]
    if key is None or not isinstance(current, list):
        return [_strip_directives(i) for i in patch if not (isinstance(i, dict) and i.get("$patch") == "delete")]
    result = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {key}")
        index = next((i for i, old in enumerate(result) if isinstance(old, dict) and old.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
            continue
        if index is None:
            result.append(_strip_directives(item))
        else:
            result[index] = strategic_merge(result[index], item, field)
    return result


def _reorder(items: Any, order: list[Any], key: str | None) -> Any:
    if not isinstance(items, list):
        return items

    def position(item: Any) -> int:
        value = item.get(key) if key and isinstance(item, dict) else item
        return order.index(value) if value in order else len(order)

    return sorted(items, key=position)


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip_directives(v)
            for k, v in value.items()
            if not (k.startswith("$setElementOrder/") or k.startswith("$deleteFromPrimitiveList/"))
            and k not in ("$patch", "$retainKeys")
        }
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value
