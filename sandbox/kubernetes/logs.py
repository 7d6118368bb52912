"""Container logs and ``GET /api/v1/namespaces/{ns}/pods/{name}/log`` (``kubectl logs``).

The kubelet writes each container's lines into a ``ContainerLog`` named by its containerID; per pod and container
the running (or last) container's log and the one before it are kept, as the kubelet's garbage collection keeps
one dead container per container. Which log a request reads follows the apiserver and kubelet:
- the apiserver picks the container (the only one, else ``container`` is required and must exist) and, for a pod
  not bound to a node yet, answers 200 with an empty body;
- the kubelet (``validateContainerLogStatus``): ``previous`` reads ``lastState.terminated``'s container, else the
  running container, else the last terminated one (so a crash-looping container waiting in back-off shows the
  log of its crash), else a 400 "container ... is waiting to start: ..." (for a pull that fails: "image can't be
  pulled" or "trying and failing to pull image");
- ``sinceSeconds``/``sinceTime``, then ``tailLines``, then ``timestamps`` (RFC 3339 with nine fractional digits),
  then ``limitBytes``; ``follow`` streams new lines until the container stops (or the pod goes).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from sandbox.kubernetes import errors
from sandbox.kubernetes.objects import Obj

MAX_LINES = 5000
"""Lines kept per container (the kubelet rotates a container's log at 10 MiB)."""
_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_FALSE = ("0", "f", "F", "false", "FALSE", "False")


@dataclass
class LogLine:
    time: datetime
    text: str


@dataclass
class ContainerLog:
    """The log of one container (one containerID), as the container runtime keeps it."""

    container_id: str
    lines: list[LogLine] = field(default_factory=list)
    """The last ``MAX_LINES`` lines."""
    written: int = 0
    """Lines written in all (more than ``lines`` holds once the oldest are dropped)."""
    ended: bool = False
    _grew: asyncio.Event = field(default_factory=asyncio.Event)

    def write(self, when: datetime, text: str) -> None:
        for line in text.split("\n"):
            self.lines.append(LogLine(when, line))
            self.written += 1
        del self.lines[:-MAX_LINES]
        self._wake()

    def after(self, count: int) -> list[LogLine]:
        """The lines written after the first ``count`` (those still kept)."""
        return self.lines[max(0, len(self.lines) - (self.written - count)) :]

    def end(self) -> None:
        """The container stopped: followers read what is left and finish."""
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        grew, self._grew = self._grew, asyncio.Event()
        grew.set()

    async def changed(self, timeout: float) -> None:
        """Wait until a line is written or the log ends (or ``timeout`` real seconds pass)."""
        try:
            await asyncio.wait_for(self._grew.wait(), timeout)
        except TimeoutError:
            pass


class LogStore:
    """Container logs by containerID, two per (pod uid, container name): the current and the one before."""

    def __init__(self) -> None:
        self._logs: dict[str, ContainerLog] = {}
        self._by_container: dict[tuple[str, str], list[str]] = {}

    def open(self, pod_uid: str, container: str, container_id: str) -> ContainerLog:
        """A new container started: its (empty) log; the container before the previous one is forgotten."""
        log = ContainerLog(container_id)
        self._logs[container_id] = log
        ids = self._by_container.setdefault((pod_uid, container), [])
        ids.append(container_id)
        for old in ids[:-2]:
            self._forget(old)
        del ids[:-2]
        return log

    def get(self, container_id: str) -> ContainerLog | None:
        return self._logs.get(container_id)

    def end_pod(self, pod_uid: str) -> None:
        """The pod's containers were stopped (the pod is terminating)."""
        for (uid, _), ids in self._by_container.items():
            if uid == pod_uid:
                for container_id in ids:
                    if (log := self._logs.get(container_id)) is not None:
                        log.end()

    def forget_pod(self, pod_uid: str) -> None:
        """The pod is gone, and its logs with it."""
        for key in [k for k in self._by_container if k[0] == pod_uid]:
            for container_id in self._by_container.pop(key):
                self._forget(container_id)

    def close(self) -> None:
        """The emulator stops: every follower finishes."""
        for log in self._logs.values():
            log.end()

    def _forget(self, container_id: str) -> None:
        log = self._logs.pop(container_id, None)
        if log is not None:
            log.end()


# ---------------------------------------------------------------- the request


@dataclass(frozen=True)
class LogOptions:
    """PodLogOptions from the query string, validated as the apiserver validates them."""

    container: str
    previous: bool
    follow: bool
    timestamps: bool
    tail_lines: int | None
    limit_bytes: int | None
    since: datetime | None


def _bool(request: Request, name: str) -> bool:
    value = request.query_params.get(name)
    if value is None or value == "":
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise errors.bad_request(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def _int(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f'strconv.ParseInt: parsing "{value}": invalid syntax') from None


def log_options(request: Request, pod: Obj, now: datetime) -> LogOptions:
    """Parse and validate the query; pick the container (400 as the apiserver words it)."""
    name = pod["metadata"]["name"]
    tail, limit, since_seconds = _int(request, "tailLines"), _int(request, "limitBytes"), _int(request, "sinceSeconds")
    since_time = request.query_params.get("sinceTime") or None
    causes: list[tuple[str, str]] = []
    if tail is not None and tail < 0:
        causes.append(("tailLines", f"Invalid value: {tail}: must be greater than or equal to 0"))
    if limit is not None and limit < 1:
        causes.append(("limitBytes", f"Invalid value: {limit}: must be greater than 0"))
    if since_seconds is not None and since_time is not None:
        causes.append(("", "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"))
    elif since_seconds is not None and since_seconds < 1:
        causes.append(("sinceSeconds", f"Invalid value: {since_seconds}: must be greater than 0"))
    if causes:
        raise errors.invalid("", "PodLogOptions", "pods", name, causes)
    since: datetime | None = None
    if since_seconds is not None:
        since = now - timedelta(seconds=since_seconds)
    elif since_time is not None:
        try:
            since = datetime.fromisoformat(since_time.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            raise errors.bad_request(f'parsing time "{since_time}" as RFC 3339: cannot parse') from None

    containers = [c["name"] for c in pod["spec"].get("containers") or []]
    container = request.query_params.get("container") or ""
    if not container:
        if len(containers) != 1:
            raise errors.bad_request(
                f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
            )
        container = containers[0]
    elif container not in containers:
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    return LogOptions(
        container=container,
        previous=_bool(request, "previous"),
        follow=_bool(request, "follow"),
        timestamps=_bool(request, "timestamps"),
        tail_lines=tail,
        limit_bytes=limit,
        since=since,
    )


def container_id_for(pod: Obj, options: LogOptions) -> str:
    """The containerID whose log the kubelet serves (its ``validateContainerLogStatus``), or 400."""
    name = pod["metadata"]["name"]
    status = next(
        (cs for cs in (pod.get("status") or {}).get("containerStatuses") or [] if cs.get("name") == options.container),
        None,
    )
    container = options.container
    if status is None:
        raise errors.bad_request(f'container "{container}" in pod "{name}" is not available')
    state, last = status.get("state") or {}, (status.get("lastState") or {}).get("terminated")
    if options.previous:
        if not last or not last.get("containerID"):
            raise errors.bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        return str(last["containerID"])
    if state.get("running") is not None:
        return str(status.get("containerID", ""))
    terminated = state.get("terminated")
    if terminated is not None:
        found = terminated.get("containerID") or (last or {}).get("containerID")
        if not found:
            raise errors.bad_request(f'container "{container}" in pod "{name}" is terminated')
        return str(found)
    if last is not None:
        if not last.get("containerID"):
            raise errors.bad_request(f'container "{container}" in pod "{name}" is terminated')
        return str(last["containerID"])
    waiting = state.get("waiting")
    if waiting is not None:
        reason = waiting.get("reason", "")
        why = {
            "ErrImagePull": "image can't be pulled",
            "ImagePullBackOff": "trying and failing to pull image",
        }.get(reason, reason)
        raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start: {why}')
    raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start - no logs yet')


def _render(line: LogLine, timestamps: bool) -> bytes:
    if not timestamps:
        return (line.text + "\n").encode()
    moment = line.time.astimezone(UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond:06d}000Z"
    return f"{stamp} {line.text}\n".encode()


def log_response(pod: Obj, options: LogOptions, logs: LogStore) -> Response:
    """The answer: text/plain, streamed while following."""
    if not (pod.get("spec") or {}).get("nodeName"):
        return PlainTextResponse("")  # not bound to a node: the apiserver has nowhere to ask
    container_id = container_id_for(pod, options)
    log = logs.get(container_id)
    if log is None:
        return PlainTextResponse(f"unable to retrieve container logs for {container_id}")
    read = log.written
    lines = [line for line in log.lines if options.since is None or line.time >= options.since]
    if options.tail_lines is not None:
        lines = lines[-options.tail_lines :] if options.tail_lines else []
    first = b"".join(_render(line, options.timestamps) for line in lines)
    if options.limit_bytes is not None:
        first = first[: options.limit_bytes]
    if not options.follow:
        return Response(first, media_type="text/plain")

    async def stream() -> AsyncIterator[bytes]:
        sent = len(first)
        if first:
            yield first
        seen = read
        while options.limit_bytes is None or sent < options.limit_bytes:
            if seen == log.written:
                if log.ended:
                    return
                await log.changed(0.5)
                continue
            chunk = b"".join(_render(line, options.timestamps) for line in log.after(seen))
            seen = log.written
            if options.limit_bytes is not None:
                chunk = chunk[: options.limit_bytes - sent]
            sent += len(chunk)
            yield chunk

    return StreamingResponse(stream(), media_type="text/plain")
