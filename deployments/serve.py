"""``fragalysis-cd serve``: everything that starts deployments, in one command that stops it all on Ctrl-C/SIGTERM.

- the Prefect server (``prefect server start``, project-local ``PREFECT_HOME``; embedded SQLite unless
  ``PREFECT_API_DATABASE_CONNECTION_URL`` says otherwise: the environment is passed through),
- the deployments of prefect.yaml, served (``python -m deployments.serving --all`` in a child process, with their
  triggers as automations and their schedules, the poller's included),
- the approval-timeout automation of the production deployment (from its StackTarget block),
- the GitHub webhook receiver (``deployments/receiver.py``), routing for the StackTarget blocks named by ``--targets``.

With ``PREFECT_SERVER_API_AUTH_STRING`` set, the server requires it and every client started here (this process,
the runner and its flow runs, the receiver) sends it as ``PREFECT_API_AUTH_STRING``.

``--sandbox --state-dir DIR`` does the same against a sandbox in orchestrate mode whose GitHub delivers signed
webhooks to the receiver, saves the ``staging`` and ``production`` blocks pointing at it, and writes
``DIR/endpoints.json`` (as ``python -m sandbox`` does, plus ``prefect.api_url`` and ``receiver.url``), so that
``python -m sandbox push xchem/fragalysis-frontend staging --state-dir DIR`` starts a staging deploy.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, cast

from deployments import arguments
from deployments.prefect_server import SERVER_AUTH, LocalPrefectServer

# nothing here imports prefect at the top: its settings are read from the environment when it is first imported
ROOT = Path(__file__).resolve().parents[1]

logger = logging.getLogger("fragalysis-cd.serve")

DEFAULT_RECEIVER_PORT = 4280
DEFAULT_POLL_SECONDS = 1.0
"""How often the runner asks for runs to start (Prefect's default is 10 s: FACTS.md's latency)."""


class Stopped(BaseException):
    """SIGTERM (or SIGINT) arrived: unwind, stopping what was started."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fragalysis-cd serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=Path(".prefect"), help="PREFECT_HOME (default .prefect)")
    parser.add_argument("--port", type=arguments.port, default=4200, help="the Prefect server's port (default 4200)")
    parser.add_argument("--receiver-host", default="127.0.0.1", help="the webhook receiver's address (loopback)")
    parser.add_argument(
        "--receiver-port", type=arguments.port, default=DEFAULT_RECEIVER_PORT, help="its port (0: a free one)"
    )
    parser.add_argument(
        "--targets",
        type=arguments.block_names,
        default=["staging", "production"],
        help="the StackTarget blocks the receiver routes pushes for (default staging,production)",
    )
    parser.add_argument(
        "--poll",
        type=arguments.positive_number,
        default=DEFAULT_POLL_SECONDS,
        help="seconds between the runner's queries for runs to start (PREFECT_RUNNER_POLL_FREQUENCY; Prefect's "
        "default is 10)",
    )
    parser.add_argument(
        "--limit", type=arguments.positive_integer, help="flow runs at once (python -m deployments.serving's default)"
    )
    parser.add_argument("--sandbox", action="store_true", help="against a sandbox (orchestrate mode), started here")
    parser.add_argument("--state-dir", type=Path, default=Path(".sandbox"), help="with --sandbox: its state files")
    parser.add_argument(
        "--speed", type=arguments.positive_number, default=60.0, help="with --sandbox: its speed (default 60)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    targets: list[str] = args.targets
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the receiver logs each delivery itself

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stopped(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    server = LocalPrefectServer(args.home.resolve(), port=args.port)
    # the receiver and the blocks are used from this process: point Prefect at the server before it is imported
    os.environ.update(server.environment())
    try:
        with ExitStack() as stack:
            try:
                _run(args, targets, server, stack)
            finally:
                _ignore_signals()  # what is being stopped (last started, first stopped) is not interrupted again
                logger.info("stopping what serve started (receiver, served deployments, sandbox, server) ...")
    except Stopped as signalled:
        print(f"{signalled}: stopped.", flush=True)
        return 0
    return 0


def _run(args: argparse.Namespace, targets: list[str], server: LocalPrefectServer, stack: ExitStack) -> None:
    logger.info("starting the Prefect server (%s, PREFECT_HOME=%s) ...", server.ui_url, args.home)
    if os.environ.get(SERVER_AUTH):
        logger.info("its API requires %s (the clients started here send it)", SERVER_AUTH)
    else:
        logger.warning("its API is open to whoever reaches it: set %s to protect the blocks' secrets", SERVER_AUTH)
    stack.callback(server.stop)
    if not server.start():
        logger.info("a Prefect server already answers on port %s: using it (it keeps running after serve)", server.port)
    receiver_port = args.receiver_port or _free_port(args.receiver_host)
    receiver_url = f"http://{args.receiver_host}:{receiver_port}/"
    endpoints: dict[str, Any] | None = None
    if args.sandbox:
        endpoints = stack.enter_context(_sandbox(args, receiver_url + "github"))
    stack.callback(_flush_to_server)
    serving = stack.enter_context(served(server, poll=args.poll, limit=args.limit, log=args.home / "serving.log"))
    logger.info("serving the deployments of prefect.yaml (runner log: %s) ...", serving.log)
    deployments = serving.wait_for_deployments()
    logger.info("served: %s", ", ".join(sorted(deployments)))
    _approval_timeouts(deployments)
    _overdue_automations(deployments)
    receiver = stack.enter_context(_receiver(targets, server, args.receiver_host, receiver_port))
    if receiver is not None:
        print(f"Webhook receiver at {receiver.url}github (GitHub's payload URL), routing for {', '.join(targets)}.")
    if endpoints is not None and receiver is not None:
        endpoints["prefect"] = {"api_url": server.api_url, "ui_url": server.ui_url}
        endpoints["receiver"] = {"url": receiver.url}
        _write_endpoints(args.state_dir / "endpoints.json", endpoints)
        print(f"Sandbox endpoints in {args.state_dir / 'endpoints.json'}; try:")
        print(f"  python -m sandbox push xchem/fragalysis-frontend staging --state-dir {args.state_dir}")
        print(f"  python -m sandbox push xchem/fragalysis-stack refs/tags/1.0.3 --state-dir {args.state_dir}")
    print(f"Prefect UI: {server.ui_url}. Ctrl-C stops everything.", flush=True)
    serving.wait()
    raise SystemExit(f"the serving process exited with {serving.returncode}: see {serving.log}")


class ServingProcess:
    """``python -m deployments.serving ARGS`` in its own process group (its flow runs are in it too), so that
    ``stop`` leaves nothing behind: SIGTERM to the runner (it cancels its runs), then SIGKILL to the group."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.args = list(args)
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def start(self) -> ServingProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "deployments.serving", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def wait_for_deployments(self, timeout: float = 180.0) -> dict[str, Any]:
        """The served deployments' ids by ``flow/deployment`` name, once they and their automations exist."""
        from prefect.client.orchestration import get_client

        from deployments.definitions import read_definitions

        expected = {entry["name"]: len(entry.get("triggers") or []) for entry in read_definitions()}
        automations = {f"{name}__automation_{i}" for name, count in expected.items() for i in range(1, count + 1)}
        deadline = time.monotonic() + timeout
        with get_client(sync_client=True) as client:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"the serving process exited with {self.process.returncode}: see {self.log}")
                found = {}
                for deployment in client.read_deployments():
                    if deployment.name in expected:
                        found[f"{client.read_flow(deployment.flow_id).name}/{deployment.name}"] = deployment.id
                made = {a.name for a in client.read_automations()}
                if len(found) == len(expected) and automations <= made:
                    return found
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the served deployments did not appear within {timeout:.0f} s: see {self.log}")
                time.sleep(0.5)

    def stop(self, grace: float = 20.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # whatever is left of the group (a flow run slow to stop): killed
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


@contextmanager
def served(
    server: LocalPrefectServer, *, poll: float, limit: int | None, log: Path, args: Sequence[str] = ("--all",)
) -> Iterator[ServingProcess]:
    """The deployments served against ``server`` in a child process, stopped on the way out."""
    env = {**os.environ, **server.environment(), "PREFECT_RUNNER_POLL_FREQUENCY": f"{poll:g}"}
    extra = ["--limit", str(limit)] if limit is not None else []
    serving = ServingProcess([*args, *extra], env, log).start()
    try:
        yield serving
    finally:
        serving.stop()


@contextmanager
def _sandbox(args: argparse.Namespace, webhook_url: str) -> Iterator[dict[str, Any]]:
    """The sandbox delivering signed webhooks to the receiver, and the staging and production blocks for it."""
    from blocks import Mode
    from deployments.sandbox_target import save_sandbox_blocks
    from deployments.sandboxed import orchestrate_sandbox

    secret = secrets.token_hex(20)
    with orchestrate_sandbox(args.speed, args.state_dir, webhook_url=webhook_url, webhook_secret=secret) as (
        _,
        endpoints,
    ):
        for environment in ("staging", "production"):
            save_sandbox_blocks(endpoints, environment=environment, mode=Mode.ORCHESTRATE)
        logger.info("sandbox at speed %g, delivering webhooks to %s", args.speed, webhook_url)
        yield endpoints


@contextmanager
def _receiver(targets: list[str], server: LocalPrefectServer, host: str, port: int) -> Iterator[Any]:
    """The receiver for the StackTarget blocks that exist; None (with the reason logged) when it cannot route or
    verify anything yet: the server and the deployments keep running, so the blocks can be saved, then serve
    restarted."""
    from blocks import StackTarget
    from deployments.receiver import Receiver, ReceiverConfigError

    loaded = {}
    for name in targets:
        try:
            loaded[name] = cast(StackTarget, StackTarget.load(name))
        except ValueError:  # Prefect's answer for a block that does not exist
            logger.warning("no StackTarget block %r: the receiver routes nothing to it", name)
    if not loaded:
        logger.warning("no webhook receiver: none of the StackTarget blocks %s exists (README: Serving)", targets)
        yield None
        return
    auth = os.environ.get("PREFECT_API_AUTH_STRING")
    try:
        receiver = Receiver(loaded, api_url=server.api_url, auth_string=auth, host=host, port=port)
    except ReceiverConfigError as error:
        logger.warning("no webhook receiver: %s", error)
        yield None
        return
    with receiver:
        yield receiver


def _approval_timeouts(deployments: dict[str, Any]) -> None:
    """The production deployment's approval-timeout automation, from its target's ``approval_timeout_seconds``."""
    from blocks import StackTarget
    from deployments.definitions import definition
    from flows.approval import ensure_timeout_automation

    deployment_id = deployments.get("deploy-to-production/production")
    if deployment_id is None:
        return
    name = definition("production").get("parameters", {}).get("target", "production")
    try:
        target = cast(StackTarget, StackTarget.load(name))
    except ValueError:
        logger.warning("no StackTarget block %r: the production deployment has no approval timeout", name)
        return
    ensure_timeout_automation(deployment_id, target.approval_timeout_seconds)


def _overdue_automations(deployments: dict[str, Any]) -> None:
    """Each deploying deployment's overdue automation, from its target's total budget (and notification block)."""
    from blocks import StackTarget
    from deployments.automations import ensure_overdue_automation
    from deployments.definitions import definition

    for name, full_name in (
        ("staging", "deploy-to-staging/staging"),
        ("production", "deploy-to-production/production"),
    ):
        deployment_id = deployments.get(full_name)
        if deployment_id is None:
            continue
        block = definition(name).get("parameters", {}).get("target", name)
        try:
            target = cast(StackTarget, StackTarget.load(block))
            ensure_overdue_automation(deployment_id, target)
        except ValueError as error:
            logger.warning("no overdue automation for %s: %s", full_name, error)
            continue
        logger.info(
            "%s is overdue after %.0f s running (the %s block's total budget)", full_name, target.budgets.total, block
        )


def _write_endpoints(path: Path, endpoints: dict[str, Any]) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(json.dumps(endpoints, indent=2) + "\n")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _flush_to_server() -> None:
    """Send the logs and events still queued in this process before the server goes away."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)


def _ignore_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
