"""Following a roll-out: two watch threads (the StatefulSet, its pods) feed one queue; ``RolloutFollower`` turns
what they see into ``rollout_state`` and progress events, with a deadline, a stuck-pod grace and a digest check.

List+watch from a resourceVersion as kr8s and client-go do: a stream that ends is resumed from the last
resourceVersion, and ``410 Gone`` (an HTTP 410, or an ERROR event with code 410) means list again (FACTS.md
"Watches"). Following starts from the snapshot's resourceVersions, so what happened since the snapshot is replayed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from clients.errors import ApiError, DeadlineExceeded, ImageMismatch, NotFound, RolloutStuck
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

if TYPE_CHECKING:
    from clients.rollout import RolloutClient

logger = logging.getLogger(__name__)

FATAL_STATUSES = frozenset({400, 401, 403, 404, 422})


def api_error(error: BaseException, what: str, server: str) -> ApiError:
    """An ``ApiException`` or transport error as our error, naming the object and the server (never headers)."""
    if isinstance(error, ApiException):
        detail: str | None = None
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            detail = json.loads(error.body or "").get("message")
        status = int(error.status) if error.status else None
        message = f"Kubernetes {server}: {what} answered {status}: {detail or error.reason}"
        cls = NotFound if status == 404 else ApiError
        return cls(message, status=status, url=server, detail=detail)
    return ApiError(f"Kubernetes {server}: {what} got no answer ({type(error).__name__})", url=server)


class _Source(threading.Thread):
    """Lists, then watches one kind of object from the list's resourceVersion, feeding ``sink``.

    Puts ``("sync", kind, items)`` after each list, ``("event", kind, type, object)`` for each watch event and
    ``("error", kind, ApiError)`` for an answer that retrying will not change (401/403/404...).
    """

    def __init__(
        self,
        kind: str,
        lister: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        sink: queue.Queue[tuple[Any, ...]],
        client: RolloutClient,
        initial: tuple[list[dict[str, Any]], str] | None = None,
    ) -> None:
        super().__init__(name=f"rollout-watch-{kind}", daemon=True)
        self.initial = initial
        self.kind = kind
        self.lister = lister
        self.args = args
        self.kwargs = kwargs
        self.sink = sink
        self.client = client
        self.stopping = threading.Event()
        self.relists = 0
        self._watch: k8s_watch.Watch | None = None

    def stop(self) -> None:
        self.stopping.set()
        watch = self._watch
        if watch is not None:
            watch.stop()  # type: ignore[no-untyped-call]
            response = getattr(watch, "_resp", None)
            with contextlib.suppress(Exception):
                if response is not None and hasattr(response, "shutdown"):
                    response.shutdown()  # urllib3 >= 2.3: unblocks a read waiting on a quiet watch

    def run(self) -> None:
        resource_version: str | None = None
        if self.initial is not None and self.initial[1]:
            items, resource_version = self.initial
            self.sink.put(("sync", self.kind, items))
        backoff = 0.2
        what = f"watch {self.kind}"
        while not self.stopping.is_set():
            try:
                if resource_version is None:
                    body = self.client._raw(self.lister, f"LIST {self.kind}", *self.args, **self.kwargs)
                    resource_version = str((body.get("metadata") or {}).get("resourceVersion") or "")
                    self.sink.put(("sync", self.kind, list(body.get("items") or [])))
                resource_version = self._watch_from(resource_version)
                backoff = 0.2
            except ApiException as error:
                if error.status == 410:
                    # The resourceVersion is too old (compacted): list again and watch from the new one.
                    logger.info("Kubernetes %s: 410 Gone, listing again", what)
                    self.relists += 1
                    resource_version = None
                    continue
                self._failed(error, what, backoff)
                backoff = min(5.0, backoff * 2)
            except ApiError as error:
                if error.status in FATAL_STATUSES:
                    self.sink.put(("error", self.kind, error))
                    return
                logger.info("Kubernetes %s failed (%s); retrying in %.1fs", what, error, backoff)
                self.stopping.wait(backoff)
                backoff = min(5.0, backoff * 2)
            except Exception as error:  # a dropped stream (urllib3 ProtocolError, ...): resume from resourceVersion
                if self.stopping.is_set():
                    return
                logger.info("Kubernetes %s interrupted (%s); resuming", what, type(error).__name__)
                self.stopping.wait(backoff)
                backoff = min(5.0, backoff * 2)

    def _failed(self, error: ApiException, what: str, backoff: float) -> None:
        if error.status in FATAL_STATUSES:
            self.sink.put(("error", self.kind, api_error(error, what, self.client.server)))
            self.stopping.set()
            return
        logger.info("Kubernetes %s answered %s; retrying in %.1fs", what, error.status, backoff)
        self.stopping.wait(backoff)

    def _watch_from(self, resource_version: str) -> str:
        """Watch until the server ends the stream; returns the last resourceVersion seen."""
        lister = self.lister

        def raw(*args: Any, **kwargs: Any) -> Any:  # no return annotation: the Watch yields plain dicts
            return lister(*args, **kwargs)

        watch = k8s_watch.Watch()  # type: ignore[no-untyped-call]
        self._watch = watch
        seconds = self.client.watch_seconds
        stream = watch.stream(  # type: ignore[no-untyped-call]
            raw,
            *self.args,
            resource_version=resource_version,
            timeout_seconds=seconds,
            allow_watch_bookmarks=True,
            _request_timeout=(min(5.0, self.client.request_timeout), seconds + 10.0),
            **self.kwargs,
        )
        # Errors surface while iterating (the generator sends the request on the first next()), so the
        # caller's try wraps this loop, not the creation of the stream (FACTS.md "Watches").
        for event in stream:
            if self.stopping.is_set():
                break
            kind = event.get("type")
            obj = event.get("raw_object") or event.get("object") or {}
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if version:
                resource_version = str(version)
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self.sink.put(("event", self.kind, kind, obj))
        self._watch = None
        return resource_version


class RolloutFollower:
    """Iterate for progress events; ends after ``RolloutDone``, or early without it when ``stop`` is set, or raises.

    Raises (while iterating):
        DeadlineExceeded: not done within the timeout (names namespace/statefulset and the state).
        RolloutStuck: a pod stayed stuck longer than the grace period (names the pod and the reason).
        ImageMismatch: an updated pod runs another digest than the expected one.
        ApiError / NotFound: the API refused the list or watch (permissions, no such StatefulSet).
    """

    def __init__(
        self,
        client: RolloutClient,
        snapshot: RolloutSnapshot,
        *,
        timeout: float,
        stuck_grace: float,
        expected_digest: str | None,
        container: str | None,
        require_change: bool,
        stop: threading.Event | None = None,
    ) -> None:
        self.client = client
        self.stop = stop
        self.snapshot = snapshot
        self.timeout = timeout
        self.stuck_grace = stuck_grace
        self.expected_digest = expected_digest
        self.container = container
        self.require_change = require_change
        self.state: RolloutState | None = None
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._statefulset: dict[str, Any] | None = None
        self._pods: dict[str, dict[str, Any]] = {}
        self._pods_synced = False
        self._emitted: dict[str, set[str]] = {}
        self._stuck_since: dict[str, float] = {}
        self._timings: dict[str, dict[str, Any]] = {}
        self._started = False
        self._message = ""
        namespace, name = snapshot.namespace, snapshot.name
        self._sources = [
            _Source(
                "statefulset",
                client.apps.list_namespaced_stateful_set,
                (namespace,),
                {"field_selector": f"metadata.name={name}"},
                self._queue,
                client,
                ([snapshot.statefulset_object], str(snapshot.resource_version))
                if snapshot.statefulset_object
                else None,
            ),
            _Source(
                "pods",
                client.core.list_namespaced_pod,
                (namespace,),
                {"label_selector": snapshot.selector},
                self._queue,
                client,
                (list(snapshot.pod_objects), snapshot.pods_resource_version)
                if snapshot.pods_resource_version
                else None,
            ),
        ]

    @property
    def relists(self) -> int:
        """How many times a 410 Gone made a watch list again."""
        return sum(source.relists for source in self._sources)

    def start(self) -> RolloutFollower:
        """Start watching (``__enter__`` and iteration do it too); events from the snapshot on are kept."""
        for source in self._sources:
            if not source.is_alive() and source.ident is None:
                source.start()
        return self

    def __enter__(self) -> RolloutFollower:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for source in self._sources:
            source.stop()
        for source in self._sources:
            if source.is_alive():
                source.join(timeout=2.0)

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
                    item = self._queue.get(timeout=min(0.25, max(0.01, deadline.remaining())))
                except queue.Empty:
                    item = None
                while item is not None:
                    yield from self._apply(item)
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        item = None
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

    def _apply(self, item: tuple[Any, ...]) -> Iterator[RolloutEvent]:
        """Take in one list or watch event; pod events are derived per object so that a short state (a pod
        terminating for 10 ms) is never lost by coalescing."""
        kind = item[1]
        if item[0] == "error":
            raise item[2]
        if kind == "statefulset":
            obj = next(iter(item[2]), None) if item[0] == "sync" else item[3]
            if obj is None or (item[0] == "event" and item[2] == "DELETED"):
                raise NotFound(
                    f"Kubernetes {self.client.server}: statefulset {self.snapshot.namespace}/{self.snapshot.name} "
                    "is gone",
                    status=404,
                    url=self.client.server,
                )
            self._statefulset = obj
            yield from self._statefulset_events(obj)
            return
        if item[0] == "sync":
            fresh = {str(p["metadata"].get("uid")): p for p in item[2]}
            for uid in set(self._pods) - set(fresh):
                yield self._gone(self._pods[uid])
            self._pods = fresh
            self._pods_synced = True
            for pod in fresh.values():
                yield from self._pod_events(pod)
            return
        event_type, obj = item[2], item[3]
        uid = str(obj["metadata"].get("uid"))
        yield from self._pod_events(obj)
        if event_type == "DELETED":
            self._pods.pop(uid, None)
            yield self._gone(obj)
        else:
            self._pods[uid] = obj

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
                    f"(reasons seen: {', '.join(seen)})"
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
                # imageID is "<repository>@sha256:..." (containerd) or "docker-pullable://<repo>@sha256:...".
                if not image_id.endswith(digest):
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
            f"roll-out of statefulset {ns}/{name} on {self.client.server} not done within {self.timeout:.0f} s"
            f"{waiting}: {state}"
        )
