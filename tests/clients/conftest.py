"""Fixtures shared by the client tests that run against the sandbox."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clients.github import GitHubClient
from clients.retry import RetryPolicy
from clients.rollout import RolloutClient
from sandbox.runtime import Sandbox

FAST = RetryPolicy(attempts=3, backoff_initial=0.02, backoff_max=0.05, jitter=0.0, max_retry_after=5.0)
"""Quick retries, so that a fault's cost stays small in a test."""


@pytest.fixture
def github_of() -> Iterator[Callable[[Sandbox], GitHubClient]]:
    """``github_of(sandbox)``: a GitHub client for the sandbox's GitHub, with quick retries; closed at the end."""
    made: list[GitHubClient] = []

    def make(sb: Sandbox) -> GitHubClient:
        endpoint = sb.endpoints()["github"]
        made.append(GitHubClient(endpoint["token"], api_url=endpoint["url"], retry=FAST, lost_dispatch_seconds=0.5))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def cluster(make_sandbox: Callable[..., Any], tmp_path: Path) -> Iterator[Callable[..., tuple[Any, RolloutClient]]]:
    """``cluster(speed=..., **faults)``: a sandbox and a RolloutClient built from its kubeconfig file."""
    clients: list[RolloutClient] = []

    def start(speed: float = 1000.0, **faults: Any) -> tuple[Any, RolloutClient]:
        sandbox = make_sandbox(speed=speed, faults=faults or None)
        kubeconfig, _ = sandbox.write_state(tmp_path)
        client = RolloutClient.from_kubeconfig(kubeconfig, context="sandbox", request_timeout=10.0, watch_seconds=5)
        clients.append(client)
        return sandbox, client

    yield start
    for client in clients:
        client.close()
