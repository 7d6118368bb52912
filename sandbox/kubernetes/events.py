"""core/v1 Events, written as the cluster's components write them, kept in the store (so list, get, watch, field
selectors and ``kubectl describe``'s Events section work as for any other resource).

Two writers, as in a real cluster:
- client-go's ``tools/record`` recorder (the kubelet, the StatefulSet controller): ``source``, ``firstTimestamp``,
  ``lastTimestamp``, ``count``; an event identical to one already written (same source, object, field path, type,
  reason and message: the EventCorrelator's key) is not written again: its ``count`` goes up and its
  ``lastTimestamp`` moves on;
- the ``events.k8s.io/v1`` recorder (the scheduler): ``eventTime`` (microseconds), ``action``,
  ``reportingComponent``/``reportingInstance`` and an empty ``source``, no first/last timestamps or count; a
  repeat within six minutes becomes a ``series`` (``count``, ``lastObservedTime``).
The name is ``<object>.<hex nanoseconds>``. A real apiserver drops events an hour after their last update
(``--event-ttl``); here each namespace keeps its ``MAX_PER_NAMESPACE`` most recently updated events.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.clock import Clock, isoformat
from sandbox.kubernetes.node import CONTROL_PLANE, NODE
from sandbox.kubernetes.store import Change, Store

Obj = dict[str, Any]
NORMAL = "Normal"
WARNING = "Warning"
MAX_PER_NAMESPACE = 500
SERIES_WINDOW = timedelta(minutes=6)
"""events.k8s.io: a repeat of an event last seen longer ago than this starts a new event."""


@dataclass(frozen=True)
class Reporter:
    """Who writes an event: the component, its instance (a node or host), and which API it writes through."""

    component: str
    instance: str = ""
    events_api: bool = False
    """True: writes through events.k8s.io/v1 (eventTime, action, series), as the scheduler does."""


KUBELET = Reporter("kubelet", NODE)
STATEFULSET_CONTROLLER = Reporter("statefulset-controller")
SCHEDULER = Reporter("default-scheduler", f"default-scheduler-{CONTROL_PLANE}", events_api=True)


def micro_time(moment: datetime) -> str:
    """metav1.MicroTime: RFC 3339 with exactly six fractional digits."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def reference(obj: Obj, field_path: str = "") -> Obj:
    """An ObjectReference to ``obj`` (as client-go's ``reference.GetReference`` makes it)."""
    meta = obj["metadata"]
    ref: Obj = {
        "kind": obj.get("kind", ""),
        "namespace": meta.get("namespace", ""),
        "name": meta["name"],
        "uid": meta.get("uid", ""),
        "apiVersion": obj.get("apiVersion", ""),
        "resourceVersion": meta.get("resourceVersion", ""),
    }
    if field_path:
        ref["fieldPath"] = field_path
    return ref


class EventRecorder:
    """Writes events into the store; aggregates repeats; keeps each namespace's events bounded."""

    def __init__(self, store: Store, clock: Clock, per_namespace: int = MAX_PER_NAMESPACE) -> None:
        self.store = store
        self.clock = clock
        self.per_namespace = max(1, per_namespace)
        self._by_key: dict[tuple[Any, ...], str] = {}
        self._order: dict[str, OrderedDict[str, tuple[Any, ...]]] = {}
        """Per namespace: event name -> its aggregation key, least recently written first."""
        store.on_change(self._forget_deleted)

    def record(
        self,
        reporter: Reporter,
        regarding: Obj,
        kind: str,
        reason: str,
        message: str,
        *,
        field_path: str = "",
        action: str = "",
    ) -> Obj:
        """Write (or aggregate) one event about ``regarding``; ``kind`` is Normal or Warning."""
        ref = reference(regarding, field_path)
        namespace = ref["namespace"] or "default"
        key = (reporter, namespace, ref["kind"], ref["name"], ref["uid"], field_path, kind, reason, message, action)
        now = self.clock.now()
        name = self._by_key.get(key)
        existing = self.store.get("events", namespace, name) if name else None
        if existing is not None and self._repeats(reporter, existing, now):
            event = self._repeat(reporter, existing, now)
        else:
            event = self.store.create("events", self._new(reporter, namespace, ref, kind, reason, message, action, now))
        order = self._order.setdefault(namespace, OrderedDict())
        order[event["metadata"]["name"]] = key
        order.move_to_end(event["metadata"]["name"])
        self._by_key[key] = event["metadata"]["name"]
        while len(order) > self.per_namespace:
            oldest, _ = next(iter(order.items()))
            self.store.delete("events", namespace, oldest)  # _forget_deleted drops it from the maps
            order.pop(oldest, None)
        return event

    @staticmethod
    def _repeats(reporter: Reporter, event: Obj, now: datetime) -> bool:
        if not reporter.events_api:
            return True
        last = (event.get("series") or {}).get("lastObservedTime") or event.get("eventTime")
        return bool(last) and now - datetime.fromisoformat(str(last).replace("Z", "+00:00")) <= SERIES_WINDOW

    def _repeat(self, reporter: Reporter, event: Obj, now: datetime) -> Obj:
        if reporter.events_api:
            count = int((event.get("series") or {}).get("count") or 1) + 1
            event["series"] = {"count": count, "lastObservedTime": micro_time(now)}
        else:
            event["count"] = int(event.get("count") or 1) + 1
            event["lastTimestamp"] = isoformat(now)
        return self.store.update("events", event)

    def _new(
        self,
        reporter: Reporter,
        namespace: str,
        ref: Obj,
        kind: str,
        reason: str,
        message: str,
        action: str,
        now: datetime,
    ) -> Obj:
        event: Obj = {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {"name": self._name(namespace, ref["name"], now), "namespace": namespace},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": kind,
            "reportingComponent": reporter.component,
            "reportingInstance": reporter.instance,
        }
        if reporter.events_api:
            event.update(
                {
                    "source": {},
                    "firstTimestamp": None,
                    "lastTimestamp": None,
                    "eventTime": micro_time(now),
                    "action": action,
                }
            )
        else:
            source = {"component": reporter.component}
            if reporter.instance:
                source["host"] = reporter.instance
            stamp = isoformat(now)
            event.update(
                {"source": source, "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1, "eventTime": None}
            )
        return event

    def _name(self, namespace: str, base: str, now: datetime) -> str:
        nanos = int(now.timestamp() * 1_000_000) * 1000
        while self.store.get("events", namespace, f"{base}.{nanos:x}") is not None:
            nanos += 1
        return f"{base}.{nanos:x}"

    def _forget_deleted(self, change: Change) -> None:
        if change.resource != "events" or change.type != "DELETED":
            return
        namespace, name = change.namespace, change.obj["metadata"]["name"]
        key = self._order.get(namespace, OrderedDict()).pop(name, None)
        if key is not None and self._by_key.get(key) == name:
            del self._by_key[key]
