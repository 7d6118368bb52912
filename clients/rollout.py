"""The Kubernetes roll-out client: snapshot a StatefulSet, restart it, and follow its roll-out to the end.

Uses the official ``kubernetes`` client (sync) with its own config loaders (kubeconfig file and context, a
kubeconfig dict, or in-cluster), a timeout on every call and bounded retries. Following (list+watch, 410 handling,
events, timings) lives in ``clients.rollout_follow``; the pure decisions in ``clients.rollout_state``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from clients.errors import ApiError
from clients.http import USER_AGENT, RetryPolicy
from clients.rollout_events import RolloutEvent, RolloutReport, RolloutSnapshot, SnapshotPod
from clients.rollout_follow import RolloutFollower, api_error
from clients.rollout_state import RolloutState, rollout_state

logger = logging.getLogger(__name__)

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"


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
        # the same User-Agent as our HTTP clients, so that a server's logs tell our requests apart
        api_client.user_agent = USER_AGENT
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
                    raise _Retryable(api_error(error, what, self.server), _retry_after(error)) from None
                raise api_error(error, what, self.server) from None
            except ValueError as error:
                raise api_error(error, what, self.server) from None
            except Exception as error:  # urllib3's errors (MaxRetryError, ProtocolError) share no base with ours
                logger.info("Kubernetes %s -> %s", what, type(error).__name__)
                raise _Retryable(api_error(error, what, self.server), None) from None
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
        stop: threading.Event | None = None,
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
            stop: an event that ends the iteration early, without ``RolloutDone`` (e.g. another stage failed).
        """
        return RolloutFollower(
            self,
            snapshot,
            timeout=timeout,
            stuck_grace=stuck_grace,
            expected_digest=expected_digest,
            container=container,
            require_change=require_change,
            stop=stop,
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
