"""The clients of one flow run: one per service, built from the target's blocks, closed at the end."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from blocks import StackTarget

if TYPE_CHECKING:
    from clients.awx import AwxClient
    from clients.github import GitHubClient
    from clients.registry import RegistryClient
    from clients.rollout import RolloutClient


class Services:
    """Lazily built clients for a ``StackTarget`` (a plain class, so Prefect passes it to tasks as it is)."""

    def __init__(self, target: StackTarget) -> None:
        self.target = target

    @cached_property
    def github(self) -> GitHubClient:
        return self.target.github.get_client()

    @cached_property
    def awx(self) -> AwxClient:
        return self.target.awx.get_client()

    @cached_property
    def registry(self) -> RegistryClient:
        return self.target.registry.get_client()

    @cached_property
    def cluster(self) -> RolloutClient:
        return self.target.cluster.get_client()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        for name in ("github", "awx", "registry", "cluster"):
            client = self.__dict__.pop(name, None)
            if client is not None:
                client.close()

    def __repr__(self) -> str:
        return f"Services(environment={self.target.environment!r})"
