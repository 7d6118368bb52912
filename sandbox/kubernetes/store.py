"""The object store: one global resourceVersion counter (like etcd's revision), objects by resource, and, per
resource, a bounded history of watch events, so that a watch can resume from a resourceVersion, or get 410 Gone.
The history is kept per resource as the apiserver keeps a watch cache per resource: a flood of Events does not
push the pods' changes out."""

from __future__ import annotations

import asyncio
import builtins
import copy
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.clock import Clock, isoformat

Obj = dict[str, Any]


@dataclass(frozen=True)
class Change:
    """One write: ``type`` ADDED/MODIFIED/DELETED, the object after it (before it for DELETED), and the object
    before it (for watches with selectors, which turn "no longer matches" into DELETED as the apiserver does)."""

    type: str
    resource: str
    rv: int
    obj: Obj
    old: Obj | None

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace", ""))


class Watcher:
    """A queue of changes to one resource; ``None`` in the queue ends the watch."""

    def __init__(self, resource: str) -> None:
        self.resource = resource
        self.queue: asyncio.Queue[Change | None] = asyncio.Queue()


class Store:
    """All objects of the emulated cluster. Lives on the sandbox's loop (no locking)."""

    def __init__(self, clock: Clock, history_size: int) -> None:
        self.clock = clock
        self.rv = 1
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._history: dict[str, deque[Change]] = {}
        self._history_size = max(1, history_size)
        self._compacted: dict[str, int] = {}
        """Per resource: watches from a resourceVersion below this get 410 Gone (the history before it is gone)."""
        self._compacted_all = 0
        self._watchers: set[Watcher] = set()
        self._listeners: list[Callable[[Change], None]] = []

    # ------------------------------------------------------------ reads

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        obj = self._objects.get(resource, {}).get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, resource: str, namespace: str | None = None) -> list[Obj]:
        items = self._objects.get(resource, {})
        keys = sorted(k for k in items if namespace is None or k[0] == namespace)
        return [copy.deepcopy(items[k]) for k in keys]

    # ------------------------------------------------------------ writes

    def create(self, resource: str, obj: Obj) -> Obj:
        """Store a new object: sets uid, creationTimestamp (unless given) and resourceVersion."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", isoformat(self.clock.now()))
        return self._write("ADDED", resource, obj, None)

    def update(self, resource: str, obj: Obj) -> Obj:
        meta = obj["metadata"]
        old = self._objects[resource][(meta.get("namespace", ""), meta["name"])]
        return self._write("MODIFIED", resource, obj, old)

    def delete(self, resource: str, namespace: str, name: str) -> Obj | None:
        old = self._objects.get(resource, {}).get((namespace, name))
        if old is None:
            return None
        gone = copy.deepcopy(old)
        return self._write("DELETED", resource, gone, old)

    def _write(self, kind: str, resource: str, obj: Obj, old: Obj | None) -> Obj:
        self.rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self.rv)
        key = (meta.get("namespace", ""), meta["name"])
        bucket = self._objects.setdefault(resource, {})
        if kind == "DELETED":
            bucket.pop(key, None)
        else:
            bucket[key] = obj
        change = Change(kind, resource, self.rv, copy.deepcopy(obj), copy.deepcopy(old) if old else None)
        history = self._history.setdefault(resource, deque())
        history.append(change)
        while len(history) > self._history_size:
            self._compacted[resource] = history.popleft().rv
        for watcher in list(self._watchers):
            if watcher.resource == resource:
                watcher.queue.put_nowait(change)
        for listener in self._listeners:
            listener(change)
        return copy.deepcopy(obj)

    # ------------------------------------------------------------ watches

    def on_change(self, listener: Callable[[Change], None]) -> None:
        """Call ``listener`` after every write (the controller uses it to wake up)."""
        self._listeners.append(listener)

    def compacted(self, resource: str) -> int:
        """Watches of ``resource`` from a resourceVersion below this get 410 Gone."""
        return max(self._compacted.get(resource, 0), self._compacted_all)

    def history_since(self, resource: str, rv: int) -> builtins.list[Change] | None:
        """The changes to ``resource`` after ``rv``, or None when ``rv`` is older than the kept history."""
        if rv < self.compacted(resource):
            return None
        return [c for c in self._history.get(resource, ()) if c.rv > rv]

    def compact(self) -> None:
        """Forget the history (as etcd compaction does): watches from any older resourceVersion get 410.

        The revision moves on by one, as it would in a real cluster where leases and events write all the time,
        so that a watch from the last resourceVersion a client saw is too old, while a fresh list's is not."""
        self.rv += 1
        self._history.clear()
        self._compacted_all = self.rv

    def watch(self, resource: str) -> Watcher:
        watcher = Watcher(resource)
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def close_watches(self) -> None:
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)
        self._watchers.clear()
