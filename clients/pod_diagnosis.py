"""What an operator looks up next about a stuck pod: its last log lines and its recent events, as a short text.

``diagnose_pod(api, pod)`` reads, as ``kubectl logs --previous --tail=10`` and ``kubectl describe pod`` do, the
previous container's log (a crash-looping container's traceback; the current log when there was no previous one,
whose 400 says why a container that never ran has no log: "is waiting to start: image can't be pulled") and the
pod's events (selected by ``involvedObject`` name, namespace, kind and uid, as kubectl describe selects them).
The text is bounded (``MAX_CHARS``), credentials that a log line may carry (a URL's password, ``password=...``,
a bearer token) are masked, and a read that fails says so in the text: the stuck-pod error must never be lost to
a failed diagnosis.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from clients.errors import ApiError
from clients.kubernetes_api import KubernetesApi
from clients.retry import RetryPolicy
from clients.timestamps import parse_time

logger = logging.getLogger(__name__)

LOG_LINES = 10
"""Log lines kept (``tailLines``): a Python traceback's last frames and its error."""
MAX_EVENTS = 5
MAX_CHARS = 2000
"""The most the diagnosis adds to an error message."""
MAX_LINE = 300
"""A longer log line or event message is cut (with ``...``)."""
INDENT = "    "
READ_RETRY = RetryPolicy(attempts=2, backoff_initial=0.2, backoff_max=1.0, max_retry_after=2.0)
"""The diagnosis is on a failure path that is already decided: one more try at most, no long waits."""

_SECRETS = (
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@]*:)[^\s/@]+@"), r"\1***@"),
    # Authorization: Bearer <token>, Basic <credentials>
    (re.compile(r"(?i)\b(bearer|basic)\s+[a-z0-9._~+/=-]{8,}"), r"\1 ***"),
    # password=..., "token": "...", SECRET_KEY: ...
    (
        re.compile(
            r"(?i)\b([a-z0-9_.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|credential)[a-z0-9_.-]*"
            r"[\"']?\s*[=:]\s*)([\"']?)[^\s\"',;]+"
        ),
        r"\1\2***",
    ),
)


def mask_secrets(text: str) -> str:
    """``text`` with what looks like a credential replaced by ``***`` (URL passwords, bearer tokens, key=value)."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _clip(text: str, limit: int = MAX_LINE) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _waits(container: Mapping[str, Any]) -> bool:
    reason = ((container.get("state") or {}).get("waiting") or {}).get("reason")
    return reason not in (None, "ContainerCreating", "PodInitializing")


def _crashed_before(container: Mapping[str, Any]) -> bool:
    return bool((container.get("lastState") or {}).get("terminated")) or int(container.get("restartCount") or 0) > 0


def _not_ready(container: Mapping[str, Any]) -> bool:
    return not container.get("ready") and not (container.get("state") or {}).get("terminated")


def failing_container(pod: Mapping[str, Any], preferred: str | None = None) -> str | None:
    """The container whose log tells why the pod is stuck: the first (init containers first) that waits in a
    back-off or error, or has crashed before, or is not ready; else ``preferred``; else None (the API picks a
    pod's only container)."""
    status = pod.get("status") or {}
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for looks_stuck in (_waits, _crashed_before, _not_ready):
        for container in statuses:
            if looks_stuck(container) and container.get("name"):
                return str(container["name"])
    return preferred


def _has_previous(pod: Mapping[str, Any], container: str | None) -> bool:
    status = pod.get("status") or {}
    for entry in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        if container is None or entry.get("name") == container:
            if (entry.get("lastState") or {}).get("terminated"):
                return True
    return False


def log_section(api: KubernetesApi, namespace: str, name: str, container: str | None, previous: bool) -> list[str]:
    """The heading and lines of the log part: the previous container's last lines (when it had one; else the
    current log's), or the API's reason why there is none, or why it could not be read."""
    which = f"container {container}" if container else "its container"
    attempts = [True, False] if previous else [False]
    for attempt in attempts:
        try:
            text = api.read_pod_log(
                namespace, name, container=container, previous=attempt, tail_lines=LOG_LINES, retry=READ_RETRY
            )
        except ApiError as error:
            if error.status == 400 and attempt and len(attempts) > 1:
                continue  # no previous container after all (the status moved on): read the current one
            if error.status == 400 and error.detail:
                return [f"logs: none: {_clip(mask_secrets(error.detail))}"]  # e.g. "... is waiting to start: ..."
            return [f"logs: could not be read: {_clip(mask_secrets(str(error)))}"]
        lines = text.splitlines()[-LOG_LINES:]
        if not lines:
            return [f"logs: {which} has written nothing yet"]
        kind = "previous (crashed) " if attempt else ""
        heading = f"last {len(lines)} log lines of the {kind}{which}:"
        return [heading, *(INDENT + _clip(mask_secrets(line)) for line in lines)]
    return []  # not reached: the last attempt returns


def _last_seen(event: Mapping[str, Any]) -> datetime:
    for value in (
        (event.get("series") or {}).get("lastObservedTime"),
        event.get("lastTimestamp"),
        event.get("eventTime"),
        event.get("firstTimestamp"),
        (event.get("metadata") or {}).get("creationTimestamp"),
    ):
        try:
            moment = parse_time(value)
        except ValueError:
            continue
        if moment is not None:
            return moment
    return datetime.min.replace(tzinfo=UTC)


def _count(event: Mapping[str, Any]) -> int:
    series = (event.get("series") or {}).get("count")
    try:
        return max(1, int(series or event.get("count") or 1))
    except (TypeError, ValueError):
        return 1


def recent_events(events: Iterable[Mapping[str, Any]], limit: int = MAX_EVENTS) -> list[str]:
    """The pod's events as ``Warning BackOff (x7): Back-off restarting ...``: Warning ones first, the most recently
    seen first within each, at most ``limit``."""
    ordered = sorted(
        events, key=lambda e: (e.get("type") != "Warning", -_last_seen(e).timestamp(), str(e.get("reason") or ""))
    )
    return [
        f"{event.get('type') or 'Normal'} {event.get('reason') or '?'} (x{_count(event)}): "
        + _clip(mask_secrets(" ".join(str(event.get("message") or "").split())))
        for event in ordered[:limit]
    ]


def event_selector(pod: Mapping[str, Any]) -> str:
    """The field selector kubectl describe uses for a pod's events: name, namespace, kind and uid."""
    metadata = pod.get("metadata") or {}
    parts = [
        f"involvedObject.name={metadata.get('name')}",
        f"involvedObject.namespace={metadata.get('namespace')}",
        "involvedObject.kind=Pod",
    ]
    if metadata.get("uid"):
        parts.append(f"involvedObject.uid={metadata['uid']}")
    return ",".join(parts)


def events_section(api: KubernetesApi, pod: Mapping[str, Any]) -> list[str]:
    """The heading and lines of the events part, or why they could not be read."""
    namespace = str((pod.get("metadata") or {}).get("namespace") or "")
    try:
        events = api.list_events(namespace, event_selector(pod), retry=READ_RETRY)
    except ApiError as error:
        return [f"events: could not be read: {_clip(mask_secrets(str(error)))}"]
    lines = recent_events(events)
    if not lines:
        return ["events: none"]
    return [f"events (Warning first, then newest; {len(lines)} of {len(events)}):", *(INDENT + line for line in lines)]


def bounded(log: list[str], events: list[str], limit: int = MAX_CHARS) -> str:
    """The two parts as one text of at most ``limit`` characters: the log part loses its oldest lines first (its
    error is at the end), then the text is cut."""
    log = list(log)
    while len(log) > 2 and len("\n".join(log + events)) > limit:
        del log[1]  # keep the heading and the last lines
    text = "\n".join(log + events)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def diagnose_pod(api: KubernetesApi, pod: Mapping[str, Any], *, container: str | None = None) -> str:
    """The stuck pod's last log lines and recent events as lines of text (at most ``MAX_CHARS``), for an error
    message. Never raises: a read that fails is named in the text.

    Args:
        api: the Kubernetes API (``get`` on ``pods/log`` and ``list`` on ``events`` are needed).
        pod: the pod as last seen (a dict: ``metadata``, ``status``).
        container: the container to prefer when the status names none as failing.
    """
    metadata = pod.get("metadata") or {}
    namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
    try:
        chosen = failing_container(pod, container)
        log = log_section(api, namespace, name, chosen, _has_previous(pod, chosen))
        events = events_section(api, pod)
        return bounded(log, events)
    except Exception as error:  # the stuck-pod error matters more than its diagnosis
        logger.warning("diagnosing pod %s/%s failed: %s", namespace, name, type(error).__name__)
        return f"logs and events: could not be read: {type(error).__name__}"
