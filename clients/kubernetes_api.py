"""The Kubernetes API as the roll-out needs it: plain calls with retries, lists, and watches another thread can close.

Uses the official ``kubernetes`` client (sync). Every call asks for the raw JSON (``_preload_content=False``), so
objects stay plain dicts with their timestamps untouched, and has a timeout. Plain calls are retried as
``clients.retry.RetryPolicy`` decides (every call here is idempotent: reads, and a patch that sets a fixed value).
Watches are not retried here: their caller resumes them from the last resourceVersion (FACTS.md "Watches").
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from clients.errors import ApiError, NotFound, RateLimited, TlsVerificationFailed, WatchExpired
from clients.http import USER_AGENT, certificate_error, tls_failure, warn_tls_off
from clients.retry import Retry, RetryPolicy, requested_wait, resets_at

logger = logging.getLogger(__name__)

STRATEGIC_MERGE = "application/strategic-merge-patch+json"


class Resource(StrEnum):
    """The kinds of object the roll-out lists and watches."""

    STATEFULSETS = "statefulsets"
    PODS = "pods"


@dataclass(frozen=True)
class Collection:
    """Objects of one kind in a namespace, narrowed by a label or field selector: what is listed and watched.

    Attributes:
        resource: StatefulSets or pods.
        namespace: the namespace.
        label_selector: e.g. ``name=stack``.
        field_selector: e.g. ``metadata.name=stack``.
    """

    resource: Resource
    namespace: str
    label_selector: str | None = None
    field_selector: str | None = None

    def describe(self) -> str:
        """``pods staging-stack -l name=stack``, for messages and logs."""
        text = f"{self.resource} {self.namespace}"
        if self.label_selector:
            text += f" -l {self.label_selector}"
        if self.field_selector:
            text += f" --field-selector {self.field_selector}"
        return text

    @property
    def selectors(self) -> dict[str, str]:
        """The selectors as the list and watch calls take them."""
        chosen = {"label_selector": self.label_selector, "field_selector": self.field_selector}
        return {key: value for key, value in chosen.items() if value}


@dataclass(frozen=True)
class ObjectList:
    """A list's objects (plain dicts) and its resourceVersion, from which a watch carries on."""

    items: tuple[dict[str, Any], ...]
    resource_version: str


@dataclass(frozen=True)
class WatchEvent:
    """One watch event: ``ADDED``, ``MODIFIED``, ``DELETED`` or ``BOOKMARK``, and the object (a plain dict)."""

    type: str
    object: dict[str, Any]

    @property
    def resource_version(self) -> str | None:
        version = (self.object.get("metadata") or {}).get("resourceVersion")
        return str(version) if version else None


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
    refused = certificate_error(error)
    if refused is not None:
        return tls_failure("Kubernetes", f"{what} at {server}", server, refused)
    return ApiError(f"Kubernetes {server}: {what} got no answer ({type(error).__name__})", url=server)


class WatchStream:
    """The events of one watch request, until the server ends it (after ``timeoutSeconds``) or ``close()``.

    The kubernetes client's ``Watch`` parses the stream (and turns an ERROR event into an exception); this keeps
    the HTTP response it reads from (the Watch's own is private), so that ``close()``, from any thread, can shut
    its socket and unblock a read waiting on a quiet watch.

    Raises (while iterating):
        WatchExpired: the resourceVersion is too old (an HTTP 410, or an ERROR event with code 410): list again.
        ApiError: any other error answer, or a dropped stream (``status`` None), unless the stream was closed.
    """

    def __init__(self, call: Callable[..., Any], what: str, server: str, **kwargs: Any) -> None:
        self._call = call
        self._kwargs = kwargs
        self._what = what
        self._server = server
        self._watch = k8s_watch.Watch()  # type: ignore[no-untyped-call]
        self._response: Any = None
        self._stop = threading.Event()

    def _send(self, *args: Any, **kwargs: Any) -> Any:  # the Watch calls this; no model type: events stay dicts
        response = self._call(*args, **kwargs)
        self._response = response
        if self._stop.is_set():
            self._shutdown(response)  # closed while the request was on its way
        return response

    def __iter__(self) -> Iterator[WatchEvent]:
        if self._stop.is_set():
            return
        events = self._watch.stream(self._send, **self._kwargs)  # type: ignore[no-untyped-call]
        try:
            with contextlib.closing(events):  # closing it closes the response at once
                for event in events:
                    if self._stop.is_set():
                        return
                    yield WatchEvent(str(event.get("type")), event.get("raw_object") or event.get("object") or {})
        except ApiException as error:
            if self._stop.is_set():
                return
            if error.status == 410:
                raise WatchExpired(
                    f"Kubernetes {self._server}: {self._what}: 410 Gone (resourceVersion too old)",
                    status=410,
                    url=self._server,
                ) from None
            raise api_error(error, self._what, self._server) from None
        except Exception as error:  # urllib3's errors (ProtocolError, ...) share no base with ours
            if self._stop.is_set():
                return
            raise api_error(error, self._what, self._server) from error

    def close(self) -> None:
        """End the stream (from any thread): the iteration stops without an error."""
        self._stop.set()
        if self._response is not None:
            self._shutdown(self._response)

    @staticmethod
    def _shutdown(response: Any) -> None:
        with contextlib.suppress(Exception):
            if hasattr(response, "shutdown"):
                response.shutdown()  # urllib3 >= 2.3: unblocks a read in progress
            else:
                response.close()


class KubernetesApi:
    """The calls the roll-out makes, each with a timeout; plain calls retried with the ``RetryPolicy``.

    Args:
        api_client: a ``kubernetes.client.ApiClient``.
        request_timeout: seconds (connect and read) for every plain call.
        watch_seconds: how long one watch request lasts on the server (``timeoutSeconds``).
        retry: the ``RetryPolicy`` of plain calls.
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
        if not api_client.configuration.verify_ssl:  # the kubeconfig's insecure-skip-tls-verify
            warn_tls_off("Kubernetes", self.server)
        self.apps = k8s.AppsV1Api(api_client)
        self.core = k8s.CoreV1Api(api_client)

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    @property
    def _timeout(self) -> tuple[float, float]:
        return (min(5.0, self.request_timeout), self.request_timeout)

    def call(self, call: Callable[..., Any], what: str, *args: Any, **kwargs: Any) -> Any:
        """Call the API and return the JSON body as plain dicts (timestamps untouched).

        Retried with the ``RetryPolicy`` on dropped connections, 408/425/429 and 5xx, honouring ``Retry-After``
        up to the policy's cap.

        Raises:
            RateLimited: the server asks for a longer wait than the policy's cap.
            NotFound: a 404 (the message names ``what`` and the server).
            ApiError: any other error answer, or no answer after the retries.
        """
        return self._send(call, what, json.loads, self.retry, *args, **kwargs)

    def _send(
        self,
        call: Callable[..., Any],
        what: str,
        decode: Callable[[bytes], Any],
        policy: RetryPolicy,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """``call`` with the raw body decoded by ``decode``, retried as ``policy`` decides (see ``call``)."""

        def send() -> Any:
            started = time.monotonic()
            try:
                response = call(*args, _preload_content=False, _request_timeout=self._timeout, **kwargs)
                body = decode(response.data)
            except ApiException as error:
                logger.info("Kubernetes %s -> %s in %.3fs", what, error.status, time.monotonic() - started)
                status = int(error.status or 0)
                wait = requested_wait(status, error.headers or {})
                if wait is not None and policy.waits_too_long(wait):
                    raise self._rate_limited(error, what, wait, policy) from None
                if policy.should_retry(status, idempotent=True, wait=wait):
                    raise Retry(api_error(error, what, self.server), wait) from None
                raise api_error(error, what, self.server) from None
            except ValueError as error:
                raise api_error(error, what, self.server) from None
            except Exception as error:  # urllib3's errors (MaxRetryError, ProtocolError) share no base with ours
                logger.info("Kubernetes %s -> %s", what, type(error).__name__)
                failed = api_error(error, what, self.server)
                if isinstance(failed, TlsVerificationFailed):
                    raise failed from None  # the same certificate again on a retry
                raise Retry(failed) from None
            logger.info("Kubernetes %s in %.3fs", what, time.monotonic() - started)
            return body

        return policy.call(send)

    def read_statefulset(self, namespace: str, name: str) -> dict[str, Any]:
        """The StatefulSet as a dict.

        Raises:
            NotFound: no such StatefulSet (names namespace/name and the server).
        """
        body: dict[str, Any] = self.call(
            self.apps.read_namespaced_stateful_set, f"GET statefulset {namespace}/{name}", name, namespace
        )
        return body

    def patch_statefulset(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A strategic-merge patch of the StatefulSet; returns it as patched."""
        body: dict[str, Any] = self.call(
            self.apps.patch_namespaced_stateful_set,
            f"PATCH statefulset {namespace}/{name}",
            name,
            namespace,
            dict(patch),
            _content_type=STRATEGIC_MERGE,
        )
        return body

    def delete_pod(self, namespace: str, name: str) -> None:
        """Delete a pod (its controller creates it again).

        Raises:
            NotFound: no such pod.
        """
        self.call(self.core.delete_namespaced_pod, f"DELETE pod {namespace}/{name}", name, namespace)

    def read_pod_log(
        self,
        namespace: str,
        name: str,
        *,
        container: str | None = None,
        previous: bool = False,
        tail_lines: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> str:
        """A container's log as ``kubectl logs`` reads it (``previous``: the container before the current one).
        The credential needs ``get`` on ``pods/log``.

        Raises:
            ApiError: e.g. 400 with the kubelet's words: "previous terminated container ... not found", or
                "container ... is waiting to start: image can't be pulled" (``detail`` holds them).
        """
        options = {"container": container, "previous": previous or None, "tail_lines": tail_lines}
        text: str = self._send(
            self.core.read_namespaced_pod_log,
            f"GET pod {namespace}/{name} log" + (" (previous)" if previous else ""),
            lambda data: bytes(data).decode("utf-8", errors="replace"),
            retry or self.retry,
            name,
            namespace,
            **{key: value for key, value in options.items() if value is not None},
        )
        return text

    def list_events(
        self, namespace: str, field_selector: str, *, retry: RetryPolicy | None = None
    ) -> list[dict[str, Any]]:
        """core/v1 Events of the namespace matching ``field_selector`` (e.g. ``involvedObject.name=stack-1``).
        The credential needs ``list`` on ``events``."""
        body = self._send(
            self.core.list_namespaced_event,
            f"LIST events {namespace} --field-selector {field_selector}",
            json.loads,
            retry or self.retry,
            namespace,
            field_selector=field_selector,
        )
        return list(body.get("items") or ())

    def list(self, collection: Collection) -> ObjectList:
        """The objects of ``collection`` now, and the list's resourceVersion."""
        body = self.call(
            self._lister(collection), f"LIST {collection.describe()}", collection.namespace, **collection.selectors
        )
        metadata = body.get("metadata") or {}
        return ObjectList(tuple(body.get("items") or ()), str(metadata.get("resourceVersion") or ""))

    def watch(self, collection: Collection, resource_version: str) -> WatchStream:
        """The changes to ``collection`` after ``resource_version`` (with bookmarks), for ``watch_seconds``.

        The request goes out when the iteration starts.
        """
        return WatchStream(
            self._lister(collection),
            f"watch {collection.describe()}",
            self.server,
            namespace=collection.namespace,
            resource_version=resource_version,
            timeout_seconds=self.watch_seconds,
            allow_watch_bookmarks=True,
            _request_timeout=(min(5.0, self.request_timeout), self.watch_seconds + 10.0),
            **collection.selectors,
        )

    def _lister(self, collection: Collection) -> Callable[..., Any]:
        if collection.resource is Resource.STATEFULSETS:
            return self.apps.list_namespaced_stateful_set
        return self.core.list_namespaced_pod

    def _rate_limited(self, error: ApiException, what: str, wait: float, policy: RetryPolicy) -> RateLimited:
        known = api_error(error, what, self.server)
        return RateLimited(
            f"{known}; it asks to wait {wait:.0f} s: the limit resets at {resets_at(wait)} "
            f"(we wait at most {policy.max_retry_after:.0f} s)",
            retry_after=wait,
            status=known.status,
            url=self.server,
            detail=known.detail,
        )
