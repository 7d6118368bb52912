"""The launch record: one request per change, reads answered from what the process wrote, a retry's process reading
it back, and a Prefect API that does not store it named in the error (the claim comes before the AWX launch)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from prefect.variables import Variable

from clients.errors import ApiError
from flows import launches


@pytest.fixture
def prefect_requests(prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(method, path) of each request Prefect's sync client sends for the launch record."""
    sent: list[tuple[str, str]] = []
    original = httpx.Client.send

    def send(self: httpx.Client, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:
        if "/variables" in request.url.path:
            sent.append((request.method, request.url.path.split("/api", 1)[-1]))
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", send)
    return sent


def test_each_change_is_one_request_and_reads_cost_none(prefect_requests: list[tuple[str, str]]) -> None:
    run_id = str(uuid.uuid4())
    name = launches.variable_name(run_id)
    launches.holding(run_id, "lease-1")  # the first write: read once (nothing there), then created
    launches.built(run_id, "dev", 12, "https://github.example/runs/12")
    launches.claim(run_id, "dev", "Staging (Version Change)", {"stack_image_tag": "latest"})
    launches.launched(run_id, "dev", "Staging (Version Change)", 7, "https://awx.example/#/jobs/playbook/7")
    record = launches.recall(run_id)
    assert prefect_requests == [
        ("GET", f"/variables/name/{name}"),
        ("POST", "/variables/"),
        ("PATCH", f"/variables/name/{name}"),
        ("PATCH", f"/variables/name/{name}"),
        ("PATCH", f"/variables/name/{name}"),
    ]
    assert record is not None
    assert (record.job_id, record.build_run_id, record.lease_id) == (7, 12, "lease-1")
    assert record.extra_vars == {"stack_image_tag": "latest"}
    # what another process (a retry's, the cancellation hook's) reads is what this one wrote
    stored = Variable.get(name)
    assert stored["job_id"] == 7
    assert stored["build_run_id"] == 12
    assert stored["claimed_at"] == record.claimed_at
    launches.forget(run_id)
    assert Variable.get(name, default=None) is None


def test_a_retry_reads_the_record_its_dead_attempt_wrote(prefect_requests: list[tuple[str, str]]) -> None:
    run_id = str(uuid.uuid4())
    launches.claim(run_id, "dev", "Staging (Version Change)", {"stack_image_tag": "latest"})
    launches._known.clear()  # a new process: nothing known
    record = launches.recall(run_id)
    assert record is not None
    assert record.claimed is not None
    assert record.job_id is None
    # a record gone from under the process (forgotten by a cancellation hook elsewhere) is written again
    Variable.unset(launches.variable_name(run_id))
    launches.launched(run_id, "dev", "Staging (Version Change)", 8, "https://awx.example/#/jobs/playbook/8")
    assert Variable.get(launches.variable_name(run_id))["job_id"] == 8
    launches.forget(run_id)


def test_a_record_prefect_does_not_store_fails_naming_it(prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import SyncPrefectClient

    def unavailable(self: Any, variable: Any) -> Any:
        request = httpx.Request("POST", "http://prefect.example/api/variables/")
        raise httpx.HTTPStatusError(
            "Server error '503 Service Unavailable'", request=request, response=httpx.Response(503, request=request)
        )

    monkeypatch.setattr(SyncPrefectClient, "create_variable", unavailable)
    run_id = str(uuid.uuid4())
    with pytest.raises(ApiError) as raised:
        launches.claim(run_id, "dev", "Staging (Version Change)", {"stack_image_tag": "latest"})
    assert launches.variable_name(run_id) in str(raised.value)
    assert "503" in str(raised.value)
    assert raised.value.status == 503
    assert launches.recall(run_id) is None
    launches._known.pop(run_id, None)


def test_a_busy_answer_to_the_claim_is_tried_again_soon_then_with_prefects_backoff(
    prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prefect.client.base

    from flows.prefect_busy import FIRST_RETRY_SECONDS

    busy = 2  # the first two PATCHes of the record meet SQLite's lock
    original = httpx.Client.send

    def send(self: httpx.Client, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:
        nonlocal busy
        if request.method == "PATCH" and "/variables/" in request.url.path and busy:
            busy -= 1
            response = httpx.Response(503, request=request, json={"exception_message": "database is locked"})
            for hook in self.event_hooks["response"]:
                hook(response)
            return response
        return original(self, request, *args, **kwargs)

    slept: list[float] = []
    monkeypatch.setattr(httpx.Client, "send", send)
    monkeypatch.setattr(prefect.client.base.time, "sleep", slept.append)
    run_id = str(uuid.uuid4())
    launches.holding(run_id, "lease-1")
    launches.claim(run_id, "dev", "Staging (Version Change)", {"stack_image_tag": "latest"})
    assert Variable.get(launches.variable_name(run_id))["claimed_at"]
    # Prefect's client slept twice before its third try: ours first, then its own backoff (2 ** 2 s, jittered)
    assert len(slept) == 2
    assert FIRST_RETRY_SECONDS <= slept[0] <= FIRST_RETRY_SECONDS * 1.5
    assert slept[1] >= 1.0
    launches.forget(run_id)
