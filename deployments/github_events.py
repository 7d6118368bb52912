"""GitHub webhook deliveries turned into Prefect events: pure functions, no I/O (``receiver.py`` does the HTTP).

The event vocabulary (README "Webhooks"; prefect.yaml's triggers and the poller rely on it):

- ``fragalysis.github.push`` for a push of a branch or a tag. Prefect triggers match on event names and resource
  labels, never on the payload (FACTS.md), so the routing is in the labels: ``github.repository``,
  ``github.ref-kind`` (``branch`` | ``tag``), ``github.ref`` (the short branch or tag name), ``fragalysis.source``
  and ``fragalysis.environment`` (the environment a trigger should deploy to, or ``none``). A tag push is only ever
  routed to a production target and a branch push only to a non-production one, so a tag can never start a staging
  deploy. Every payload key is always present with one JSON type, because a trigger's templated parameter keeps the
  value's type and a missing key makes no run (FACTS.md). ``pushed_at`` (ISO 8601, the delivery's arrival) is what
  the deploy triggers pass as ``requested_at``, which orders the deploys of an environment (``flows/environments.py``):
  Prefect's automations may create the runs of deliveries a few milliseconds apart in another order.
- ``fragalysis.github.workflow-run`` for a ``workflow_run`` delivery (requested, in_progress, completed).

Fields the events carry into flow parameters and labels (the repository, the ref, the commit sha) are checked: a
delivery whose sha is not 40 hexadecimal digits, whose ref is over ``MAX_REF`` characters or holds white space or
control characters, or whose repository is not an ``owner/name`` GitHub could have sent is accepted and ignored
(200, logged with the reason, no event): it is signed, so it came from GitHub, but it can deploy nothing. A field of
the wrong JSON type is a malformed delivery (400).

The event id is a uuid5 of ``X-GitHub-Delivery``: a redelivery posts the same id, which Prefect's triggers service
de-duplicates, so it makes no second run (FACTS.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from blocks import StackTarget
from flows.events import GITHUB_PUSH, GITHUB_WORKFLOW_RUN

PUSH_EVENT = GITHUB_PUSH
WORKFLOW_RUN_EVENT = GITHUB_WORKFLOW_RUN
NONE = "none"
"""The label value (and ``source``/``environment`` payload value) for "routes nowhere" / "not a configured source"."""

EVENT_NAMESPACE = uuid.UUID("52f39d69-46ba-5ab7-9efb-745184537a0f")
"""Event ids are uuid5(EVENT_NAMESPACE, X-GitHub-Delivery): fixed forever, or redeliveries stop de-duplicating."""

MAX_REF = 256
"""The longest ref a push may name to make an event (git allows longer; GitHub's branch names stay well under)."""
FULL_SHA = re.compile(r"[0-9a-f]{40}")
REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
"""``owner/name`` as GitHub allows them: an owner of up to 39 letters, digits and dashes; a name of up to 100."""

SIGNATURE_PREFIX = "sha256="
BRANCH_PREFIX = "refs/heads/"
TAG_PREFIX = "refs/tags/"


class PayloadError(ValueError):
    """A body that is not a well-formed GitHub delivery (the receiver answers 400)."""


class UnsupportedContentType(PayloadError):
    """A content type GitHub does not send for webhooks (the receiver answers 415)."""


# ---------------------------------------------------------------- signature


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``: ``sha256=`` + hex HMAC-SHA256 under ``secret``."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` (``X-Hub-Signature-256``, None when absent) signs the raw ``body`` under ``secret``.

    Compared in constant time (GitHub's "Validating webhook deliveries"); as bytes, because ``compare_digest``
    refuses non-ASCII strings and a forged header may carry any character.
    """
    if not header:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.encode("utf-8", "replace"))


# ---------------------------------------------------------------- body


def decode_payload(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The delivery's JSON object, from either content type a GitHub webhook can be set to.

    ``application/json``: the body is the JSON; ``application/x-www-form-urlencoded``: the JSON is the ``payload``
    field. Raises ``UnsupportedContentType`` for any other type and ``PayloadError`` for a malformed body.
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        text = _utf8(body)
    elif media_type == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(_utf8(body), keep_blank_values=True, strict_parsing=True, errors="strict")
        except ValueError as error:
            raise PayloadError(f"malformed form body: {error}") from error
        values = fields.get("payload", [])
        if len(values) != 1:
            raise PayloadError("a form-encoded delivery needs exactly one 'payload' field")
        text = values[0]
    else:
        raise UnsupportedContentType(
            f"content type {media_type or '(none)'!r}: expected application/json or application/x-www-form-urlencoded"
        )
    try:
        payload = json.loads(text)
    except ValueError as error:
        raise PayloadError(f"malformed JSON: {error}") from error
    if not isinstance(payload, dict):
        raise PayloadError(f"the payload is a JSON {type(payload).__name__}, not an object")
    return payload


def _utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PayloadError(f"the body is not UTF-8: {error}") from error


# ---------------------------------------------------------------- routing


@dataclass(frozen=True)
class Route:
    """Where a push goes: the target block's name and its environment."""

    target: str
    environment: str


def event_id(delivery: str, target: str = "") -> str:
    """The event id of a delivery (of its event for ``target`` when one delivery routes to several targets)."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{delivery}/{target}" if target else delivery))


def configured_repositories(targets: Mapping[str, StackTarget]) -> frozenset[str]:
    """The repositories (lower-cased ``owner/name``) the targets name: their sources and stack repositories."""
    names = set()
    for target in targets.values():
        names.add(target.stack_repository.lower())
        names.update(source.repository.lower() for source in target.sources.values())
    return frozenset(names)


def route_push(targets: Mapping[str, StackTarget], repository: str, ref_kind: str, name: str) -> list[Route]:
    """The targets a push deploys to, in the order given.

    A branch push whose repository and branch are one of a non-production target's ``sources`` goes to that target;
    a tag push on a production target's ``stack_repository`` whose tag fullmatches its ``tag_pattern`` goes to that
    target. Anything else goes nowhere (an empty list).
    """
    repository = repository.lower()
    routes = []
    for block_name, target in targets.items():
        if ref_kind == "branch" and not target.production:
            hit = any(
                source.repository.lower() == repository and source.branch == name for source in target.sources.values()
            )
        elif ref_kind == "tag" and target.production:
            hit = target.stack_repository.lower() == repository and re.fullmatch(target.tag_pattern, name) is not None
        else:
            hit = False
        if hit:
            routes.append(Route(target=block_name, environment=target.environment))
    return routes


def source_of(targets: Mapping[str, StackTarget], repository: str, ref_kind: str, name: str) -> str:
    """Which configured source a push is on: ``frontend``, ``backend``, ``stack`` or ``none``.

    A branch push: the source whose repository and branch it is (in any target). A tag push: the source whose
    repository it is (a tag is on no branch), the stack repository being ``stack``.
    """
    repository = repository.lower()
    for target in targets.values():
        for key, source in target.sources.items():
            if source.repository.lower() == repository and (ref_kind == "tag" or source.branch == name):
                return str(key)
    if ref_kind == "tag" and any(target.stack_repository.lower() == repository for target in targets.values()):
        return "stack"
    return NONE


# ---------------------------------------------------------------- deliveries -> events


@dataclass(frozen=True)
class Translation:
    """What a delivery becomes: the events to post, or why none (``ignored``, logged by the receiver)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    ignored: str | None = None


def translate(
    event: str, delivery: str, payload: Mapping[str, Any], targets: Mapping[str, StackTarget], *, occurred: datetime
) -> Translation:
    """The Prefect events (as the JSON ``POST /events`` takes) for one verified, decoded delivery.

    ``event`` is ``X-GitHub-Event`` and ``delivery`` ``X-GitHub-Delivery``. Raises ``PayloadError`` when a push or
    workflow_run payload lacks a field the vocabulary needs.
    """
    if event == "ping":
        return Translation(ignored="ping")
    if event not in ("push", "workflow_run"):
        return Translation(ignored=f"event type {event!r} is not used")
    repository = _text(_object(payload, "repository"), "full_name")
    if REPOSITORY.fullmatch(repository) is None:
        return Translation(ignored=f"repository {_shown(repository)} is not an owner/name GitHub gives")
    if repository.lower() not in configured_repositories(targets):
        return Translation(ignored=f"repository {repository} is not configured")
    if event == "push":
        return _push(delivery, payload, repository, targets, occurred)
    return _workflow_run(delivery, payload, repository, occurred)


def _push(
    delivery: str,
    payload: Mapping[str, Any],
    repository: str,
    targets: Mapping[str, StackTarget],
    occurred: datetime,
) -> Translation:
    ref = _text(payload, "ref")
    if len(ref) > MAX_REF or any(ch.isspace() or not ch.isprintable() for ch in ref):
        return Translation(ignored=f"ref {_shown(ref)} ({len(ref)} characters) is not one to deploy")
    if _flag(payload, "deleted"):
        return Translation(ignored=f"{ref} deleted")
    if ref.startswith(BRANCH_PREFIX):
        ref_kind, name = "branch", ref.removeprefix(BRANCH_PREFIX)
    elif ref.startswith(TAG_PREFIX):
        ref_kind, name = "tag", ref.removeprefix(TAG_PREFIX)
    else:
        return Translation(ignored=f"{ref} is neither a branch nor a tag")
    head = payload.get("head_commit")
    # an annotated tag's ``after`` is the tag object, ``head_commit`` the commit it points at (a branch's: ``after``)
    sha = _text(head, "id") if isinstance(head, Mapping) else _text(payload, "after")
    if FULL_SHA.fullmatch(sha) is None:
        return Translation(ignored=f"the pushed commit's sha {_shown(sha)} is not 40 hexadecimal digits")
    pusher = payload.get("pusher")
    source = source_of(targets, repository, ref_kind, name)
    routes = route_push(targets, repository, ref_kind, name) or [Route(target="", environment=NONE)]
    events = []
    for route in routes:
        events.append(
            {
                "id": event_id(delivery, route.target if len(routes) > 1 else ""),
                "occurred": occurred.isoformat(),
                "event": PUSH_EVENT,
                "resource": {
                    "prefect.resource.id": f"github.repository.{repository}",
                    "github.repository": repository,
                    "github.ref-kind": ref_kind,
                    "github.ref": name,
                    "fragalysis.source": source,
                    "fragalysis.environment": route.environment,
                },
                "related": [],
                "payload": {
                    "repository": repository,
                    "ref": ref,
                    "ref_kind": ref_kind,
                    "name": name,
                    "source": source,
                    "sha": sha,
                    "tag": name if ref_kind == "tag" else "",
                    "before": _text(payload, "before"),
                    "forced": _flag(payload, "forced"),
                    "pusher": _text(pusher, "name") if isinstance(pusher, Mapping) else "",
                    "delivery": delivery,
                    "environment": route.environment,
                    "target": route.target,
                    "pushed_at": occurred.isoformat(),
                },
            }
        )
    return Translation(events=events)


def _workflow_run(delivery: str, payload: Mapping[str, Any], repository: str, occurred: datetime) -> Translation:
    action = _text(payload, "action")
    run = _object(payload, "workflow_run")
    conclusion = run.get("conclusion")
    if conclusion is not None and not isinstance(conclusion, str):
        raise PayloadError("workflow_run.conclusion must be a string or null")
    head_branch = run.get("head_branch")
    if head_branch is not None and not isinstance(head_branch, str):
        raise PayloadError("workflow_run.head_branch must be a string or null")
    workflow = _text(run, "name")
    head_sha = _text(run, "head_sha")
    if FULL_SHA.fullmatch(head_sha) is None:
        return Translation(ignored=f"the run's head_sha {_shown(head_sha)} is not 40 hexadecimal digits")
    return Translation(
        events=[
            {
                "id": event_id(delivery),
                "occurred": occurred.isoformat(),
                "event": WORKFLOW_RUN_EVENT,
                "resource": {
                    "prefect.resource.id": f"github.repository.{repository}",
                    "github.repository": repository,
                    "github.workflow": workflow,
                    "github.action": action,
                    "github.conclusion": conclusion or NONE,
                },
                "related": [],
                "payload": {
                    "repository": repository,
                    "workflow": workflow,
                    "action": action,
                    "run_id": _integer(run, "id"),
                    "run_attempt": _integer(run, "run_attempt", default=1),
                    "head_sha": head_sha,
                    "head_branch": head_branch or "",
                    "event": _text(run, "event"),
                    "status": _text(run, "status"),
                    "conclusion": conclusion or "",
                    "html_url": _text(run, "html_url"),
                    "delivery": delivery,
                },
            }
        ]
    )


# ---------------------------------------------------------------- typed reads of the payload


def _shown(value: str, limit: int = 48) -> str:
    """A value as an ignore reason quotes it: repr, cut (a refused value may be 25 MB)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _object(payload: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = payload.get(key)
    if not isinstance(value, Mapping):
        raise PayloadError(f"{key!r} must be an object")
    return value


def _text(payload: Mapping[str, Any] | None, key: str) -> str:
    value = payload.get(key) if isinstance(payload, Mapping) else None
    if not isinstance(value, str):
        raise PayloadError(f"{key!r} must be a string")
    return value


def _integer(payload: Mapping[str, Any], key: str, *, default: int | None = None) -> int:
    value = payload.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PayloadError(f"{key!r} must be an integer")
    return value


def _flag(payload: Mapping[str, Any], key: str) -> bool:
    value = payload.get(key, False)
    if not isinstance(value, bool):
        raise PayloadError(f"{key!r} must be a boolean")
    return value
