"""The kubernetes emulator (to be built: see issue 2)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from sandbox.runtime import Emulator


class KubernetesEmulator(Emulator):
    name = "kubernetes"

    def routes(self) -> list[BaseRoute]:
        return []
