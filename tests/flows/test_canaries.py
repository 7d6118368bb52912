"""No secret anywhere: canary tokens in every credential block, then staging and production deploys (a success, a
failure, a rollback), then every log line, artifact, event, state message, exception text, flow and task parameter
and Variable is searched for them, read back through the Prefect API as well as in-process.

The sandbox accepts only the canaries (a wrong token gets 401), so the deploys that complete prove the blocks'
secrets were really sent to the services.
"""

from __future__ import annotations

import base64
import json
import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from blocks import StackTarget
from flows.production import deploy_to_production
from flows.staging import deploy_to_staging
from sandbox.runtime import Sandbox
from tests.conftest import wait_for
from tests.flows.conftest import SPEED, scenario, target_name

pytestmark = pytest.mark.prefect

STACK = "xchem/fragalysis-stack"
FRONTEND = "xchem/fragalysis-frontend"
STAGING_VC = "Staging Fragalysis Stack (Version Change)"

GITHUB_TOKEN = "ghp_CANARYgithubToken7f3e9a1b2c4d5e6f7a8b9c"
WEBHOOK_SECRET = "CANARY-webhook-secret-4b1d"
AWX_TOKEN = "CANARY-awx-token-9c2e71a05f"
AWX_PASSWORD = "CANARY-awx-password-31f0"
REGISTRY_USER = "sandbox"
REGISTRY_PASSWORD = "CANARY-registry-password-8d6a"
KUBERNETES_TOKEN = "CANARY-k8s-token-e5a0c3b7d9"

CANARIES = [GITHUB_TOKEN, WEBHOOK_SECRET, AWX_TOKEN, AWX_PASSWORD, REGISTRY_PASSWORD, KUBERNETES_TOKEN]
"""Each as it is, and as HTTP Basic would carry it (``user:password`` in base64)."""
FORMS = [
    *CANARIES,
    base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode(),
    base64.b64encode(f"admin:{AWX_PASSWORD}".encode()).decode(),
]


def canary_scenario() -> Any:
    loaded = scenario()
    loaded.github.token = GITHUB_TOKEN
    loaded.github.webhook.secret = WEBHOOK_SECRET
    loaded.awx.token = AWX_TOKEN
    loaded.awx.password = AWX_PASSWORD
    loaded.registry.users = {REGISTRY_USER: REGISTRY_PASSWORD}
    loaded.kubernetes.token = KUBERNETES_TOKEN
    return loaded


def leaks(text: str) -> list[str]:
    return [form for form in FORMS if form in text]


def test_no_canary_in_logs_artifacts_events_states_or_parameters(
    make_sandbox: Callable[..., Sandbox], deploy_target, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    sb = make_sandbox(
        canary_scenario(),
        speed=SPEED,
        faults={"awx_jobs": [{"template": STAGING_VC, "outcome": "failed", "count": 1}]},
    )
    staging = deploy_target(sb)
    production = deploy_target(sb, environment="production", label="production-canaries", approval=False)
    _blocks_hold_the_canaries(staging)

    failed_sha = sb.push(FRONTEND, "staging", message="the AWX job fails")
    failed = deploy_to_staging(target=target_name(staging), source="frontend", sha=failed_sha, return_state=True)
    good_sha = sb.push(FRONTEND, "staging", message="a good change")
    good = deploy_to_staging(target=target_name(staging), source="frontend", sha=good_sha, return_state=True)
    sb.push(STACK, "refs/tags/1.0.3")
    released = deploy_to_production(target=target_name(production), tag="1.0.3", return_state=True)
    sb.set_faults(crashloop=[{"namespace": "production-stack", "image": f"{STACK}:1.0.4"}])
    sb.push(STACK, "refs/tags/1.0.4", message="a bad release")
    rolled_back = deploy_to_production(target=target_name(production), tag="1.0.4", return_state=True)

    assert failed.is_failed(), failed.message
    assert "stage 'AWX job' failed" in failed.message
    assert good.is_completed(), good.message
    assert released.is_completed(), released.message
    assert rolled_back.is_failed(), rolled_back.message
    assert "rolled back to 1.0.3" in rolled_back.message
    states = [failed, good, released, rolled_back]
    run_ids = {str(state.state_details.flow_run_id) for state in states}

    in_process = {
        "log records": "\n".join(_record_text(record) for record in caplog.records),
        "state messages": "\n".join(state.message or "" for state in states),
        "exceptions": "\n".join(_exception_text(state) for state in states),
    }
    through_api = dict(_read_back(run_ids))

    # not vacuous: what was read holds the deploys' own words
    assert good_sha[:7] in in_process["log records"]
    assert good_sha[:7] in through_api["logs"]
    assert "rolled back to 1.0.3" in through_api["flow runs"]
    assert "Stage" in through_api["artifacts"] or "stage" in through_api["artifacts"]
    assert "fragalysis.deployment.rolled-back" in through_api["events"]
    for where, text in {**in_process, **through_api}.items():
        assert not leaks(text), f"a secret in {where}: {leaks(text)}"


def _blocks_hold_the_canaries(target: StackTarget) -> None:
    loaded = StackTarget.load(target_name(target))
    assert loaded.github.token.get_secret_value() == GITHUB_TOKEN
    assert loaded.github.webhook_secret is not None
    assert loaded.github.webhook_secret.get_secret_value() == WEBHOOK_SECRET
    assert loaded.awx.token is not None
    assert loaded.awx.token.get_secret_value() == AWX_TOKEN
    assert loaded.registry.password is not None
    assert loaded.registry.password.get_secret_value() == REGISTRY_PASSWORD
    assert loaded.cluster.kubeconfig is not None
    assert KUBERNETES_TOKEN in loaded.cluster.kubeconfig.get_secret_value()


def _record_text(record: logging.LogRecord) -> str:
    text = f"{record.name} {record.getMessage()}"
    if record.exc_info:
        text += "".join(traceback.format_exception(*record.exc_info))
    return text


def _exception_text(state: Any) -> str:
    try:
        result = state.result(raise_on_failure=False)
    except BaseException as error:
        result = error
    if isinstance(result, BaseException):
        return "".join(traceback.format_exception(result))
    return repr(result)


def _read_back(run_ids: set[str]) -> Iterator[tuple[str, str]]:
    """Everything the Prefect API holds about these runs (and all events, artifacts and Variables), as raw JSON."""
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL

    EventsWorker.drain_all(timeout=10)
    runs = {"flow_runs": {"id": {"any_": sorted(run_ids)}}}
    with httpx.Client(base_url=str(PREFECT_API_URL.value()).rstrip("/") + "/", timeout=30) as api:
        # the server stores events in batches, a few seconds after they came: wait for the last run's
        wait_for(lambda: "fragalysis.deployment.rolled-back" in _events(api), "the last run's event to be stored")
        yield "flow runs", _all(api, "flow_runs/filter", runs)
        yield "task runs", _all(api, "task_runs/filter", runs)
        yield "logs", _all(api, "logs/filter", {"logs": {"flow_run_id": {"any_": sorted(run_ids)}}})
        yield "artifacts", _all(api, "artifacts/filter", {})
        yield "variables", _all(api, "variables/filter", {})
        yield "events", _events(api)


def _all(api: httpx.Client, path: str, body: dict[str, Any]) -> str:
    pages: list[Any] = []
    offset = 0
    while True:
        answer = api.post(path, json={**body, "limit": 200, "offset": offset})
        answer.raise_for_status()
        page = answer.json()
        pages.extend(page)
        if len(page) < 200:
            return json.dumps(pages)
        offset += 200


def _events(api: httpx.Client) -> str:
    answer = api.post("events/filter", json={"limit": 50, "filter": {"occurred": {"since": "2000-01-01T00:00:00Z"}}})
    answer.raise_for_status()
    page = answer.json()
    events = list(page["events"])
    while page.get("next_page"):
        answer = api.get(page["next_page"])
        answer.raise_for_status()
        page = answer.json()
        events.extend(page["events"])
    return json.dumps(events)
