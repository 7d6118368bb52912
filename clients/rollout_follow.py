"""Following a roll-out: two watch threads (the StatefulSet, its pods) put typed messages (``Listed``, ``Changed``,
``WatchFailed``) on one queue; ``RolloutFollower`` turns them into ``rollout_state`` and progress events, with a
deadline, a stuck-pod grace and a digest check. The threads use ``KubernetesApi``'s public ``list`` and ``watch``.

List+watch from a resourceVersion as kr8s and client-go do: a stream that ends is resumed from the last
resourceVersion, and ``410 Gone`` (an HTTP 410, or an ERROR event with code 410) means list again (FACTS.md
"Watches"). Following starts from the snapshot's resourceVersions, so what happened since the snapshot is replayed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from clients.errors import ApiError, DeadlineExceeded, ImageMismatch, NotFound, RolloutStuck, WatchExpired
from clients.kubernetes_api import Collection, KubernetesApi, ObjectList, Resource, WatchStream
from clients.pod_diagnosis import diagnose_pod
from clients.registry import image_digest
from clients.rollout_events import (
    PodCreated,
    PodEvent,
    PodGone,
    PodReady,
    PodScheduled,
    PodStarted,
    PodStuck,
    PodTerminating,
    PodTiming,
    RolloutDone,
    RolloutEvent,
    RolloutProgress,
    RolloutReport,
    RolloutSnapshot,
    RolloutStarted,
)
from clients.rollout_state import PodState, RolloutState, pod_state, rollout_state
from clients.waiting import Deadline

logger = logging.getLogger(__name__)

FATAL_STATUSES = frozenset({400, 401, 403, 404, 422})
"""Answers that another try will not change: the follower stops with them."""


# ---------------------------------------------------------------- what the watch threads tell the follower


@dataclass(frozen=True)
class Listed:
    """A fresh list of the collection: every object there is now (those not in it are gone)."""

    resource: Resource
    items: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Changed:
    """One watch event: an object ``ADDED``, ``MODIFIED`` or ``DELETED``."""

    resource: Resource
    type: str
    object: dict[str, Any]


@dataclass(frozen=True)
class WatchFailed:
    """An answer that retrying will not change (401, 403, 404, ...): the follower raises it."""

    resource: Resource
    error: ApiError


Message = Listed | Changed | WatchFailed


class _Watcher:
    """In a thread: lists a collection, then watches it from the list's resourceVersion, putting ``Listed`` and
    ``Changed`` messages on the follower's queue; a stream that ends is resumed from the last resourceVersion, and
    ``WatchExpired`` (410 Gone) means list again. ``close()`` sets ``stop`` and ends the stream under way.
    """

    def __init__(
        self, api: KubernetesApi, collection: Collection, sink: queue.Queue[Message], initial: ObjectList | None
    ) -> None:
        self.api = api
        self.collection = collection
        self.sink = sink
        self.initial = initial
        self.stop = threading.Event()
        self.relists = 0
        self.resource_version: str | None = None
        """The last resourceVersion seen (None: list first); a watch resumes from here."""
        self._stream: WatchStream | None = None
        self._thread = threading.Thread(target=self._run, name=f"rollout-watch-{collection.resource}", daemon=True)

    def start(self) -> None:
        if self._thread.ident is None:
            self._thread.start()

    def close(self) -> None:
        self.stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        resource = self.collection.resource
        if self.initial is not None and self.initial.resource_version:
            self.resource_version = self.initial.resource_version
            self.sink.put(Listed(resource, self.initial.items))
        backoff = 0.2
        while not self.stop.is_set():
            try:
                if self.resource_version is None:
                    listed = self.api.list(self.collection)
                    self.resource_version = listed.resource_version
                    self.sink.put(Listed(resource, listed.items))
                self._watch_from(self.resource_version)
                backoff = 0.2
            except WatchExpired:
                # The resourceVersion is too old (compacted): list again and watch from the new one.
                logger.info("Kubernetes watch %s: 410 Gone, listing again", self.collection.describe())
                self.relists += 1
                self.resource_version = None
            except ApiError as error:
                if error.status in FATAL_STATUSES:
                    self.sink.put(WatchFailed(resource, error))
                    return
                # a dropped stream or a 5xx: resume from the last resourceVersion after a backoff
                logger.info("%s; retrying in %.1fs", error, backoff)
                self.stop.wait(backoff)
                backoff = min(5.0, backoff * 2)

    def _watch_from(self, resource_version: str) -> None:
        """Watch until the server ends the stream (or ``close()``), keeping the last resourceVersion seen."""
        stream = self._stream = self.api.watch(self.collection, resource_version)
        if self.stop.is_set():
            stream.close()  # closed before the stream was known: do not start it
        # Errors surface while iterating (the request goes out on the first event), so the caller's try wraps
        # this loop (FACTS.md "Watches").
        for event in stream:
            self.resource_version = event.resource_version or self.resource_version
            if event.type in ("ADDED", "MODIFIED", "DELETED"):
                self.sink.put(Changed(self.collection.resource, event.type, event.object))
        self._stream = None


class RolloutFollower:
    """Iterate for progress events; ends after ``RolloutDone``, or early without it when ``stop`` is set, or raises.

    Raises (while iterating):
        DeadlineExceeded: not done within the timeout (names namespace/statefulset and the state).
        RolloutStuck: a pod stayed stuck longer than the grace period (names the pod and the reason; ends with
            its last log lines and recent events).
        ImageMismatch: an updated pod runs another digest than the expected one.
        ApiError / NotFound: the API refused the list or watch (permissions, no such StatefulSet).
    """

    def __init__(
        self,
        api: KubernetesApi,
        snapshot: RolloutSnapshot,
        *,
        timeout: float,
        stuck_grace: float,
        expected_digest: str | None,
        container: str | None,
        require_change: bool,
        stop: threading.Event | None = None,
    ) -> None:
        self.api = api
        self.stop = stop
        self.snapshot = snapshot
        self.timeout = timeout
        self.stuck_grace = stuck_grace
        self.expected_digest = expected_digest
        self.container = container
        self.require_change = require_change
        self.state: RolloutState | None = None
        self._queue: queue.Queue[Message] = queue.Queue()
        self._statefulset: dict[str, Any] | None = None
        self._pods: dict[str, dict[str, Any]] = {}
        self._pods_synced = False
        self._emitted: dict[str, set[str]] = {}
        self._stuck_since: dict[str, float] = {}
        self._timings: dict[str, dict[str, Any]] = {}
        self._started = False
        self._message = ""
        namespace = snapshot.namespace
        statefulsets = Collection(Resource.STATEFULSETS, namespace, field_selector=f"metadata.name={snapshot.name}")
        pods = Collection(Resource.PODS, namespace, label_selector=snapshot.selector)
        # Watching starts from the snapshot's lists, so that nothing after the snapshot is missed.
        self._watchers = [
            _Watcher(
                api,
                statefulsets,
                self._queue,
                ObjectList((snapshot.statefulset_object,), snapshot.resource_version)
                if snapshot.statefulset_object
                else None,
            ),
            _Watcher(
                api,
                pods,
                self._queue,
                ObjectList(snapshot.pod_objects, snapshot.pods_resource_version)
                if snapshot.pods_resource_version
                else None,
            ),
        ]

    @property
    def relists(self) -> int:
        """How many times a 410 Gone made a watch list again."""
        return sum(watcher.relists for watcher in self._watchers)

    def start(self) -> RolloutFollower:
        """Start watching (``__enter__`` and iteration do it too); events from the snapshot on are kept."""
        for watcher in self._watchers:
            watcher.start()
        return self

    def __enter__(self) -> RolloutFollower:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the watch threads (waiting a little for them to end)."""
        for watcher in self._watchers:
            watcher.close()
        for watcher in self._watchers:
            watcher.join(timeout=2.0)

    # ------------------------------------------------------------ the loop

    def __iter__(self) -> Iterator[RolloutEvent]:
        deadline = Deadline(self.timeout)
        self.start()
        try:
            while True:
                if self.stop is not None and self.stop.is_set():
                    return  # told to stop (another stage failed): the report so far stays readable
                if deadline.expired:
                    raise self._deadline_error()
                try:
                    message: Message | None = self._queue.get(timeout=min(0.25, max(0.01, deadline.remaining())))
                except queue.Empty:
                    message = None
                while message is not None:
                    yield from self._apply(message)
                    try:
                        message = self._queue.get_nowait()
                    except queue.Empty:
                        message = None
                if self._statefulset is None or not self._pods_synced:
                    continue
                previous = self.state
                self.state = rollout_state(self._statefulset, self._pods.values(), previous)
                yield from self._events(self.state)
                if self._is_done(self.state):
                    self._check_digests(self.state.updated_pods)
                    yield RolloutDone(self.snapshot.namespace, self.snapshot.name, self.report)
                    return
        finally:
            self.close()

    def _apply(self, message: Message) -> Iterator[RolloutEvent]:
        """Take in one list or watch event; pod events are derived per object so that a short state (a pod
        terminating for 10 ms) is never lost by coalescing."""
        if isinstance(message, WatchFailed):
            raise message.error
        if message.resource is Resource.STATEFULSETS:
            yield from self._apply_statefulset(message)
            return
        if isinstance(message, Listed):
            fresh = {str(p["metadata"].get("uid")): p for p in message.items}
            for uid in set(self._pods) - set(fresh):
                yield self._gone(self._pods[uid])
            self._pods = fresh
            self._pods_synced = True
            for pod in fresh.values():
                yield from self._pod_events(pod)
            return
        uid = str(message.object["metadata"].get("uid"))
        yield from self._pod_events(message.object)
        if message.type == "DELETED":
            self._pods.pop(uid, None)
            yield self._gone(message.object)
        else:
            self._pods[uid] = message.object

    def _apply_statefulset(self, message: Listed | Changed) -> Iterator[RolloutEvent]:
        if isinstance(message, Listed):
            statefulset = next(iter(message.items), None)
        else:
            statefulset = None if message.type == "DELETED" else message.object
        if statefulset is None:
            raise NotFound(
                f"Kubernetes {self.api.server}: statefulset {self.snapshot.namespace}/{self.snapshot.name} is gone",
                status=404,
                url=self.api.server,
            )
        self._statefulset = statefulset
        yield from self._statefulset_events(statefulset)

    def _gone(self, pod: Mapping[str, Any]) -> PodGone:
        metadata = pod.get("metadata") or {}
        uid = str(metadata.get("uid"))
        self._stuck_since.pop(uid, None)
        return PodGone(
            self.snapshot.namespace,
            self.snapshot.name,
            pod=str(metadata.get("name")),
            uid=uid,
            revision=(metadata.get("labels") or {}).get("controller-revision-hash"),
            at=None,
        )

    def _once(self, uid: str, what: str) -> bool:
        seen = self._emitted.setdefault(uid, set())
        if what in seen:
            return False
        seen.add(what)
        return True

    def _statefulset_events(self, statefulset: Mapping[str, Any]) -> Iterator[RolloutEvent]:
        status = statefulset.get("status") or {}
        update_revision = status.get("updateRevision")
        observed = int(status.get("observedGeneration") or 0)
        if self._started or not self._change_seen(update_revision, observed):
            return
        self._started = True
        if update_revision != self.snapshot.update_revision:
            generation = int((statefulset.get("metadata") or {}).get("generation") or 0)
            yield RolloutStarted(
                self.snapshot.namespace, self.snapshot.name, self.snapshot.update_revision, update_revision, generation
            )

    def _pod_events(self, raw: Mapping[str, Any]) -> Iterator[RolloutEvent]:
        ns, name = self.snapshot.namespace, self.snapshot.name
        update_revision = ((self._statefulset or {}).get("status") or {}).get("updateRevision")
        pod = pod_state(raw, update_revision)
        is_new = pod.uid not in self.snapshot.pod_uids
        if pod.terminating and self._once(pod.uid, "terminating"):
            if not is_new:
                self._timing(pod.name, pod.ordinal)["terminating_at"] = pod.terminating_at
            yield PodTerminating(ns, name, pod.name, pod.uid, pod.revision, pod.terminating_at)
        if not is_new:
            return
        timing = self._timing(pod.name, pod.ordinal)
        timing["new_revision"] = pod.revision
        if self._once(pod.uid, "created"):
            timing["created_at"] = pod.created_at
            yield PodCreated(ns, name, pod.name, pod.uid, pod.revision, pod.created_at)
        for what, at, cls in (
            ("scheduled", pod.scheduled_at, PodScheduled),
            ("started", pod.started_at, PodStarted),
            ("ready", pod.ready_at, PodReady),
        ):
            if at is not None and self._once(pod.uid, what):
                timing[f"{what}_at"] = at
                if what == "ready":
                    timing["image_id"] = self._image_id(pod)
                    if pod.updated:
                        self._check_digests((pod,))
                event: PodEvent = cls(ns, name, pod.name, pod.uid, pod.revision, at)
                yield event

    def _events(self, state: RolloutState) -> Iterator[RolloutEvent]:
        """kubectl's message, and stuck pods (with the grace period) from the whole state."""
        ns, name = self.snapshot.namespace, self.snapshot.name
        if state.message != self._message:
            self._message = state.message
            yield RolloutProgress(ns, name, state.message)
        now = time.monotonic()
        for pod in state.pods:
            if pod.stuck_reason is None:
                if pod.ready:
                    self._stuck_since.pop(pod.uid, None)
                continue
            # A crash-looping pod flips between CrashLoopBackOff and a short run: it stays "stuck" until Ready.
            since = self._stuck_since.setdefault(pod.uid, now)
            if self._once(pod.uid, f"stuck:{pod.stuck_reason}"):
                yield PodStuck(
                    ns, name, pod.name, pod.uid, pod.revision, None, pod.stuck_reason, pod.stuck_message or ""
                )
            if now - since > self.stuck_grace:
                seen = sorted(
                    what.removeprefix("stuck:") for what in self._emitted[pod.uid] if what.startswith("stuck:")
                )
                raise RolloutStuck(
                    f"pod {ns}/{pod.name} of statefulset {ns}/{name} stuck for {now - since:.0f} s "
                    f"(grace {self.stuck_grace:.0f} s): {pod.stuck_reason}: {pod.stuck_message} "
                    f"(reasons seen: {', '.join(seen)}) - {self.api.server}/api/v1/namespaces/{ns}/pods/{pod.name}",
                    pod=pod.name,
                    reason=str(pod.stuck_reason),
                    diagnosis=diagnose_pod(self.api, self._pods.get(pod.uid) or {}, container=self.container),
                )

    def _change_seen(self, update_revision: str | None, observed_generation: int) -> bool:
        """The change is in: a new updateRevision, or the controller observed a newer generation."""
        return update_revision != self.snapshot.update_revision or observed_generation > self.snapshot.generation

    def _is_done(self, state: RolloutState) -> bool:
        if not state.done:
            return False
        if not self._pods_agree(state):
            return False
        return self._change_seen(state.update_revision, state.observed_generation) or not self.require_change

    @staticmethod
    def _pods_agree(state: RolloutState) -> bool:
        """The pod watch has caught up with the StatefulSet's status: the two streams arrive independently, so
        the status can say "ready" before the pod's own Ready event (which carries the timings) is in."""
        live = [pod for pod in state.pods if not pod.terminating]
        ready = sum(1 for pod in live if pod.ready)
        updated = sum(1 for pod in live if pod.updated)
        return ready >= state.ready_replicas and updated >= state.updated_replicas

    def _timing(self, name: str, ordinal: int | None) -> dict[str, Any]:
        if name not in self._timings:
            old = self.snapshot.pod(name)
            self._timings[name] = {"name": name, "ordinal": ordinal, "old_revision": old.revision if old else None}
        return self._timings[name]

    def _image_id(self, pod: PodState) -> str | None:
        if self.container is not None:
            return pod.image_ids.get(self.container)
        return next(iter(pod.image_ids.values()), None)

    def _check_digests(self, pods: tuple[PodState, ...]) -> None:
        digest = self.expected_digest
        if not digest:
            return
        ns = self.snapshot.namespace
        for pod in pods:
            image_ids = pod.image_ids
            if self.container is not None:
                image_ids = {self.container: image_ids.get(self.container, "")}
            if not image_ids:
                image_ids = {"(no container status)": ""}
            for container, image_id in image_ids.items():
                if image_digest(image_id) != digest:
                    raise ImageMismatch(
                        f"pod {ns}/{pod.name} (statefulset {ns}/{self.snapshot.name}) container {container} runs "
                        f"{image_id or 'no image yet'}, expected digest {digest}"
                    )

    # ------------------------------------------------------------ results

    @property
    def report(self) -> RolloutReport:
        """The timings so far (complete once ``RolloutDone`` was yielded)."""
        state = self.state
        pods = sorted(
            (PodTiming(**timing) for timing in self._timings.values()),
            key=lambda t: (-(t.ordinal if t.ordinal is not None else -1), t.name),
        )
        return RolloutReport(
            namespace=self.snapshot.namespace,
            statefulset=self.snapshot.name,
            previous_revision=self.snapshot.update_revision,
            new_revision=state.update_revision if state and self._started else None,
            done=bool(state and self._is_done(state)),
            message=state.message if state else "",
            pods=tuple(pods),
        )

    def _deadline_error(self) -> DeadlineExceeded:
        ns, name = self.snapshot.namespace, self.snapshot.name
        state = self.state.describe() if self.state else "the StatefulSet and its pods were never read"
        waiting = "" if self._started else " (the change itself was never seen)"
        return DeadlineExceeded(
            f"roll-out of statefulset {ns}/{name} on {self.api.server} not done within {self.timeout:.0f} s"
            f"{waiting}: {state}"
        )
