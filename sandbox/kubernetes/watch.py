"""Watches: newline-delimited JSON events over a chunked response, as ``?watch=true`` gets from the apiserver.

- ``resourceVersion`` absent or "0": synthetic ADDED events for the current objects, then live changes;
- ``resourceVersion`` N: the kept changes after N, then live ones; if N is older than the kept history the
  stream is HTTP 200 with one ERROR event (a Status 410 Expired, "too old resource version: N (M)") and ends,
  as the real apiserver's watch cache answers;
- ``timeoutSeconds`` ends the stream (real seconds); ``allowWatchBookmarks`` adds BOOKMARK events;
- the fault ``watch_expire_seconds`` (read while the watch runs) ends every watch after that long and
  compacts the history, so that re-watching from the old resourceVersion gets the 410;
- an object that stops matching the selector arrives as DELETED, one that starts matching as ADDED.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from sandbox.emulator import Runtime
from sandbox.kubernetes import errors
from sandbox.kubernetes.errors import status_object
from sandbox.kubernetes.resources import Resource
from sandbox.kubernetes.store import Change, Store
from sandbox.kubernetes.table import table

Obj = dict[str, Any]
BOOKMARK_SECONDS = 5.0
"""Real seconds between bookmarks (the apiserver sends one about every minute; shorter keeps tests quick)."""
POLL_SECONDS = 0.2
"""How often an idle watch re-reads the watch_expire_seconds fault."""


def translate(change: Change, matches: Callable[[Obj], bool]) -> tuple[str, Obj] | None:
    """The event a watcher with this filter sees for a change, if any."""
    now = change.type != "DELETED" and matches(change.obj)
    before = change.old is not None and matches(change.old)
    if change.type == "DELETED":
        return ("DELETED", change.obj) if matches(change.obj) else None
    if now and before:
        return "MODIFIED", change.obj
    if now:
        return "ADDED", change.obj
    if before:
        return "DELETED", change.obj
    return None


def watch_response(
    runtime: Runtime, store: Store, request: Request, resource: Resource, matches: Callable[[Obj], bool]
) -> Response:
    """Start a watch (all validation happens here, before the 200)."""
    params = request.query_params
    rv_param = params.get("resourceVersion", "")
    timeout_text = params.get("timeoutSeconds")
    if timeout_text is not None and not timeout_text.isdigit():
        raise errors.bad_request(f'invalid value for timeoutSeconds: "{timeout_text}"')
    # without timeoutSeconds the apiserver picks 30-60 minutes (--min-request-timeout 1800 times 1..2)
    timeout = float(timeout_text) if timeout_text else 1800.0 * (1 + random.random())
    bookmarks = params.get("allowWatchBookmarks", "").lower() in ("true", "1")
    as_table = any("as=Table" in part for part in request.headers.get("accept", "").split(","))
    include = params.get("includeObject", "Metadata")
    if rv_param not in ("", "0") and not rv_param.isdigit():
        raise errors.bad_request(f'invalid resource version "{rv_param}"')

    # streaming lists (client-go's WatchListClient, on in kubectl 1.37): initial ADDED events for every object,
    # then a BOOKMARK annotated "k8s.io/initial-events-end", then changes
    initial_events = params.get("sendInitialEvents", "").lower() == "true"
    if initial_events and (not bookmarks or params.get("resourceVersionMatch") != "NotOlderThan"):
        raise errors.invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            "",
            [
                (
                    "sendInitialEvents",
                    "Forbidden: sendInitialEvents requires allowWatchBookmarks=true and "
                    "resourceVersionMatch=NotOlderThan",
                )
            ],
        )
    watcher = store.watch(resource.plural)
    first: list[tuple[str, Obj]] = []
    expired: Obj | None = None
    if rv_param in ("", "0") or initial_events:
        first = [("ADDED", obj) for obj in store.list(resource.plural) if matches(obj)]
    else:
        since = int(rv_param)
        history = store.history_since(resource.plural, since)
        if history is None:
            expired = status_object(
                410, "Expired", f"too old resource version: {since} ({store.compacted(resource.plural)})"
            )
        else:
            first = [event for change in history if (event := translate(change, matches)) is not None]

    def render(kind: str, obj: Obj) -> bytes:
        if as_table and kind in ("ADDED", "MODIFIED", "DELETED"):
            obj = table(resource.plural, [obj], runtime.clock.now(), include, None)
        return (json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n").encode()

    def bookmark(initial_end: bool = False) -> bytes:
        meta: Obj = {"resourceVersion": str(store.rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return render("BOOKMARK", {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": meta})

    async def events() -> AsyncIterator[bytes]:
        started = time.monotonic()
        next_bookmark = started + BOOKMARK_SECONDS
        try:
            if expired is not None:
                yield render("ERROR", expired)
                return
            for kind, obj in first:
                yield render(kind, obj)
            if initial_events:
                yield bookmark(initial_end=True)
            while True:
                now = time.monotonic()
                expire = runtime.faults.watch_expire_seconds
                if expire is not None and now - started >= expire:
                    store.compact()
                    return
                if now - started >= timeout:
                    if bookmarks:
                        yield bookmark()
                    return
                if bookmarks and now >= next_bookmark:
                    next_bookmark = now + BOOKMARK_SECONDS
                    yield bookmark()
                wait = min(POLL_SECONDS, timeout - (now - started))
                try:
                    change = await asyncio.wait_for(watcher.queue.get(), max(wait, 0.001))
                except TimeoutError:
                    continue
                if change is None:
                    return
                event = translate(change, matches)
                if event is not None:
                    yield render(*event)
        finally:
            store.unwatch(watcher)

    return StreamingResponse(events(), media_type="application/json")
