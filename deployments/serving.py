"""Serving deployments of prefect.yaml in this process, as ``fragalysis-cd serve``, the demo and the tests do:

python -m deployments.serving --all                 every deployment of prefect.yaml, with its schedules and triggers
python -m deployments.serving NAME [TARGET]         the production deployment as ``deploy-to-production/NAME`` for
                                                    the StackTarget block TARGET (default production), no triggers

Each flow run starts in its own process, picked up at the runner's poll: set ``PREFECT_RUNNER_POLL_FREQUENCY`` (10 s
by default) to start runs, resumed ones included, sooner. SIGTERM stops the runner and the runs it started.
"""

from __future__ import annotations

import argparse
import contextlib
import os

from prefect import serve

from deployments.definitions import ROOT, production_deployment, served_deployments

# flow runs at once (Prefect's default is 5); the environments' concurrency limits decide what actually deploys
DEFAULT_LIMIT = 8


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.serving", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", nargs="?", default="production", help="the production deployment's name")
    parser.add_argument("target", nargs="?", default="production", help="its StackTarget block")
    parser.add_argument("--all", action="store_true", help="serve every deployment of prefect.yaml instead")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="flow runs at once")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # served runs load their entrypoints (relative to the repository root) in this directory
    os.chdir(ROOT)
    deployments = served_deployments() if args.all else [production_deployment(args.name, args.target)]
    with contextlib.suppress(KeyboardInterrupt):
        serve(*deployments, limit=args.limit)


if __name__ == "__main__":
    main()
