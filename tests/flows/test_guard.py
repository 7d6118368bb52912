"""No crossing environments: a production run refuses staging's target, a staging run production's."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from blocks import AwxServer, GitHubAccount, ImageRegistry, KubernetesCluster, StackTarget
from flows.pipeline import guard
from flows.report import StageFailed

STAGING = {
    "namespace": "staging-stack",
    "job_template": "Staging Fragalysis Stack (Version Change)",
    "first_deploy_template": "Staging Fragalysis Stack",
}
PRODUCTION = {
    "namespace": "production-stack",
    "job_template": "Production Fragalysis Stack (Version Change)",
    "first_deploy_template": "Production Fragalysis Stack",
}


def target(environment: str, *, production: bool, **names: str) -> StackTarget:
    return StackTarget(
        environment=environment,
        production=production,
        github=GitHubAccount(token=SecretStr("t")),
        awx=AwxServer(url="https://awx.example.org"),
        cluster=KubernetesCluster(in_cluster=True),
        registry=ImageRegistry(),
        **names,
    )


@pytest.mark.parametrize(
    ("case", "production_run", "refusal"),
    [
        (target("production", production=True, **PRODUCTION), True, None),
        (target("staging", production=False, **STAGING), False, None),
        (target("staging", production=False, **STAGING), True, "is not marked production"),
        (target("production", production=True, **PRODUCTION), False, "is marked production"),
        (target("production", production=True, **{**PRODUCTION, "namespace": "staging-stack"}), True, "staging's"),
        (
            target("production", production=True, **{**PRODUCTION, "job_template": STAGING["job_template"]}),
            True,
            "names staging's resources",
        ),
        (
            target(
                "production",
                production=True,
                **{**PRODUCTION, "first_deploy_template": STAGING["first_deploy_template"]},
            ),
            True,
            "names staging's resources",
        ),
        (
            target("staging", production=False, **{**STAGING, "namespace": "production-stack"}),
            False,
            "names production's resources",
        ),
    ],
)
def test_runs_refuse_the_other_environment(case: StackTarget, production_run: bool, refusal: str | None):
    if refusal is None:
        guard(case, production=production_run)
        return
    with pytest.raises(StageFailed) as failed:
        guard(case, production=production_run)
    assert failed.value.stage == "environment guard"
    assert refusal in str(failed.value)


def test_production_asks_for_approval_and_rolls_back_by_default():
    production = target("production", production=True, **PRODUCTION)
    staging = target("staging", production=False, **STAGING)
    assert production.asks_approval
    assert production.rolls_back
    assert not staging.asks_approval
    assert not staging.rolls_back
    assert not production.model_copy(update={"approval": False}).asks_approval
