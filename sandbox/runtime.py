"""The sandbox process: four emulators on loopback ports, one asyncio loop, one clock, one scenario.

``Sandbox`` runs the loop in a background thread so that the same object serves the CLI (``python -m sandbox``)
and tests (``with Sandbox(scenario, ports=FREE_PORTS) as sb: ...``). It composes the emulators: each gets the
shared ``Runtime`` (clock, scenario, faults, URLs: ``sandbox.emulator``) and the narrow interfaces it needs of the
others (the registry as an ``ImageStore``); no emulator imports this module or another emulator.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Collection, Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.awx.emulator import AwxEmulator
from sandbox.clock import Clock
from sandbox.emulator import Emulator, Runtime
from sandbox.faults import ExposeTransport, FaultMiddleware
from sandbox.github.emulator import GitHubEmulator
from sandbox.kubernetes.emulator import KubernetesEmulator
from sandbox.registry.emulator import RegistryEmulator
from sandbox.requestlog import RequestLog, RequestLogMiddleware
from sandbox.scenario import Faults, Scenario, load_scenario
from sandbox.tls import Certificates

T = TypeVar("T")

SERVICES = ("github", "awx", "registry", "kubernetes")
DEFAULT_PORTS: Mapping[str, int] = {"github": 8601, "awx": 8602, "registry": 8603, "kubernetes": 8604}
FREE_PORTS: Mapping[str, int] = dict.fromkeys(SERVICES, 0)
ALWAYS_HTTPS = frozenset({"kubernetes"})
"""Served over HTTPS whatever ``tls`` says: a real API server does, and kubectl sends a token only over HTTPS."""
KEEP_ALIVE_SECONDS = 65
"""How long an idle keep-alive connection stays open (AWX's nginx: ``keepalive_timeout 65``)."""


@dataclass(frozen=True)
class Emulators:
    """The four emulators, wired to one another."""

    github: GitHubEmulator
    awx: AwxEmulator
    registry: RegistryEmulator
    kubernetes: KubernetesEmulator

    @classmethod
    def compose(cls, runtime: Runtime) -> Emulators:
        registry = RegistryEmulator(runtime)
        return cls(
            github=GitHubEmulator(runtime, images=registry),
            awx=AwxEmulator(runtime),
            registry=registry,
            kubernetes=KubernetesEmulator(runtime, images=registry),
        )

    def all(self) -> list[Emulator]:
        """Every emulator, in ``SERVICES`` order (the order they start and stop in)."""
        return [getattr(self, name) for name in SERVICES]


class Sandbox:
    """Start with ``start()`` or as a context manager; stop with ``stop()``.

    Args:
        scenario: a ``Scenario``, or the name or path of a scenario file.
        speed: modelled seconds per real second (60: the 15-minute redeploy takes 15 s).
        host: the loopback address to listen on.
        ports: a port per service; 0 picks a free one (``FREE_PORTS`` for tests).
        seed: overrides the scenario's seed for the fault randomness.
        tls: the services that serve HTTPS besides Kubernetes (which always does), with a certificate signed by a
            CA made at start (``SERVICES``: all of them). Clients trust it through ``ca_file``, the kubeconfig's
            ``certificate-authority-data`` or ``ca.pem`` in the state directory.
    """

    def __init__(
        self,
        scenario: Scenario | str = "fragalysis",
        *,
        speed: float = 1.0,
        host: str = "127.0.0.1",
        ports: Mapping[str, int] = DEFAULT_PORTS,
        seed: int | None = None,
        tls: Collection[str] = (),
    ) -> None:
        unknown = set(tls) - set(SERVICES)
        if unknown:
            raise ValueError(f"no such service to serve over TLS: {', '.join(sorted(unknown))}")
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        if seed is not None:
            self.scenario = self.scenario.model_copy(update={"seed": seed})
        self.clock = Clock(speed)
        self.host = host
        self.https = frozenset(tls) | ALWAYS_HTTPS
        """The services served over HTTPS."""
        self.certificates = Certificates.generate(host)
        self._tls_dir = Path(tempfile.mkdtemp(prefix="fragalysis-sandbox-tls-"))
        self._tls_files = self.certificates.write(self._tls_dir)
        self._sockets = {name: _bind(host, ports.get(name, DEFAULT_PORTS[name])) for name in SERVICES}
        url_host = f"[{host}]" if ":" in host else host
        urls = {
            name: f"{'https' if name in self.https else 'http'}://{url_host}:{sock.getsockname()[1]}"
            for name, sock in self._sockets.items()
        }
        self.runtime = Runtime(self.scenario, self.clock, urls, verify=self.certificates.client_context())
        self.rng = random.Random(self.scenario.seed)
        """The fault middleware's randomness (each emulator that needs its own seeds one from the scenario)."""
        self.log = RequestLog()
        self._emulators: Emulators | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30.0) -> Sandbox:
        """Start every emulator and return once each one answers HTTP."""
        self._thread = threading.Thread(target=self._thread_main, name="sandbox", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise TimeoutError(f"the sandbox did not start within {timeout} s")
        if self._error is not None:
            raise RuntimeError(f"the sandbox failed to start: {self._error}") from self._error
        self._wait_until_answering(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for sock in self._sockets.values():
            sock.close()
        shutil.rmtree(self._tls_dir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported to start()
            self._error = error
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        runtime = self.runtime
        emulators = self._emulators = Emulators.compose(runtime)
        servers: list[uvicorn.Server] = []
        serving: list[asyncio.Task[Any]] = []
        for emulator in emulators.all():
            tls = emulator.name in self.https
            config = uvicorn.Config(
                self._app(emulator),
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=2,
                # uvicorn's default of 5 s closed the connection under a client that polls every 5 s (awxkit's
                # --monitor, "Connection reset by peer" when its request met the close)
                timeout_keep_alive=KEEP_ALIVE_SECONDS,
                # AWX serves its websocket (sandbox/awx/websocket.py); uvicorn's sans-I/O websockets protocol
                # is the one that uses no deprecated websockets API
                ws="websockets-sansio" if emulator.name == "awx" else "none",
                ssl_certfile=str(self._tls_files.server) if tls else None,
                ssl_keyfile=str(self._tls_files.server_key) if tls else None,
            )
            server = uvicorn.Server(config)
            servers.append(server)
            name = emulator.name
            serving.append(runtime.spawn(server.serve(sockets=[self._sockets[name]]), name=f"serve-{name}"))
        while not all(server.started for server in servers):
            await asyncio.sleep(0.01)
        for emulator in emulators.all():
            await emulator.start()
        self._ready.set()
        await self._stopped.wait()
        for emulator in emulators.all():
            with contextlib.suppress(Exception):
                await emulator.stop()
        for server in servers:
            server.should_exit = True
        # uvicorn closes idle connections; a TLS one then waits for the client's close_notify, which a client that
        # keeps a pooled connection idle never sends: abort what is left after a moment, as a server's hard stop
        # does (a transport still open when the loop closes is a ResourceWarning later, in whatever runs next)
        await asyncio.wait(serving, timeout=0.3)
        for server in servers:
            for connection in list(server.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()
        await asyncio.wait(serving, timeout=5)
        await runtime.cancel_tasks()

    def _app(self, emulator: Emulator) -> Any:
        control = [
            Route("/_sandbox/health", self._health(emulator), methods=["GET"]),
            Route("/_sandbox/faults", self._faults_endpoint, methods=["GET", "PUT", "PATCH"]),
            Route("/_sandbox/requests", self._requests_endpoint, methods=["GET"]),
            *emulator.control_routes(),
        ]
        app = Starlette(
            routes=control + emulator.routes(),
            exception_handlers=emulator.exception_handlers(),
        )
        runtime = self.runtime
        faulty = FaultMiddleware(
            app,
            settings=lambda: getattr(runtime.faults, emulator.name),
            rng=self.rng,
            respond=emulator.fault_response,
        )
        return ExposeTransport(RequestLogMiddleware(faulty, emulator.name, self.log))

    @staticmethod
    def _health(emulator: Emulator) -> Callable[[Request], Any]:
        async def health(request: Request) -> Response:
            return JSONResponse({"service": emulator.name, "ok": True})

        return health

    async def _faults_endpoint(self, request: Request) -> Response:
        if request.method in ("PUT", "PATCH"):
            try:
                body = await request.json()
                if request.method == "PATCH":
                    body = _deep_merge(self.runtime.faults.model_dump(), body)
                self.runtime.faults = Faults.model_validate(body)
            except ValueError as error:
                return JSONResponse({"message": f"invalid faults: {error}"}, status_code=400)
        return JSONResponse(self.runtime.faults.model_dump())

    async def _requests_endpoint(self, request: Request) -> Response:
        service = request.query_params.get("service")
        return JSONResponse([r.as_dict() for r in self.log.records(service)])

    def _wait_until_answering(self, timeout: float) -> None:
        with httpx.Client(timeout=httpx.Timeout(5.0), verify=self.runtime.verify) as client:
            for name, url in self.urls.items():
                response = client.get(f"{url}/_sandbox/health")
                if response.status_code != 200:
                    raise RuntimeError(f"the {name} emulator at {url} answered {response.status_code}")

    # ------------------------------------------------------------ use from other threads

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run a coroutine on the sandbox's loop and return its result."""
        if self._loop is None:
            raise RuntimeError("the sandbox is not running")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call a plain function on the sandbox's loop (to read or change emulator state safely)."""

        async def wrapper() -> T:
            return fn(*args, **kwargs)

        return self.run(wrapper())

    @property
    def urls(self) -> dict[str, str]:
        return dict(self.runtime.urls)

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What an httpx client passes as ``verify=`` to trust the sandbox's CA (and only it)."""
        return self.runtime.verify

    @property
    def ca_file(self) -> Path:
        """The sandbox CA's certificate (PEM), while the sandbox lives; ``write_state`` copies it as ``ca.pem``."""
        return self._tls_files.ca

    @property
    def emulators(self) -> Emulators:
        if self._emulators is None:
            raise RuntimeError("the sandbox has not started")
        return self._emulators

    @property
    def github(self) -> GitHubEmulator:
        return self.emulators.github

    @property
    def awx(self) -> AwxEmulator:
        return self.emulators.awx

    @property
    def registry(self) -> RegistryEmulator:
        return self.emulators.registry

    @property
    def kubernetes(self) -> KubernetesEmulator:
        return self.emulators.kubernetes

    def requests(self, service: str | None = None) -> list[Any]:
        """The requests served so far (``RequestRecord``s), optionally of one service."""
        return self.log.records(service)

    def set_faults(self, **sections: Any) -> Faults:
        """Merge fault settings, e.g. ``set_faults(github={"error_rate": 0.5}, crashloop=[...])``."""

        def apply() -> Faults:
            merged = _deep_merge(self.runtime.faults.model_dump(), sections)
            self.runtime.faults = Faults.model_validate(merged)
            return self.runtime.faults

        return self.call(apply)

    def push(self, repository: str, ref: str, *, sha: str | None = None, message: str = "") -> str:
        """Push a commit to a branch (``staging``/``refs/heads/staging``) or a tag (``refs/tags/1.0.3``);
        starts the workflows that listen for it. Returns the commit sha."""
        return self.run(self.github.push(repository, ref, sha=sha, message=message))

    # ------------------------------------------------------------ what a user needs

    def endpoints(self, state_dir: Path | None = None) -> dict[str, Any]:
        s = self.scenario
        awx_base = s.awx.base_path if s.awx.base_path.endswith("/") else s.awx.base_path + "/"
        data: dict[str, Any] = {
            "github": {"url": self.urls["github"], "token": s.github.token},
            "awx": {
                "url": self.urls["awx"],
                "api_path": awx_base,
                "token": s.awx.token,
                "username": s.awx.username,
                "password": s.awx.password,
            },
            "registry": {"url": self.urls["registry"]},
            "kubernetes": {"url": self.urls["kubernetes"], "token": s.kubernetes.token},
            "speed": self.clock.speed,
            "scenario": s.name,
        }
        if s.registry.users:
            user, password = next(iter(s.registry.users.items()))
            data["registry"].update({"username": user, "password": password})
        if s.github.webhook.secret:
            data["github"]["webhook_secret"] = s.github.webhook.secret
        ca_file = self.ca_file if state_dir is None else state_dir / "ca.pem"
        for service in self.https:
            data[service]["ca_bundle"] = str(ca_file)
        if state_dir is not None:
            data["kubernetes"]["kubeconfig"] = str(state_dir / "kubeconfig")
        return data

    def kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "sandbox",
                    "cluster": {
                        "server": self.urls["kubernetes"],
                        "certificate-authority-data": base64.b64encode(self.certificates.ca_pem).decode("ascii"),
                    },
                }
            ],
            "users": [{"name": "sandbox", "user": {"token": self.scenario.kubernetes.token}}],
            "contexts": [
                {
                    "name": "sandbox",
                    "context": {"cluster": "sandbox", "user": "sandbox", "namespace": "staging-stack"},
                }
            ],
            "current-context": "sandbox",
            "preferences": {},
        }

    def write_state(self, state_dir: str | Path) -> tuple[Path, Path]:
        """Write ``kubeconfig``, ``endpoints.json`` and the CA's ``ca.pem`` into ``state_dir`` (mode 0600: they hold
        tokens)."""
        directory = Path(state_dir)
        directory.mkdir(parents=True, exist_ok=True)
        kubeconfig = directory / "kubeconfig"
        endpoints = directory / "endpoints.json"
        for path, text in (
            (directory / "ca.pem", self.certificates.ca_pem.decode("ascii")),
            (kubeconfig, yaml.safe_dump(self.kubeconfig(), sort_keys=False)),
            (endpoints, json.dumps(self.endpoints(directory.resolve()), indent=2) + "\n"),
        ):
            path.touch(mode=0o600, exist_ok=True)
            path.chmod(0o600)
            path.write_text(text)
        return kubeconfig, endpoints


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on connections whose socket says TCP, and without it
    # an answer written as headers then body waits for the client's delayed ACK (40 ms on Linux) after the first
    # request of a connection, which no real service does
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror}") from error
    sock.set_inheritable(True)
    return sock


def _deep_merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
