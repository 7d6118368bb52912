"""Serving the production flow as a deployment in this process (``python -m deployments.serving NAME TARGET``), as
the demo and the tests do: one run at a time (ENQUEUE), as in prefect.yaml, so that a run suspended for its approval
gives its slot back while it waits. Set ``PREFECT_RUNNER_POLL_FREQUENCY`` to pick resumed runs up sooner."""

from __future__ import annotations

import sys
from typing import cast

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment

from flows.production import deploy_to_production


def production_deployment(name: str = "production", target: str = "production") -> RunnerDeployment:
    """The ``deploy-to-production/<name>`` deployment for the ``StackTarget`` block ``target``."""
    # to_deployment answers a coroutine only when called inside an event loop
    deployment = deploy_to_production.to_deployment(
        name=name,
        parameters={"target": target},
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
        tags=["fragalysis", "production"],
    )
    return cast(RunnerDeployment, deployment)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    name = args[0] if args else "production"
    target = args[1] if len(args) > 1 else "production"
    serve(production_deployment(name, target), limit=4)


if __name__ == "__main__":
    main()
