"""Webhook deliveries as GitHub makes them: a JSON POST signed with HMAC-SHA256 (and the legacy SHA-1) of the raw
body under the hook's secret, with ``X-GitHub-Event``, ``X-GitHub-Delivery`` (a fresh uuid) and ``X-GitHub-Hook-ID``
(FACTS.md "Webhooks").

Deliveries go out one by one in the background, in the order they were made; a failed delivery is logged and
recorded, never raised (GitHub does not retry automatically either).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from sandbox.clock import isoformat
from sandbox.github.state import ACTOR, Commit, RepoState, Run
from sandbox.github.views import node_id, repository_json, run_json, tree_sha, user_json, workflow_json

logger = logging.getLogger(__name__)

HOOK_ID = 451_000_001
USER_AGENT = "GitHub-Hookshot/sandbox"
ZERO_SHA = "0" * 40


def signatures(secret: str, body: bytes) -> dict[str, str]:
    """The ``X-Hub-Signature-256`` and legacy ``X-Hub-Signature`` headers for ``body``."""
    key = secret.encode()
    return {
        "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
        "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
    }


@dataclass
class Delivery:
    """One delivery, kept in memory for tests: what was sent and how the receiver answered."""

    event: str
    guid: str
    payload: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    status: int | None = None
    error: str | None = None
    delivered: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def action(self) -> str | None:
        return self.payload.get("action")


class WebhookSender:
    """Queues and delivers webhooks to one URL (the repository hook of the scenario)."""

    def __init__(self, url: str, secret: str, events: list[str]) -> None:
        self.url = url
        self.secret = secret
        self.events = set(events)
        self.deliveries: list[Delivery] = []
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="github-webhooks")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    def send(self, event: str, payload: dict[str, Any], repo: RepoState) -> Delivery | None:
        """Queue a delivery (None when the hook does not subscribe to ``event``)."""
        if event not in self.events:
            return None
        body = json.dumps(payload, separators=(",", ":")).encode()
        guid = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": guid,
            "X-GitHub-Hook-ID": str(HOOK_ID),
            "X-GitHub-Hook-Installation-Target-Type": "repository",
            "X-GitHub-Hook-Installation-Target-ID": str(repo.id),
            **signatures(self.secret, body),
        }
        delivery = Delivery(event=event, guid=guid, payload=payload, headers=headers, body=body)
        self.deliveries.append(delivery)
        self._queue.put_nowait(delivery)
        return delivery

    async def _work(self) -> None:
        # GitHub gives a receiver 10 s to answer.
        timeout = httpx.Timeout(10.0, connect=5.0)
        async with httpx.AsyncClient(timeout=timeout) as client:
            while True:
                delivery = await self._queue.get()
                try:
                    response = await client.post(self.url, content=delivery.body, headers=delivery.headers)
                    delivery.status = response.status_code
                    if response.status_code >= 300:
                        logger.warning(
                            "webhook %s %s: %s answered %s",
                            delivery.event,
                            delivery.guid,
                            self.url,
                            response.status_code,
                        )
                except httpx.HTTPError as error:
                    delivery.error = f"{type(error).__name__}: {error}"
                    logger.warning("webhook %s %s to %s failed: %s", delivery.event, delivery.guid, self.url, error)
                finally:
                    delivery.delivered.set()


def organization_json(repo: RepoState, api: str) -> dict[str, Any]:
    """The ``organization`` of a delivery about a repository that an organisation owns."""
    url = f"{api}/orgs/{repo.owner}"
    return {
        "login": repo.owner,
        "id": repo.owner_id,
        "node_id": node_id("Organization", repo.owner_id),
        "url": url,
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events",
        "hooks_url": f"{url}/hooks",
        "issues_url": f"{url}/issues",
        "members_url": f"{url}/members{{/member}}",
        "public_members_url": f"{url}/public_members{{/member}}",
        "avatar_url": f"{api}/avatars/u/{repo.owner_id}?v=4",
        "description": None,
    }


def push_payload(
    repo: RepoState, ref: str, before: str | None, commit: Commit, *, forced: bool, api: str
) -> dict[str, Any]:
    """The ``push`` event: one new commit on a branch, or a new tag."""
    login = ACTOR["login"]
    person = {**commit.author, "date": isoformat(commit.date), "username": login}
    head = {
        "id": commit.sha,
        "tree_id": tree_sha(commit),
        "distinct": True,
        "message": commit.message,
        "timestamp": isoformat(commit.date),
        "url": f"{api}/{repo.full_name}/commit/{commit.sha}",
        "author": person,
        "committer": dict(person),
        "added": [],
        "removed": [],
        "modified": [],
    }
    repository = repository_json(repo, api, full=True)
    repository.pop("permissions")
    repository.update(
        {
            # the push event's own repository shape: epoch seconds, and the organisation by name
            "created_at": int(repo.created_at.timestamp()),
            "pushed_at": int(commit.date.timestamp()),
            "organization": repo.owner,
            "master_branch": repo.default_branch,
            "stargazers": 0,
        }
    )
    return {
        "ref": ref,
        "before": before or ZERO_SHA,
        "after": commit.sha,
        "repository": repository,
        "pusher": {"name": login, "email": commit.author["email"]},
        "organization": organization_json(repo, api),
        "sender": user_json(api, ACTOR),
        "created": before is None,
        "deleted": False,
        "forced": forced,
        "base_ref": None,
        "compare": f"{api}/{repo.full_name}/compare/{(before or ZERO_SHA)[:12]}...{commit.sha[:12]}",
        "commits": [] if ref.startswith("refs/tags/") else [head],
        "head_commit": head,
    }


def workflow_run_payload(action: str, run: Run, repo: RepoState, api: str) -> dict[str, Any]:
    """The ``workflow_run`` event (``action``: requested, in_progress, completed)."""
    repository = repository_json(repo, api, full=True)
    repository.pop("permissions")
    return {
        "action": action,
        "workflow_run": run_json(run, repo, api),
        "workflow": workflow_json(run.workflow, repo, api),
        "repository": repository,
        "organization": organization_json(repo, api),
        "sender": user_json(api, run.actor),
    }
