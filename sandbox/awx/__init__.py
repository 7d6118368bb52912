"""The awx emulator (to be built: see issue 2)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from sandbox.runtime import Emulator


class AwxEmulator(Emulator):
    name = "awx"

    def routes(self) -> list[BaseRoute]:
        return []
