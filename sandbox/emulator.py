"""What an emulator is and what it may use: the ``Emulator`` base, the ``Runtime`` every emulator shares, and the
``ImageStore`` through which two emulators use a third.

Arrows point one way: ``sandbox.runtime`` composes the emulators and hands each one a ``Runtime`` and the narrow
interfaces it needs (the registry emulator as an ``ImageStore`` to GitHub's builds and the kubelet); an emulator
package imports this module, never ``sandbox.runtime`` nor another emulator package.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ClassVar, Protocol

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from sandbox.clock import Clock
from sandbox.scenario import Faults, Scenario


class Runtime:
    """What every emulator shares: the scenario, the clock, the fault settings (read them when you need them:
    ``/_sandbox/faults`` replaces them at run time), every service's URL, the TLS context that trusts the
    sandbox's CA (``verify=`` of an emulator's requests to another) and the background tasks. Lives on the
    sandbox's loop; touch it from other threads only through ``Sandbox.call``/``Sandbox.run``."""

    def __init__(
        self, scenario: Scenario, clock: Clock, urls: Mapping[str, str], verify: ssl.SSLContext | bool = True
    ) -> None:
        self.scenario = scenario
        self.clock = clock
        self.urls = dict(urls)
        self.verify = verify
        self.faults: Faults = scenario.faults.model_copy(deep=True)
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task[Any]:
        """Start a background task that the sandbox cancels on shutdown."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ImageStore(Protocol):
    """The registry as other emulators use it in-process (the registry emulator implements it)."""

    def push_image(self, name: str, tags: list[str]) -> str:
        """Push a new image under ``tags`` (a build's push); returns its manifest digest."""
        ...

    def resolve(self, image: str) -> str | None:
        """The manifest digest an image reference resolves to now (a kubelet's pull), or None when missing."""
        ...


class Emulator:
    """One emulated service: its routes, its background work, and how it answers an injected fault."""

    name: ClassVar[str]

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def routes(self) -> list[BaseRoute]:
        """The service's API routes."""
        raise NotImplementedError

    def control_routes(self) -> list[BaseRoute]:
        """Extra routes under ``/_sandbox/`` (e.g. GitHub's push)."""
        return []

    def exception_handlers(self) -> dict[Any, Callable[..., Any]]:
        """Starlette exception handlers, so that unknown paths and bad input get the real service's errors."""
        return {}

    def fault_response(self, status: int, message: str, headers: dict[str, str]) -> Response:
        """The answer to an injected 5xx/429, shaped like the real service's."""
        return JSONResponse({"message": message}, status_code=status, headers=headers)

    async def start(self) -> None:
        """Start background work (controllers, schedulers); called on the loop once every server listens."""

    async def stop(self) -> None:
        """Stop background work and end long-lived responses (watches)."""

    @property
    def url(self) -> str:
        return self.runtime.urls[self.name]
