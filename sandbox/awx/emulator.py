"""The AWX emulator: job templates from the scenario, jobs that run the templates' playbooks against the
Kubernetes emulator's HTTP API, and AWX's REST API v2 under a configurable base path (FACTS.md)."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, WebSocketRoute

from sandbox.awx import models
from sandbox.awx.api import HEADERS, AwxApi
from sandbox.awx.jobs import JobRunner
from sandbox.awx.models import Organization, Template
from sandbox.awx.output import stdout_range
from sandbox.awx.playbooks import Kube
from sandbox.awx.websocket import PATH as WEBSOCKET_PATH
from sandbox.awx.websocket import AwxWebsocket
from sandbox.emulator import Emulator, Runtime

KUBE_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class AwxEmulator(Emulator):
    """AWX (API v2). In-process use (on the sandbox's loop, e.g. through ``Sandbox.call``): ``templates()``,
    ``jobs()``, ``job(id)``, ``stdout(id)``, ``launch(name, extra_vars)``."""

    name = "awx"

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        scenario = runtime.scenario.awx
        now = runtime.clock.now()
        names = list(dict.fromkeys([*scenario.organizations, *(t.organization for t in scenario.templates)]))
        self.organizations = [Organization(id=index, name=name) for index, name in enumerate(names, 1)]
        by_name = {org.name: org for org in self.organizations}
        self.templates = [
            Template(id=index, spec=spec, organization=by_name[spec.organization], created=now)
            for index, spec in enumerate(scenario.templates, 1)
        ]
        self._kube_client: httpx.AsyncClient | None = None
        self.websocket = AwxWebsocket(lambda connection: self.api.user_id(connection))
        self.runner = JobRunner(
            runtime,
            self._kube,
            on_status=self.websocket.status_changed,
            on_events_processed=self.websocket.events_processed,
        )
        self.api = AwxApi(self)

    def routes(self) -> list[BaseRoute]:
        return [*self.api.routes(), WebSocketRoute(WEBSOCKET_PATH, self.websocket.endpoint)]

    def exception_handlers(self) -> dict[Any, Any]:
        return self.api.exception_handlers()

    def fault_response(self, status: int, message: str, headers: dict[str, str]) -> Response:
        # AWX (Django REST Framework) errors are {"detail": ...}
        return JSONResponse({"detail": message}, status_code=status, headers={**HEADERS, **headers})

    async def start(self) -> None:
        token = self.runtime.scenario.kubernetes.token
        self._kube_client = httpx.AsyncClient(
            base_url=self.runtime.urls["kubernetes"],
            headers={"Authorization": f"Bearer {token}", "User-Agent": "awx-sandbox-ansible/kubernetes.core"},
            timeout=KUBE_TIMEOUT,
            verify=self.runtime.verify,
        )

    async def stop(self) -> None:
        self.websocket.close_all()
        await self.runner.stop()
        if self._kube_client is not None:
            await self._kube_client.aclose()
            self._kube_client = None

    def _kube(self) -> Kube:
        if self._kube_client is None:
            raise RuntimeError("the AWX emulator is not started")
        return Kube(self._kube_client)

    # ------------------------------------------------------------ in-process API (call on the sandbox's loop)

    def template(self, name: str, organization: str | None = None) -> Template | None:
        return next((t for t in self.templates if t.name == name and organization in (None, t.organization.name)), None)

    def template_list(self) -> list[dict[str, Any]]:
        """Every template as ``GET job_templates/<id>/`` shows it."""
        return [self.api.template_json(t) for t in self.templates]

    def jobs(self) -> list[dict[str, Any]]:
        """Every job as ``GET jobs/<id>/`` shows it, oldest first."""
        return [models.job_json(job, self.api.urls) for job in self.runner.jobs.values()]

    def job(self, job_id: int) -> dict[str, Any]:
        """One job as ``GET jobs/<id>/`` shows it; ``KeyError`` when there is none."""
        return models.job_json(self.runner.jobs[job_id], self.api.urls)

    def stdout(self, job_id: int) -> str:
        """The job's output so far, as ``stdout/?format=txt``."""
        return stdout_range(self.runner.jobs[job_id].lines, None, None)[0]

    def events(self, job_id: int) -> list[dict[str, Any]]:
        job = self.runner.jobs[job_id]
        return [models.event_json(event, job, self.api.urls) for event in job.events]

    def launch(self, name: str, extra_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        """Launch as ``POST job_templates/<id>/launch/`` would; ``LaunchError`` for a 400, ``KeyError`` for no
        such template. Returns the launch response body."""
        tpl = self.template(name)
        if tpl is None:
            raise KeyError(name)
        job, ignored = self.runner.launch(tpl, {"extra_vars": extra_vars or {}})
        return models.launched_json(job, ignored, self.api.urls)
