"""Bad parameters are refused when a run starts, at stage "input", before any request of ours to GitHub, AWX, the
registry or the cluster (but a short sha's one look-up on GitHub); a short sha is expanded to the full one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from blocks import StackTarget
from flows import inputs
from flows.first_deploy import first_deploy
from flows.production import deploy_to_production
from flows.report import DeploymentReport, StageFailed
from flows.staging import deploy_to_staging
from sandbox.runtime import Sandbox
from tests.flows.conftest import SPEED, deployment_events, scenario, target_name

FRONTEND = "xchem/fragalysis-frontend"
OUR_AGENT = "fragalysis-cd"


def ours(sb: Sandbox) -> list[Any]:
    return [r for r in sb.requests() if r.user_agent.startswith(OUR_AGENT)]


# ---------------------------------------------------------------- the pure checks


@pytest.mark.parametrize(
    ("sha", "expected"),
    [
        (None, None),
        ("", None),
        ("1a2b3c4", "1a2b3c4"),
        ("1A2B3C4D", "1a2b3c4d"),
        ("a" * 40, "a" * 40),
    ],
)
def test_good_shas_are_lower_cased(sha: str | None, expected: str | None):
    assert inputs.check_sha(sha) == expected


BAD_SHAS = {
    "1a2b3c": "7 to 40 hexadecimal digits",
    "a" * 41: "7 to 40 hexadecimal digits",
    "1a2b3cg": "7 to 40 hexadecimal digits",
    "staging": "7 to 40 hexadecimal digits",
    "1a2b3c4\n": "7 to 40 hexadecimal digits",
    " 1a2b3c4": "7 to 40 hexadecimal digits",
    "a" * 5000: "at most 256 characters (it has 5000",
}


@pytest.mark.parametrize("sha", BAD_SHAS)
def test_bad_shas_are_refused_naming_the_rule(sha: str):
    with pytest.raises(StageFailed) as refused:
        inputs.check_sha(sha)
    assert refused.value.stage == "input"
    assert BAD_SHAS[sha] in str(refused.value)
    assert len(str(refused.value)) < 200, "a long value is cut in the message"


@pytest.mark.parametrize("source", ["", "Frontend", "frontend ", "web", "x" * 300])
def test_unknown_sources_are_refused(source: str):
    with pytest.raises(StageFailed, match="stage 'input' failed") as refused:
        inputs.check_source(source)
    assert len(str(refused.value)) < 200


# ---------------------------------------------------------------- against the sandbox


@pytest.mark.prefect
def test_bad_staging_parameters_are_refused_before_any_request(
    make_sandbox: Callable[..., Sandbox], deploy_target: Callable[..., StackTarget]
):
    sb = make_sandbox(scenario(), speed=SPEED)
    name = target_name(deploy_target(sb))
    cases: list[tuple[dict[str, Any], str]] = [
        *(({"target": name, "sha": sha}, rule) for sha, rule in BAD_SHAS.items()),
        ({"target": "no-such-target"}, "no StackTarget block named 'no-such-target'"),
        ({"target": "Staging/../x"}, "target must be a block name"),
        ({"target": "s" * 5000}, "target has at most 256 characters"),
    ]
    for parameters, reason in cases:
        state = deploy_to_staging(return_state=True, **parameters)
        assert state.is_failed(), parameters
        assert "stage 'input' failed" in state.message, state.message
        assert reason in state.message, (reason, state.message)
        assert len(state.message) < 400, "a refused value is not echoed whole"
    assert ours(sb) == [], "a refused parameter makes no request of ours at all"


@pytest.mark.prefect
def test_an_unknown_source_is_refused_before_any_request(
    make_sandbox: Callable[..., Sandbox], deploy_target: Callable[..., StackTarget]
):
    sb = make_sandbox(scenario(), speed=SPEED)
    target = deploy_target(sb)
    state = deploy_to_staging(target=target_name(target), source="nope", return_state=True)
    # Prefect's own check of the parameter's type (a ``Source``) refuses it before the flow's body runs
    assert state.is_failed()
    assert "source: Input should be 'frontend', 'backend' or 'stack'" in state.message, state.message
    # a target whose block lacks a source the flow knows: refused at "input" too, with no remote request
    narrowed = deploy_target(sb, sources={k: v for k, v in target.sources.items() if k != "backend"})
    state = deploy_to_staging(target=target_name(narrowed), source="backend", return_state=True)
    assert state.is_failed()
    assert "stage 'input' failed" in state.message
    assert "has no source 'backend'" in state.message
    assert ours(sb) == []


@pytest.mark.prefect
def test_production_and_first_deploy_refuse_an_unknown_target(
    make_sandbox: Callable[..., Sandbox], deploy_target: Callable[..., StackTarget]
):
    sb = make_sandbox(scenario(), speed=SPEED)
    state = deploy_to_production(tag="1.0.3", target="no-such-production", return_state=True)
    assert state.is_failed()
    assert "stage 'input' failed: no StackTarget block named 'no-such-production'" in state.message
    state = first_deploy(target="no-such-stack", return_state=True)
    assert state.is_failed()
    assert "stage 'input' failed: no StackTarget block named 'no-such-stack'" in state.message
    assert ours(sb) == []


@pytest.mark.prefect
def test_a_short_sha_is_expanded_and_the_run_carries_the_full_one(
    make_sandbox: Callable[..., Sandbox], deploy_target: Callable[..., StackTarget]
):
    sb = make_sandbox(scenario(), speed=SPEED)
    target = deploy_target(sb)
    sha = sb.push(FRONTEND, "staging", message="Fix the viewer")

    state = deploy_to_staging(target=target_name(target), source="frontend", sha=sha[:7].upper(), return_state=True)

    assert state.is_completed(), state.message
    report: DeploymentReport = state.result()
    assert report.sha == sha
    (event,) = deployment_events(sha)
    assert event.payload["sha"] == sha
    first = ours(sb)[0]
    assert (first.service, first.method, first.path) == ("github", "GET", f"/repos/{FRONTEND}/commits/{sha[:7]}")


@pytest.mark.prefect
def test_a_short_sha_github_does_not_know_or_finds_ambiguous_is_refused(
    make_sandbox: Callable[..., Sandbox], deploy_target: Callable[..., StackTarget]
):
    sb = make_sandbox(scenario(), speed=SPEED)
    name = target_name(deploy_target(sb))
    prefix = "badc0de"
    for tail in ("1" * 33, "2" * 33):  # two commits whose shas start alike
        sb.push(FRONTEND, f"refs/tags/twin-{tail[0]}", sha=prefix + tail)

    for short in ("0000000", prefix, "deadbeef1"):
        state = deploy_to_staging(target=name, source="frontend", sha=short, return_state=True)
        assert state.is_failed(), short
        assert "stage 'input' failed" in state.message
        assert f"GitHub knows no single commit {short} on {FRONTEND}" in state.message, state.message

    requests = ours(sb)
    assert [(r.service, r.method, r.path) for r in requests] == [
        ("github", "GET", f"/repos/{FRONTEND}/commits/{short}") for short in ("0000000", prefix, "deadbeef1")
    ], "one look-up on GitHub per run, and nothing else"
