"""Blocks that point at a running sandbox (from its ``endpoints.json``), with budgets scaled by its speed.

Used by the demo and the tests; it needs only the endpoints data, not the sandbox package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr

from blocks import AwxServer, Budgets, GitHubAccount, ImageRegistry, KubernetesCluster, Mode, StackTarget

ENVIRONMENTS = {
    "staging": {
        "job_template": "Staging Fragalysis Stack (Version Change)",
        "first_deploy_template": "Staging Fragalysis Stack",
        "namespace": "staging-stack",
        "image_tag": "latest",
    },
    "production": {
        "job_template": "Production Fragalysis Stack (Version Change)",
        "first_deploy_template": "Production Fragalysis Stack",
        "namespace": "production-stack",
        "image_tag": "stable",
    },
}


def sandbox_target(
    endpoints: dict[str, Any],
    *,
    environment: str = "staging",
    mode: Mode = Mode.ORCHESTRATE,
    budgets: Budgets | None = None,
) -> StackTarget:
    """A ``StackTarget`` (with its credentials blocks, unsaved) for a sandbox's endpoints.

    Budgets default to the real ones divided by the sandbox's speed, so that verdicts stay meaningful.
    """
    speed = float(endpoints.get("speed", 1.0))
    awx = endpoints["awx"]
    registry = endpoints["registry"]
    kubeconfig = Path(endpoints["kubernetes"]["kubeconfig"])
    return StackTarget(
        environment=environment,
        mode=mode,
        github=GitHubAccount(
            token=SecretStr(endpoints["github"]["token"]),
            api_url=endpoints["github"]["url"],
            ca_bundle=endpoints["github"].get("ca_bundle"),
            webhook_secret=SecretStr(endpoints["github"]["webhook_secret"])
            if endpoints["github"].get("webhook_secret")
            else None,
        ),
        awx=AwxServer(
            url=awx["url"], api_path=awx["api_path"], token=SecretStr(awx["token"]), ca_bundle=awx.get("ca_bundle")
        ),
        cluster=KubernetesCluster(kubeconfig=SecretStr(kubeconfig.read_text())),
        registry=ImageRegistry(
            url=registry["url"],
            username=registry.get("username"),
            password=SecretStr(registry["password"]) if registry.get("password") else None,
            ca_bundle=registry.get("ca_bundle"),
        ),
        budgets=budgets or Budgets().scaled(speed),
        stuck_grace_seconds=max(2.0, 60.0 / speed),
        time_scale=speed,
        production=environment == "production",
        approval_timeout_seconds=86400.0 / speed,
        job_template=ENVIRONMENTS[environment]["job_template"],
        first_deploy_template=ENVIRONMENTS[environment]["first_deploy_template"],
        namespace=ENVIRONMENTS[environment]["namespace"],
        image_tag=ENVIRONMENTS[environment]["image_tag"],
    )


def save_sandbox_blocks(
    endpoints: dict[str, Any], *, environment: str = "staging", mode: Mode = Mode.ORCHESTRATE, name: str | None = None
) -> StackTarget:
    """Save the credentials blocks as ``sandbox-*`` and the target as ``name`` (default: the environment)."""
    target = sandbox_target(endpoints, environment=environment, mode=mode)
    target.github.save("sandbox-github", overwrite=True)
    target.awx.save("sandbox-awx", overwrite=True)
    target.cluster.save("sandbox-cluster", overwrite=True)
    target.registry.save("sandbox-registry", overwrite=True)
    target.save(name or environment, overwrite=True)
    return target
