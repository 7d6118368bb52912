"""The github emulator (to be built: see issue 2)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from sandbox.runtime import Emulator


class GitHubEmulator(Emulator):
    name = "github"

    def routes(self) -> list[BaseRoute]:
        return []

    async def push(self, repository: str, ref: str, *, sha: str | None = None, message: str = "") -> str:
        raise NotImplementedError("the GitHub emulator is not built yet")
