"""The sandbox in orchestrate mode, for ``fragalysis-cd demo`` and ``fragalysis-cd serve --sandbox``: the one module of
the product that imports ``sandbox`` (the import-linter contract in pyproject.toml names it), inside its functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def orchestrate_sandbox(
    speed: float,
    state_dir: Path,
    *,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Start the Fragalysis sandbox on free ports at ``speed``, write its ``kubeconfig`` and ``endpoints.json`` into
    ``state_dir``, and yield it with its endpoints; stopped on the way out.

    Orchestrate mode: the flows dispatch the stack build and launch AWX, so the repositories' own chaining is switched
    off (as TRIGGER_DOWNSTREAM / TRIGGER_AWX would be on the real repositories). With ``webhook_url`` and
    ``webhook_secret``, its GitHub delivers signed ``push`` and ``workflow_run`` webhooks there, as a repository hook
    would (the endpoints then carry the secret, so the GitHub block made from them has it too).
    """
    from sandbox.runtime import FREE_PORTS, Sandbox
    from sandbox.scenario import load_scenario

    scenario = load_scenario("fragalysis")
    scenario.github.trigger_downstream = False
    scenario.github.trigger_awx = False
    if webhook_url is not None:
        scenario.github.webhook.url = webhook_url
        scenario.github.webhook.secret = webhook_secret
    with Sandbox(scenario, speed=speed, ports=FREE_PORTS) as sandbox:
        sandbox.write_state(state_dir)
        yield sandbox, sandbox.endpoints(state_dir.resolve())
