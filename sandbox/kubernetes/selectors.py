"""Label selectors (equality and set-based) and field selectors, parsed as the apiserver parses them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sandbox.kubernetes.errors import ApiError, bad_request

Predicate = Callable[[dict[str, Any]], bool]

_SET = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|!=|=)\s*([A-Za-z0-9._-]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*$")
_FIELD_EQ = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|!=|=)\s*([^,=!]*?)\s*$")
"""A field selector term: values may hold what label values may not (``spec.containers{stack}``)."""


def _split(selector: str) -> list[str]:
    """Split on commas outside parentheses (``a in (x,y),b=c``)."""
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def _in(key: str, values: set[str], negate: bool) -> Callable[[dict[str, str]], bool]:
    return lambda labels: (labels.get(key) in values) != negate


def _equals(key: str, value: str, negate: bool) -> Callable[[dict[str, str]], bool]:
    return lambda labels: (labels.get(key) == value) != negate


def _exists(key: str, negate: bool) -> Callable[[dict[str, str]], bool]:
    return lambda labels: (key in labels) != negate


def label_selector(selector: str | None) -> Callable[[dict[str, str]], bool]:
    """A predicate over a label map. Raises ``ApiError`` 400 for a selector the apiserver would reject."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    for term in _split(selector or ""):
        if m := _SET.match(term):
            values = {v.strip() for v in m.group(3).split(",") if v.strip()}
            tests.append(_in(m.group(1), values, m.group(2) == "notin"))
        elif m := _EQ.match(term):
            tests.append(_equals(m.group(1), m.group(3), m.group(2) == "!="))
        elif m := _EXISTS.match(term):
            tests.append(_exists(m.group(2), m.group(1) == "!"))
        else:
            raise bad_request(f"unable to parse requirement: found '{term.strip()}', expected: in, notin, =, ==, !=")
    return lambda labels: all(test(labels) for test in tests)


def _involved(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda event: str((event.get("involvedObject") or {}).get(key) or "")


# the fields each kind can be selected by (the apiserver rejects others with 400)
_FIELDS: dict[str, dict[str, Callable[[dict[str, Any]], str]]] = {
    "Pod": {
        "spec.nodeName": lambda o: o.get("spec", {}).get("nodeName", ""),
        "spec.restartPolicy": lambda o: o.get("spec", {}).get("restartPolicy", ""),
        "spec.schedulerName": lambda o: o.get("spec", {}).get("schedulerName", ""),
        "spec.serviceAccountName": lambda o: o.get("spec", {}).get("serviceAccountName", ""),
        "status.phase": lambda o: o.get("status", {}).get("phase", ""),
        "status.podIP": lambda o: o.get("status", {}).get("podIP", ""),
    },
    "Namespace": {"status.phase": lambda o: o.get("status", {}).get("phase", "")},
    # the apiserver's event GetAttrs (kubectl describe selects by involvedObject name, namespace, kind and uid)
    "Event": {
        **{
            f"involvedObject.{key}": _involved(key)
            for key in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
        },
        "reason": lambda o: o.get("reason") or "",
        "reportingComponent": lambda o: o.get("reportingComponent") or "",
        "source": lambda o: (o.get("source") or {}).get("component") or o.get("reportingComponent") or "",
        "type": lambda o: o.get("type") or "",
    },
}


def _field_equals(getter: Callable[[dict[str, Any]], str], value: str, negate: bool) -> Predicate:
    return lambda obj: (getter(obj) == value) != negate


def field_selector(selector: str | None, kind: str) -> Predicate:
    """A predicate over an object for ``fieldSelector`` (``=``, ``==``, ``!=``; metadata.name/namespace for all)."""
    fields: dict[str, Callable[[dict[str, Any]], str]] = {
        "metadata.name": lambda o: o["metadata"].get("name", ""),
        "metadata.namespace": lambda o: o["metadata"].get("namespace", ""),
        **_FIELDS.get(kind, {}),
    }
    tests: list[Predicate] = []
    for term in _split(selector or ""):
        m = _FIELD_EQ.match(term)
        if m is None:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term.strip()}'")
        key, op, value = m.group(1), m.group(2), m.group(3)
        getter = fields.get(key)
        if getter is None:
            raise ApiError(400, "BadRequest", f'"{key}" is not a known field selector: only "{", ".join(fields)}"')
        tests.append(_field_equals(getter, value, op == "!="))
    return lambda obj: all(test(obj) for test in tests)
