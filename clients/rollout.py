"""The Kubernetes roll-out client: snapshot a StatefulSet, restart it, and follow its roll-out to the end.

Uses the official ``kubernetes`` client (sync) with its own config loaders (kubeconfig file and context, a
kubeconfig dict, or in-cluster), and a timeout on every call. Following is list+watch from a resourceVersion, as
kr8s and client-go do: a stream that ends is resumed from the last resourceVersion, and ``410 Gone`` (an HTTP 410,
or an ERROR event with code 410) means list again (FACTS.md "Watches"). The StatefulSet and its pods are watched
by two small threads that feed one queue; the follower turns what they see into ``rollout_state`` and events.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from clients.errors import ApiError, DeadlineExceeded, ImageMismatch, NotFound, RolloutStuck
from clients.http import RetryPolicy
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
    SnapshotPod,
)
from clients.rollout_state import PodState, RolloutState, pod_state, rollout_state
from clients.waiting import Deadline

logger = logging.getLogger(__name__)

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
FATAL_STATUSES = frozenset({400, 401, 403, 404, 422})


def label_selector(selector: Mapping[str, Any]) -> str:
    """A ``LabelSelector`` (``matchLabels``, ``matchExpressions``) as the query string the API takes."""
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise ValueError(f"unknown label selector operator {operator!r}")
    return ",".join(parts)


def _api_error(error: BaseException, what: str, server: str) -> ApiError:
    """An ``ApiException`` or transport error as our error, naming the object and the server (never headers)."""
    if isinstance(error, ApiException):
        detail: str | None = None
        with contextlib.suppress(ValueError, TypeError):
            detail = json.loads(error.body or "").get("message")
        status = int(error.status) if error.status else None
        message = f"Kubernetes {server}: {what} answered {status}: {detail or error.reason}"
        cls = NotFound if status == 404 else ApiError
        return cls(message, status=status, url=server, detail=detail)
    return ApiError(f"Kubernetes {server}: {what} got no answer ({type(error).__name__})", url=server)


class _Retryable(Exception):
    def __init__(self, error: ApiError, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def _retry_after(error: ApiException) -> float | None:
    value = (error.headers or {}).get("Retry-After") if error.headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class RolloutClient:
    """Snapshot, restart and follow StatefulSet roll-outs.

    Args:
        api_client: a ``kubernetes.client.ApiClient`` (build it with ``from_kubeconfig``/``in_cluster``).
        request_timeout: seconds (connect and read) for every plain call.
        watch_seconds: how long one watch request lasts on the server (``timeoutSeconds``) before it is resumed.
        retry: the ``RetryPolicy`` of plain calls (watches retry with a backoff until the follower's deadline).
    """

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        request_timeout: float = 30.0,
        watch_seconds: int = 60,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.api_client = api_client
        self.retry = retry or RetryPolicy()
        self.request_timeout = request_timeout
        self.watch_seconds = watch_seconds
        self.server = str(api_client.configuration.host)
        self.apps = k8s.AppsV1Api(api_client)
        self.core = k8s.CoreV1Api(api_client)

    @classmethod
    def from_kubeconfig(
        cls, path: str | Path | None = None, *, context: str | None = None, **kwargs: Any
    ) -> RolloutClient:
        """From a kubeconfig file (None: ``$KUBECONFIG`` or ``~/.kube/config``) and an optional context."""
        api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(path) if path else None, context=context, persist_config=False
        )
        return cls(api, **kwargs)

    @classmethod
    def from_kubeconfig_dict(
        cls, kubeconfig: Mapping[str, Any], *, context: str | None = None, **kwargs: Any
    ) -> RolloutClient:
        """From a kubeconfig already loaded (e.g. from a Block's secret field)."""
        api = k8s_config.new_client_from_config_dict(  # type: ignore[no-untyped-call]
            config_dict=dict(kubeconfig), context=context, persist_config=False
        )
        return cls(api, **kwargs)

    @classmethod
    def in_cluster(cls, **kwargs: Any) -> RolloutClient:
        """From the pod's service account (``KUBERNETES_SERVICE_HOST`` and the mounted token)."""
        configuration = k8s.Configuration()
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return cls(k8s.ApiClient(configuration), **kwargs)

    def __repr__(self) -> str:
        return f"RolloutClient(server={self.server!r})"

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> RolloutClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _timeout(self) -> tuple[float, float]:
        return (min(5.0, self.request_timeout), self.request_timeout)

    # ------------------------------------------------------------ reads

    def _raw(self, call: Callable[..., Any], what: str, *args: Any, **kwargs: Any) -> Any:
        """Call the API and return the JSON body as plain dicts (timestamps untouched).

        Retried with the ``RetryPolicy`` on dropped connections, 429 and 5xx (honouring ``Retry-After`` up to
        the cap). Every call we make is idempotent: reads, and a patch that sets a fixed value.
        """
        policy = self.retry

        def attempt() -> Any:
            started = time.monotonic()
            try:
                response = call(*args, _preload_content=False, _request_timeout=self._timeout, **kwargs)
                body = json.loads(response.data)
            except ApiException as error:
                logger.info("Kubernetes %s -> %s in %.3fs", what, error.status, time.monotonic() - started)
                if error.status in policy.statuses:
                    raise _Retryable(_api_error(error, what, self.server), _retry_after(error)) from None
                raise _api_error(error, what, self.server) from None
            except ValueError as error:
                raise _api_error(error, what, self.server) from None
            except Exception as error:  # urllib3's errors (MaxRetryError, ProtocolError) share no base with ours
                logger.info("Kubernetes %s -> %s", what, type(error).__name__)
                raise _Retryable(_api_error(error, what, self.server), None) from None
            logger.info("Kubernetes %s in %.3fs", what, time.monotonic() - started)
            return body

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, _Retryable) and error.retry_after is not None:
                return min(error.retry_after, policy.max_retry_after)
            return policy.backoff(state.attempt_number)

        retrying = Retrying(
            stop=stop_after_attempt(policy.attempts),
            wait=wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retryable as final:
            raise final.error from None

    def statefulset(self, namespace: str, name: str) -> dict[str, Any]:
        """The StatefulSet as a dict.

        Raises:
            NotFound: no such StatefulSet (names namespace/name and the server).
        """
        body: dict[str, Any] = self._raw(
            self.apps.read_namespaced_stateful_set, f"GET statefulset {namespace}/{name}", name, namespace
        )
        return body

    def pods(self, namespace: str, selector: str) -> tuple[list[dict[str, Any]], str]:
        """The pods matching a label selector, and the list's resourceVersion."""
        body = self._raw(
            self.core.list_namespaced_pod, f"LIST pods {namespace} -l {selector}", namespace, label_selector=selector
        )
        return list(body.get("items") or []), str((body.get("metadata") or {}).get("resourceVersion") or "")

    def state(self, namespace: str, name: str) -> RolloutState:
        """The roll-out state now (one read of the StatefulSet and its pods)."""
        statefulset = self.statefulset(namespace, name)
        items, _ = self.pods(namespace, label_selector((statefulset.get("spec") or {}).get("selector") or {}))
        return rollout_state(statefulset, items)

    def snapshot(self, namespace: str, name: str) -> RolloutSnapshot:
        """Read the StatefulSet and its pods before a change, to tell the roll-out's new pods from the old."""
        statefulset = self.statefulset(namespace, name)
        selector = label_selector((statefulset.get("spec") or {}).get("selector") or {})
        items, pods_version = self.pods(namespace, selector)
        metadata, spec, status = (statefulset.get(key) or {} for key in ("metadata", "spec", "status"))
        return RolloutSnapshot(
            namespace=namespace,
            name=name,
            generation=int(metadata.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            update_revision=status.get("updateRevision"),
            current_revision=status.get("currentRevision"),
            replicas=spec.get("replicas"),
            selector=selector,
            resource_version=str(metadata.get("resourceVersion") or ""),
            pods=tuple(
                SnapshotPod(
                    name=str(pod["metadata"]["name"]),
                    uid=str(pod["metadata"].get("uid") or ""),
                    revision=(pod["metadata"].get("labels") or {}).get("controller-revision-hash"),
                )
                for pod in items
            ),
            server=self.server,
            pods_resource_version=pods_version,
            statefulset_object=statefulset,
            pod_objects=tuple(items),
        )

    # ------------------------------------------------------------ changes

    def restart(self, namespace: str, name: str, *, at: datetime | None = None) -> str:
        """Restart the StatefulSet as ``kubectl rollout restart`` does: a strategic-merge patch of the pod
        template's ``kubectl.kubernetes.io/restartedAt`` annotation (FACTS.md). Returns the value set.

        The value has whole seconds, as kubectl writes it: a second restart within the same second changes
        nothing (no new revision). Pass ``at`` to choose the time.
        """
        value = (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: value}}}}}
        self._raw(
            self.apps.patch_namespaced_stateful_set,
            f"PATCH statefulset {namespace}/{name}",
            name,
            namespace,
            body,
            _content_type=STRATEGIC_MERGE,
        )
        return value

    # ------------------------------------------------------------ following

    def follow(
        self,
        snapshot: RolloutSnapshot,
        *,
        timeout: float,
        stuck_grace: float = 120.0,
        expected_digest: str | None = None,
        container: str | None = None,
        require_change: bool = True,
    ) -> RolloutFollower:
        """A ``RolloutFollower``: iterate it for progress events until ``RolloutDone``.

        Args:
            snapshot: from ``snapshot()`` before the change.
            timeout: seconds until ``DeadlineExceeded``.
            stuck_grace: seconds a pod may stay stuck (and not Ready) before ``RolloutStuck``.
            expected_digest: ``sha256:...`` that every updated pod's ``imageID`` must carry.
            container: check only this container's ``imageID`` (None: every container).
            require_change: wait for the change itself (a new generation observed, or a new updateRevision);
                False accepts a StatefulSet that is already rolled out.
        """
        return RolloutFollower(
            self,
            snapshot,
            timeout=timeout,
            stuck_grace=stuck_grace,
            expected_digest=expected_digest,
            container=container,
            require_change=require_change,
        )

    def wait(
        self,
        snapshot: RolloutSnapshot,
        *,
        timeout: float,
        on_event: Callable[[RolloutEvent], None] | None = None,
        change: Callable[[], object] | None = None,
        **options: Any,
    ) -> RolloutReport:
        """Follow the roll-out to the end and return its report.

        Args:
            snapshot: from ``snapshot()`` before the change.
            timeout: seconds until ``DeadlineExceeded``.
            on_event: called with every progress event.
            change: makes the change (e.g. ``lambda: client.restart(ns, name)`` or an AWX launch) once the
                watches run.
            **options: ``follow()``'s options (``stuck_grace``, ``expected_digest``, ``container``, ...).
        """
        with self.follow(snapshot, timeout=timeout, **options) as follower:
            if change is not None:
                change()
            for event in follower:
                if on_event:
                    on_event(event)
            return follower.report


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
            self.sink.put(("error", self.kind, _api_error(error, what, self.client.server)))
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
    """Iterate for progress events; ends after ``RolloutDone`` or raises.

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
    ) -> None:
        self.client = client
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
                raise RolloutStuck(
                    f"pod {ns}/{pod.name} of statefulset {ns}/{name} stuck for {now - since:.0f} s "
                    f"(grace {self.stuck_grace:.0f} s): {pod.stuck_reason}: {pod.stuck_message}"
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
