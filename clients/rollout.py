"""The Kubernetes roll-out client: snapshot a StatefulSet, restart it, and follow its roll-out to the end.

Uses the official ``kubernetes`` client (sync) with its own config loaders (kubeconfig file and context, a
kubeconfig dict, or in-cluster). The calls themselves (timeouts, retries, lists, watches) live in
``clients.kubernetes_api``; following (list+watch, 410 handling, events, timings) in ``clients.rollout_follow``; the
pure decisions in ``clients.rollout_state``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from clients.errors import NotFound
from clients.http import Closable
from clients.kubernetes_api import STRATEGIC_MERGE, Collection, KubernetesApi, Resource
from clients.retry import RetryPolicy
from clients.rollout_events import RolloutEvent, RolloutReport, RolloutSnapshot, SnapshotPod
from clients.rollout_follow import RolloutFollower
from clients.rollout_state import RolloutState, rollout_state
from clients.timestamps import format_time

__all__ = ["RESTARTED_AT", "STRATEGIC_MERGE", "RolloutClient", "label_selector"]

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


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


class RolloutClient(Closable):
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
        self.api = KubernetesApi(api_client, request_timeout=request_timeout, watch_seconds=watch_seconds, retry=retry)
        self.api_client = api_client
        self.server = self.api.server
        self.apps = self.api.apps
        self.core = self.api.core

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

    @property
    def retry(self) -> RetryPolicy:
        """The ``RetryPolicy`` of plain calls (settable)."""
        return self.api.retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        self.api.retry = policy

    def close(self) -> None:
        self.api.close()

    # ------------------------------------------------------------ reads

    def statefulset(self, namespace: str, name: str) -> dict[str, Any]:
        """The StatefulSet as a dict.

        Raises:
            NotFound: no such StatefulSet (names namespace/name and the server).
        """
        return self.api.read_statefulset(namespace, name)

    def pods(self, namespace: str, selector: str) -> tuple[list[dict[str, Any]], str]:
        """The pods matching a label selector, and the list's resourceVersion."""
        listed = self.api.list(Collection(Resource.PODS, namespace, label_selector=selector))
        return list(listed.items), listed.resource_version

    def container_images(self, namespace: str, name: str) -> dict[str, str]:
        """The images of the StatefulSet's pod template, by container name (what the controller rolls out)."""
        spec = ((self.statefulset(namespace, name).get("spec") or {}).get("template") or {}).get("spec") or {}
        return {str(c.get("name")): str(c.get("image")) for c in spec.get("containers") or [] if c.get("image")}

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
        value = format_time(at or datetime.now(UTC))
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: value}}}}}
        self.api.patch_statefulset(namespace, name, body)
        return value

    def delete_pods(self, namespace: str, names: Iterable[str]) -> list[str]:
        """Delete pods by name (a StatefulSet creates each again at its update revision); returns those deleted.

        Kubernetes' forced rollback (FACTS.md): with ``podManagementPolicy: OrderedReady`` the controller never
        replaces a pod that is not Ready, even once the template is reverted, so the broken pods must be deleted.
        A pod already gone is skipped. The credential needs ``delete`` on pods in the namespace.
        """
        deleted = []
        for name in names:
            try:
                self.api.delete_pod(namespace, name)
            except NotFound:
                continue
            deleted.append(name)
        return deleted

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
            self.api,
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
