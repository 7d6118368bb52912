"""AWX's REST API v2 over the emulator's state: routes, authentication, OPTIONS metadata and error bodies.

Errors are Django REST Framework's: ``{"detail": "..."}`` for 401/404/405 and parse errors, field errors for a
bad launch. 401 bodies carry AWX's hint about ``/api/login/`` and ``WWW-Authenticate: Bearer realm=api``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.awx import models
from sandbox.awx.jobs import JobRunner, LaunchError
from sandbox.awx.login import Sessions
from sandbox.awx.models import AWX_VERSION, Job, Organization, Template, Urls
from sandbox.awx.output import colour, stdout_range
from sandbox.awx.query import QueryError, filter_items, order_items, paginate, query_params
from sandbox.emulator import Runtime

Handler = Callable[[Request], Awaitable[Response]]

NOT_PROVIDED = "Authentication credentials were not provided."
LOGIN_HINT = " To establish a login session, visit /api/login/."
HEADERS = {"X-API-Product-Name": "AWX", "X-API-Product-Version": AWX_VERSION, "X-API-Node": "awx-sandbox"}


def detail(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers={**HEADERS, **(headers or {})})


def not_found() -> JSONResponse:
    return detail("Not found.", 404)


def method_not_allowed(method: str) -> JSONResponse:
    return detail(f'Method "{method}" not allowed.', 405)


def ok(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers={**HEADERS, **(headers or {})})


def _field(kind: str, label: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "label": label, "help_text": "", "filterable": True, **extra}


# OPTIONS metadata: awxkit builds its command-line flags from these (every field needs a "type")
LIST_FIELDS: dict[str, dict[str, dict[str, Any]]] = {
    "job_templates": {
        "id": _field("integer", "ID"),
        "name": _field("string", "Name"),
        "description": _field("string", "Description"),
        "organization": _field("id", "Organization"),
        "playbook": _field("string", "Playbook"),
        # UnifiedJobTemplate.JOB_TEMPLATE_STATUS_CHOICES: the job statuses and "never updated"
        "status": _field(
            "choice",
            "Status",
            choices=[[s.value, s.value.capitalize()] for s in models.JobStatus] + [["never updated", "Never Updated"]],
        ),
        "ask_variables_on_launch": _field("boolean", "Prompt for variables"),
        "allow_simultaneous": _field("boolean", "Allow simultaneous"),
    },
    "jobs": {
        "id": _field("integer", "ID"),
        "name": _field("string", "Name"),
        "status": _field("choice", "Status", choices=[[s.value, s.value.capitalize()] for s in models.JobStatus]),
        "job_template": _field("id", "Job template"),
        "failed": _field("boolean", "Failed"),
        "launch_type": _field("string", "Launch type"),
    },
    "organizations": {"id": _field("integer", "ID"), "name": _field("string", "Name")},
}
LAUNCH_FIELDS = {
    "extra_vars": {"type": "json", "required": False, "label": "Extra vars", "help_text": ""},
    "inventory": {"type": "id", "required": False, "label": "Inventory", "help_text": ""},
    "limit": {"type": "string", "required": False, "label": "Limit", "help_text": ""},
    "job_tags": {"type": "string", "required": False, "label": "Job tags", "help_text": ""},
    "skip_tags": {"type": "string", "required": False, "label": "Skip tags", "help_text": ""},
    "job_type": {
        "type": "choice",
        "required": False,
        "label": "Job type",
        "help_text": "",
        "choices": [["run", "Run"], ["check", "Check"]],
    },
    "verbosity": {
        "type": "choice",
        "required": False,
        "label": "Verbosity",
        "help_text": "",
        "choices": [[0, "0 (Normal)"], [1, "1 (Verbose)"], [2, "2 (More Verbose)"], [3, "3 (Debug)"]],
    },
    "diff_mode": {"type": "boolean", "required": False, "label": "Diff mode", "help_text": ""},
}


class ApiHost(Protocol):
    """What the HTTP face needs of its emulator (``AwxEmulator`` is one)."""

    runtime: Runtime
    organizations: list[Organization]
    templates: list[Template]
    runner: JobRunner


class AwxApi:
    """The HTTP face of one ``AwxEmulator``."""

    def __init__(self, emulator: ApiHost) -> None:
        self.emulator = emulator
        scenario = emulator.runtime.scenario.awx
        self.urls = Urls(scenario.base_path if scenario.base_path.startswith("/") else "/" + scenario.base_path)
        base = self.urls.base
        # the versions root is the base path's parent: /api/ for /api/v2/, /api/controller/ for /api/controller/v2/
        self.root = base[: base.rstrip("/").rfind("/") + 1]
        self.installed = emulator.runtime.clock.now()
        """When the objects that come with the install (the execution environments) were created."""
        self.sessions = Sessions(scenario.username, scenario.password, self.root)

    # ------------------------------------------------------------ routes

    def routes(self) -> list[BaseRoute]:
        b = self.urls.base
        public: list[BaseRoute] = [
            Route(self.root, self.versions, methods=["GET"]),
            Route(b, self.v2_root, methods=["GET"]),
            Route(b + "ping/", self.ping, methods=["GET"]),
            Route(self.root + "login/", self.sessions.login, methods=["GET", "POST"]),
        ]
        private: list[tuple[str, Handler, list[str]]] = [
            ("config/", self.config, ["GET"]),
            ("me/", self.me, ["GET"]),
            ("organizations/", self.organizations, ["GET", "OPTIONS"]),
            ("organizations/{id:int}/", self.organization, ["GET", "OPTIONS"]),
            ("job_templates/", self.job_templates, ["GET", "OPTIONS"]),
            ("job_templates/{id:int}/", self.job_template, ["GET", "OPTIONS"]),
            ("job_templates/{id:int}/launch/", self.launch, ["GET", "POST", "OPTIONS"]),
            ("job_templates/{id:int}/jobs/", self.template_jobs, ["GET", "OPTIONS"]),
            ("jobs/", self.jobs, ["GET", "OPTIONS"]),
            ("execution_environments/", self.execution_environments, ["GET"]),
            ("execution_environments/{id:int}/", self.execution_environment, ["GET"]),
            ("jobs/{id:int}/", self.job, ["GET", "OPTIONS"]),
            ("jobs/{id:int}/stdout/", self.stdout, ["GET"]),
            ("jobs/{id:int}/job_events/", self.job_events, ["GET", "OPTIONS"]),
            ("jobs/{id:int}/cancel/", self.cancel, ["GET", "POST", "OPTIONS"]),
            ("job_events/{id:int}/", self.job_event, ["GET"]),
        ]
        return public + [
            Route(b + path, self._authenticated(handler), methods=methods) for path, handler, methods in private
        ]

    def exception_handlers(self) -> dict[Any, Callable[..., Any]]:
        async def http_error(request: Request, exc: Exception) -> Response:
            status = exc.status_code if isinstance(exc, HTTPException) else 500
            if status == 405:
                return method_not_allowed(request.method)
            if status == 404:
                return not_found()
            return detail(getattr(exc, "detail", "A server error occurred."), status)

        return {HTTPException: http_error}

    # ------------------------------------------------------------ authentication

    def _authenticated(self, handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            problem = self._auth_problem(request)
            if problem is not None:
                return detail(
                    problem + LOGIN_HINT,
                    401,
                    {"WWW-Authenticate": "Bearer realm=api authorization_url=/api/o/authorize/"},
                )
            return await handler(request)

        return wrapped

    def user_id(self, connection: HTTPConnection) -> int | None:
        """The user a websocket handshake authenticates as: a login session, or the REST API's credentials."""
        if self.sessions.user(connection) is not None or self._auth_problem(connection) is None:
            return models.USER_ID
        return None

    def _auth_problem(self, request: HTTPConnection) -> str | None:
        scenario = self.emulator.runtime.scenario.awx
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer":
            # an unknown OAuth2 token authenticates nobody, so DRF reports missing credentials
            return None if credentials.strip() == scenario.token else NOT_PROVIDED
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return "Invalid basic header. Credentials not correctly base64 encoded."
            if (user, password) == (scenario.username, scenario.password):
                return None
            return "Invalid username/password."
        return NOT_PROVIDED

    # ------------------------------------------------------------ roots

    async def versions(self, request: Request) -> Response:
        base = self.urls.base
        return ok(
            {
                "description": "AWX REST API",
                "current_version": base,
                "available_versions": {"v2": base},
                "oauth2": self.root + "o/",
                "custom_logo": "",
                "custom_login_info": "",
                "login_redirect_override": "",
            }
        )

    async def v2_root(self, request: Request) -> Response:
        names = ["ping", "config", "me", "organizations", "job_templates", "jobs", "execution_environments"]
        return ok({name: self.urls(name) for name in names})

    async def ping(self, request: Request) -> Response:
        return ok(
            {
                "ha": False,
                "version": AWX_VERSION,
                "active_node": "awx-sandbox",
                "install_uuid": "00000000-0000-4000-8000-00000000a3c5",
                "instances": [
                    {"node": "awx-sandbox", "node_type": "hybrid", "uuid": "00000000-0000-4000-8000-000000000001",
                     "heartbeat": None, "capacity": 100, "version": AWX_VERSION}
                ],
                "instance_groups": [{"name": "default", "capacity": 100, "instances": ["awx-sandbox"]}],
            }
        )  # fmt: skip

    async def config(self, request: Request) -> Response:
        return ok(
            {
                "time_zone": "UTC",
                "license_info": {"license_type": "open", "valid_key": True, "product_name": "AWX"},
                "version": AWX_VERSION,
                "eula": "",
                "analytics_status": "off",
                "become_methods": [["sudo", "Sudo"]],
                "project_base_dir": "/var/lib/awx/projects",
                "project_local_paths": [],
                "custom_virtualenvs": [],
            }
        )

    async def me(self, request: Request) -> Response:
        scenario = self.emulator.runtime.scenario.awx
        user = {
            "id": 1,
            "type": "user",
            "url": self.urls("users", 1),
            "related": {},
            "summary_fields": {},
            "username": scenario.username,
            "first_name": "",
            "last_name": "",
            "email": "",
            "is_superuser": True,
            "is_system_auditor": False,
        }
        return ok({"count": 1, "next": None, "previous": None, "results": [user]})

    # ------------------------------------------------------------ lists and objects

    def _options(self, resource: str, name: str, methods: str) -> Response:
        fields = LIST_FIELDS.get(resource, {})
        body = {
            "name": name,
            "description": "",
            "renders": ["application/json", "text/html"],
            "parses": ["application/json"],
            "actions": {"GET": fields},
            "types": [resource.rstrip("s")],
        }
        return ok(body, headers={"Allow": methods})

    def _list(self, request: Request, items: list[dict[str, Any]], default_order: str) -> Response:
        params = query_params(request.url.query)
        try:
            selected = filter_items(items, params)
            selected = order_items(selected, dict(params).get("order_by"), default_order)
            page = paginate(selected, request.url.path, params)
        except QueryError as error:
            return detail(error.detail, error.status)
        return ok(page)

    async def organizations(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._options("organizations", "Organizations", "GET, HEAD, OPTIONS")
        items = [models.organization_json(org, self.urls) for org in self.emulator.organizations]
        return self._list(request, items, "name")

    async def organization(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._options("organizations", "Organization Detail", "GET, HEAD, OPTIONS")
        org = next((o for o in self.emulator.organizations if o.id == request.path_params["id"]), None)
        return ok(models.organization_json(org, self.urls)) if org else not_found()

    async def job_templates(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            # the sandbox's templates come from the scenario: no POST (create)
            return self._options("job_templates", "Job Templates", "GET, HEAD, OPTIONS")
        templates = [self.template_json(t, detail=False) for t in self.emulator.templates]
        return self._list(request, templates, "name")

    def _template(self, request: Request) -> Template | None:
        return next((t for t in self.emulator.templates if t.id == request.path_params["id"]), None)

    def template_json(self, tpl: Template, *, detail: bool = True) -> dict[str, Any]:
        """The template as ``GET job_templates/<id>/`` shows it (``detail=False``: as a list shows it)."""
        return models.template_json(tpl, self.urls, list(self.emulator.runner.jobs.values()), detail=detail)

    async def job_template(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._options("job_templates", "Job Template Detail", "GET, HEAD, OPTIONS")
        tpl = self._template(request)
        return ok(self.template_json(tpl)) if tpl else not_found()

    async def launch(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            body = {
                "name": "Job Template Launch",
                "description": "",
                "renders": ["application/json", "text/html"],
                "parses": ["application/json"],
                "actions": {"POST": LAUNCH_FIELDS},
            }
            return ok(body, headers={"Allow": "GET, POST, HEAD, OPTIONS"})
        tpl = self._template(request)
        if tpl is None:
            return not_found()
        if request.method == "GET":
            return ok(models.launch_json(tpl))
        raw = await request.body()
        payload: Any = {}
        if raw.strip():
            try:
                payload = json.loads(raw)
            except ValueError as error:
                return detail(f"JSON parse error - {error}", 400)
        if not isinstance(payload, dict):
            kind = type(payload).__name__
            return ok({"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]}, 400)
        try:
            job, ignored = self.emulator.runner.launch(tpl, payload)
        except LaunchError as error:
            return ok(error.errors, 400)
        launched = models.launched_json(job, ignored, self.urls)
        location = str(request.base_url).rstrip("/") + self.urls("jobs", job.id)
        return ok(launched, 201, {"Location": location})

    async def template_jobs(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._options("jobs", "Job Template Jobs List", "GET, HEAD, OPTIONS")
        tpl = self._template(request)
        if tpl is None:
            return not_found()
        jobs = [j for j in self.emulator.runner.jobs.values() if j.template is tpl]
        return self._list(request, [models.job_json(j, self.urls, view="list") for j in jobs], "id")

    async def jobs(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._options("jobs", "Jobs", "GET, HEAD, OPTIONS")
        jobs = self.emulator.runner.jobs.values()
        return self._list(request, [models.job_json(j, self.urls, view="list") for j in jobs], "id")

    def _job(self, request: Request) -> Job | None:
        return self.emulator.runner.jobs.get(request.path_params["id"])

    async def job(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._options("jobs", "Job Detail", "GET, HEAD, OPTIONS")
        job = self._job(request)
        return ok(models.job_json(job, self.urls)) if job else not_found()

    async def execution_environments(self, request: Request) -> Response:
        items = [models.execution_environment_json(e, self.urls, self.installed) for e in models.EXECUTION_ENVIRONMENTS]
        return self._list(request, items, "name")

    async def execution_environment(self, request: Request) -> Response:
        ee = next((e for e in models.EXECUTION_ENVIRONMENTS if e.id == request.path_params["id"]), None)
        if ee is None:
            return not_found()
        return ok(models.execution_environment_json(ee, self.urls, self.installed))

    async def stdout(self, request: Request) -> Response:
        job = self._job(request)
        if job is None:
            return not_found()
        params = request.query_params
        fmt = params.get("format", "json")
        content, start, end, absolute_end = stdout_range(
            job.lines, _int(params.get("start_line")), _int(params.get("end_line"))
        )
        if fmt == "json":
            return ok({"range": {"start": start, "end": end, "absolute_end": absolute_end}, "content": content})
        if fmt in ("ansi", "ansi_download"):
            content = "".join(colour(line) + "\n" for line in content.splitlines())
        if fmt in ("txt", "ansi"):
            return PlainTextResponse(content, headers=HEADERS)
        if fmt in ("txt_download", "ansi_download"):
            disposition = f'attachment; filename="job_{job.id}.txt"'
            return PlainTextResponse(content, headers={**HEADERS, "Content-Disposition": disposition})
        if fmt == "html":
            escaped = content.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            return Response(f"<pre>{escaped}</pre>", media_type="text/html", headers=HEADERS)
        return not_found()

    async def job_events(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._options("job_events", "Job Job Events List", "GET, HEAD, OPTIONS")
        job = self._job(request)
        if job is None:
            return not_found()
        items = [models.event_json(event, job, self.urls) for event in list(job.events)]
        return self._list(request, items, "counter")

    async def job_event(self, request: Request) -> Response:
        for job in self.emulator.runner.jobs.values():
            for event in job.events:
                if event.id == request.path_params["id"]:
                    return ok(models.event_json(event, job, self.urls))
        return not_found()

    async def cancel(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return ok({"name": "Job Cancel", "actions": {}}, headers={"Allow": "GET, POST, HEAD, OPTIONS"})
        job = self._job(request)
        if job is None:
            return not_found()
        if request.method == "GET":
            return ok({"can_cancel": job.status.can_cancel})
        # GenericCancelView: 202 when it can be canceled, otherwise "method not allowed"
        if not self.emulator.runner.cancel(job):
            return method_not_allowed("POST")
        return Response(status_code=202, headers=HEADERS)


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError:
        return None
