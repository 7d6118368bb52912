"""The registry emulator (to be built: see issue 2)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from sandbox.runtime import Emulator


class RegistryEmulator(Emulator):
    name = "registry"

    def routes(self) -> list[BaseRoute]:
        return []
