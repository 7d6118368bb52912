"""``python -m sandbox``: run the emulators until Ctrl-C/SIGTERM, or talk to a running sandbox.

python -m sandbox --speed 60 --state-dir .sandbox          # serve (the default command)
python -m sandbox push xchem/fragalysis-frontend staging    # push a commit to a running sandbox
python -m sandbox faults --set awx.error_rate=0.2           # read or change faults at run time
python -m sandbox faults --set kubernetes.error_rate=0.1 --set kubernetes.user_agents=^fragalysis-cd/
                                                            # faults aimed at our clients only (by User-Agent)
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

from sandbox.runtime import DEFAULT_PORTS, SERVICES, Sandbox
from sandbox.scenario import ScenarioError, builtin_scenarios, load_scenario

DEFAULT_STATE_DIR = Path(".sandbox")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the emulators (the default)")
    _serve_arguments(serve)
    _serve_arguments(parser)

    push = sub.add_parser("push", help="push a commit to a branch or tag of a running sandbox")
    push.add_argument("repository", help="e.g. xchem/fragalysis-frontend")
    push.add_argument("ref", help="a branch (staging), refs/heads/staging or refs/tags/1.0.3")
    push.add_argument("--sha", type=_full_sha, help="the commit sha, 40 hex digits (a new one by default)")
    push.add_argument("--message", default="", help="the commit message")
    push.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)

    faults = sub.add_parser("faults", help="show or change the faults of a running sandbox")
    faults.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=JSON",
        help="e.g. github.error_rate=0.3, kubernetes.user_agents=^fragalysis-cd/ (faults only for clients whose "
        'User-Agent matches) or crashloop=\'[{"namespace": "staging-stack"}]\'',
    )
    faults.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    return parser


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        default="fragalysis",
        help=f"a built-in scenario ({', '.join(builtin_scenarios())}) or a YAML file",
    )
    parser.add_argument(
        "--speed",
        type=_positive,
        default=1.0,
        help="modelled seconds per real second (60: the 15-minute redeploy takes 15 s)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where kubeconfig and endpoints.json are written",
    )
    parser.add_argument("--host", default="127.0.0.1")
    for service in SERVICES:
        parser.add_argument(
            f"--{service}-port",
            type=int,
            default=DEFAULT_PORTS[service],
            help=f"default {DEFAULT_PORTS[service]}; 0 picks a free port",
        )
    parser.add_argument("--seed", type=int, help="seed for fault randomness (default: the scenario's)")
    parser.add_argument(
        "--tls",
        action="store_true",
        help="every emulator serves HTTPS (Kubernetes always does), with the CA made at start in STATE_DIR/ca.pem",
    )
    parser.add_argument("--developers", type=int, help="with --scenario developers: how many stacks")


def _full_sha(text: str) -> str:
    if re.fullmatch(r"[0-9a-fA-F]{40}", text) is None:
        shown = text if len(text) <= 48 else text[:45] + "..."
        raise argparse.ArgumentTypeError(f"a commit sha is 40 hexadecimal digits, not {shown!r}")
    return text.lower()


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def serve(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.developers is not None:
        overrides["developer_stacks"] = {"count": args.developers}
    try:
        scenario = load_scenario(args.scenario, **overrides)
    except (ScenarioError, FileNotFoundError) as error:
        print(f"python -m sandbox: {error}", file=sys.stderr)
        return 2
    ports = {service: getattr(args, f"{service}_port") for service in SERVICES}
    tls = SERVICES if args.tls else ()
    sandbox = Sandbox(scenario, speed=args.speed, host=args.host, ports=ports, seed=args.seed, tls=tls)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sandbox.start()
    try:
        kubeconfig, endpoints_file = sandbox.write_state(args.state_dir)
        endpoints = sandbox.endpoints(args.state_dir.resolve())
        print(f"sandbox '{scenario.name}' at speed {args.speed:g} (a modelled minute takes {60 / args.speed:g} s)")
        print(f"  GitHub      {endpoints['github']['url']}   token {endpoints['github']['token']}")
        awx = endpoints["awx"]
        print(
            f"  AWX         {awx['url']}{awx['api_path']}   token {awx['token']}  "
            f"(or {awx['username']}:{awx['password']})"
        )
        registry = endpoints["registry"]
        print(
            f"  registry    {registry['url']}/v2/"
            + (f"   user {registry['username']}:{registry['password']}" if "username" in registry else "")
        )
        print(f"  Kubernetes  {endpoints['kubernetes']['url']}   KUBECONFIG={kubeconfig}")
        print(f"  CA          {args.state_dir / 'ca.pem'} (HTTPS: {', '.join(sorted(sandbox.https))})")
        print(f"  endpoints   {endpoints_file}")
        print("Ctrl-C stops it.", flush=True)
        stop.wait()
    finally:
        print("stopping the sandbox", flush=True)
        sandbox.stop()
    return 0


def _control_client(state_dir: Path, service: str) -> httpx.Client:
    """A client for a running sandbox's control routes on ``service`` (trusting its CA when it serves HTTPS)."""
    path = state_dir / "endpoints.json"
    if not path.is_file():
        raise SystemExit(f"no running sandbox: {path} is missing (start one with python -m sandbox)")
    endpoint = json.loads(path.read_text())[service]
    ca_bundle = endpoint.get("ca_bundle")
    verify = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
    return httpx.Client(base_url=str(endpoint["url"]), verify=verify, timeout=10)


def push(args: argparse.Namespace) -> int:
    body = {"repository": args.repository, "ref": args.ref, "sha": args.sha, "message": args.message}
    with _control_client(args.state_dir, "github") as client:
        response = client.post("/_sandbox/push", json=body)
    print(json.dumps(response.json(), indent=2))
    return 0 if response.is_success else 1


def faults(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    for item in args.set:
        path, _, raw = item.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = changes
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    with _control_client(args.state_dir, "github") as client:
        if changes:
            response = client.patch("/_sandbox/faults", json=changes)
        else:
            response = client.get("/_sandbox/faults")
    print(json.dumps(response.json(), indent=2))
    return 0 if response.is_success else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    return {"serve": serve, "push": push, "faults": faults}[command](args)


if __name__ == "__main__":
    sys.exit(main())
