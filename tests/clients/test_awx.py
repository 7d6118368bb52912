"""AwxClient on a strict MockTransport: every request a test does not declare fails it."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from clients.awx import AwxClient, Job, JobStatus, JobTemplate
from clients.errors import AmbiguousName, ApiError, DeadlineExceeded, JobFailed, LaunchRejected, NotFound
from clients.retry import RetryPolicy
from clients.waiting import Poll
from tests.clients.routes import Routes, body_of, reply

SERVER = "https://awx.example.org"
API = "/api/v2/"
CANARY = "canary-AWX-TOKEN-77e1b2"
FAST = RetryPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.02, jitter=0.0, max_retry_after=2.0)
TEMPLATE_NAME = "Staging Fragalysis Stack (Version Change)"
TEMPLATE = JobTemplate(id=7, name=TEMPLATE_NAME, organization="Default", url=f"{SERVER}{API}job_templates/7/")


def fast_poll() -> Poll:
    return Poll(initial=0.01, factor=1.5, cap=0.03)


@pytest.fixture
def routes() -> Routes:
    return Routes()


@pytest.fixture
def awx(routes: Routes) -> Iterator[AwxClient]:
    with AwxClient(
        SERVER,
        token=CANARY,
        retry=FAST,
        transport=routes.transport(),
        launch_lookup_seconds=0.1,
        websocket_path=None,  # the routes are the whole server (the websocket: test_awx_websocket_follow.py)
    ) as client:
        yield client


def template_item(template_id: int, organization: str, name: str = TEMPLATE_NAME) -> dict[str, Any]:
    return {
        "id": template_id,
        "name": name,
        "ask_variables_on_launch": True,
        "summary_fields": {"organization": {"id": template_id * 10, "name": organization}},
    }


def job_body(job_id: int, status: str, **extra: Any) -> dict[str, Any]:
    data = {
        "id": job_id,
        "name": TEMPLATE_NAME,
        "status": status,
        "job_template": 7,
        "created": "2026-11-26T10:00:00.123456Z",
        "started": None if status in ("new", "pending") else "2026-11-26T10:00:30.5Z",
        "finished": None,
        "elapsed": "0.0",
        "failed": status in ("failed", "error", "canceled"),
        "job_explanation": "",
        "event_processing_finished": status in ("successful", "failed", "error", "canceled"),
        "extra_vars": json.dumps({"stack_image_tag": "1.0.3"}),
    }
    data.update(extra)
    return data


# ---------------------------------------------------------------- templates


def test_find_template_by_exact_name_following_next_pages(routes: Routes, awx: AwxClient) -> None:
    page2 = f"{API}job_templates/?name=x&page=2&page_size=200"
    routes.add(
        "GET",
        f"{API}job_templates/",
        lambda r: (
            reply(200, {"count": 2, "next": page2, "results": [template_item(3, "Default", "Other")]})
            if "page=2" not in str(r.url)
            else reply(200, {"count": 2, "next": None, "results": [template_item(7, "Default")]})
        ),
    )
    template = awx.find_template(TEMPLATE_NAME)
    assert (template.id, template.organization) == (7, "Default")
    assert template.url == f"{SERVER}{API}job_templates/7/"
    first = routes.sent("GET", f"{API}job_templates/")[0]
    assert first.url.params["name"] == TEMPLATE_NAME


def test_find_template_none_names_the_server_and_the_name(routes: Routes, awx: AwxClient) -> None:
    routes.add("GET", f"{API}job_templates/", reply(200, {"count": 0, "next": None, "results": []}))
    with pytest.raises(NotFound, match=re.escape(f"AWX at {SERVER} has no job template named '{TEMPLATE_NAME}'")):
        awx.find_template(TEMPLATE_NAME)


def test_find_template_in_two_organisations_is_ambiguous(routes: Routes, awx: AwxClient) -> None:
    items = [template_item(7, "Default"), template_item(9, "Diamond")]
    routes.add("GET", f"{API}job_templates/", reply(200, {"count": 2, "next": None, "results": items}))
    with pytest.raises(AmbiguousName, match=r"Default \(id 7\), Diamond \(id 9\)"):
        awx.find_template(TEMPLATE_NAME)


# ---------------------------------------------------------------- launch


def launched(job_id: int, ignored: dict[str, Any] | None = None) -> httpx.Response:
    body = job_body(job_id, "pending") | {"job": job_id, "ignored_fields": ignored or {}}
    return reply(201, body, {"location": f"{API}jobs/{job_id}/"})


def test_launch_sends_extra_vars_and_returns_the_pending_job(routes: Routes, awx: AwxClient) -> None:
    routes.add("POST", f"{API}job_templates/7/launch/", launched(42))
    job = awx.launch(TEMPLATE, {"stack_image_tag": "1.0.3"})
    assert (job.id, job.status, job.status.finished) == (42, JobStatus.PENDING, False)
    assert job.url == f"{SERVER}{API}jobs/42/"
    assert job.extra_vars == {"stack_image_tag": "1.0.3"}
    assert body_of(routes.requests[0]) == {"extra_vars": {"stack_image_tag": "1.0.3"}}


def test_ignored_extra_vars_are_an_error_and_the_job_is_canceled(routes: Routes, awx: AwxClient) -> None:
    routes.add("POST", f"{API}job_templates/7/launch/", launched(42, {"extra_vars": {"stack_image_tag": "1.0.3"}}))
    routes.add("GET", f"{API}jobs/42/cancel/", reply(200, {"can_cancel": True}))
    routes.add("POST", f"{API}jobs/42/cancel/", reply(202))
    with pytest.raises(LaunchRejected, match="Prompt on launch") as caught:
        awx.launch(TEMPLATE, {"stack_image_tag": "1.0.3"})
    assert "stack_image_tag" in str(caught.value)
    assert "It was canceled" in str(caught.value)
    assert caught.value.job_id == 42
    assert routes.count("POST", f"{API}jobs/42/cancel/") == 1


def test_a_400_is_rejected_quoting_awx(routes: Routes, awx: AwxClient) -> None:
    errors = {"variables_needed_to_start": ["'stack_image_tag' value missing"]}
    routes.add("POST", f"{API}job_templates/7/launch/", reply(400, errors))
    with pytest.raises(LaunchRejected, match=r"variables_needed_to_start: .*stack_image_tag' value missing") as caught:
        awx.launch(TEMPLATE, {})
    assert caught.value.fields == errors
    assert routes.count("POST", f"{API}job_templates/7/launch/") == 1


def jobs_list(jobs: list[dict[str, Any]]) -> httpx.Response:
    return reply(200, {"count": len(jobs), "next": None, "previous": None, "results": jobs})


def test_a_lost_launch_answer_finds_the_job_instead_of_launching_again(routes: Routes, awx: AwxClient) -> None:
    created: list[dict[str, Any]] = []

    def launch_then_drop(request: httpx.Request) -> Exception:
        # AWX created the job, then the connection broke before the answer reached us
        created.append(job_body(42, "pending", created=datetime.now(UTC).isoformat().replace("+00:00", "Z")))
        return httpx.ReadError("connection reset by peer")

    routes.add("POST", f"{API}job_templates/7/launch/", launch_then_drop)
    routes.add("GET", f"{API}job_templates/7/jobs/", lambda r: jobs_list(created))
    job = awx.launch(TEMPLATE, {"stack_image_tag": "1.0.3"})
    assert job.id == 42
    assert routes.count("POST", f"{API}job_templates/7/launch/") == 1
    query = routes.sent("GET", f"{API}job_templates/7/jobs/")[0].url.params
    assert query["order_by"] == "-created"
    assert datetime.fromisoformat(query["created__gt"]) < datetime.now(UTC)


def test_a_5xx_without_a_job_launches_again(routes: Routes, awx: AwxClient) -> None:
    routes.add("POST", f"{API}job_templates/7/launch/", reply(502, {"detail": "Bad Gateway"}), launched(43))
    other = job_body(41, "running", extra_vars=json.dumps({"stack_image_tag": "latest"}))
    routes.add("GET", f"{API}job_templates/7/jobs/", jobs_list([other]))  # someone else's job: not ours
    job = awx.launch(TEMPLATE, {"stack_image_tag": "1.0.3"})
    assert job.id == 43
    assert routes.count("POST", f"{API}job_templates/7/launch/") == 2
    assert routes.count("GET", f"{API}job_templates/7/jobs/") >= 1


def test_launch_attempts_are_bounded(routes: Routes, awx: AwxClient) -> None:
    routes.add("POST", f"{API}job_templates/7/launch/", reply(503, {"detail": "Service Unavailable"}))
    routes.add("GET", f"{API}job_templates/7/jobs/", jobs_list([]))
    with pytest.raises(ApiError, match="after 3 attempts, and no job of it turned up"):
        awx.launch(TEMPLATE, {"stack_image_tag": "1.0.3"})
    assert routes.count("POST", f"{API}job_templates/7/launch/") == awx.launch_attempts == 3


def test_a_failed_lookup_does_not_launch_again(routes: Routes, awx: AwxClient) -> None:
    routes.add("POST", f"{API}job_templates/7/launch/", httpx.ReadTimeout("timed out"))
    routes.add("GET", f"{API}job_templates/7/jobs/", reply(500, {"detail": "Server Error"}))
    with pytest.raises(ApiError, match="answered 500"):
        awx.launch(TEMPLATE, {"stack_image_tag": "1.0.3"})
    assert routes.count("POST", f"{API}job_templates/7/launch/") == 1


def test_launch_after_429_is_repeated_without_a_lookup(routes: Routes, awx: AwxClient) -> None:
    routes.add(
        "POST", f"{API}job_templates/7/launch/", reply(429, {"detail": "throttled"}, {"retry-after": "0"}), launched(44)
    )
    assert awx.launch(TEMPLATE, {"stack_image_tag": "1.0.3"}).id == 44
    assert routes.count("POST", f"{API}job_templates/7/launch/") == 2


def test_launch_with_a_template_id_reads_the_template(routes: Routes, awx: AwxClient) -> None:
    routes.add("GET", f"{API}job_templates/7/", reply(200, template_item(7, "Default")))
    routes.add("POST", f"{API}job_templates/7/launch/", launched(45))
    assert awx.launch(7, {"stack_image_tag": "1.0.3"}).id == 45


# ---------------------------------------------------------------- follow and output


def test_follow_calls_back_on_each_status_change_and_streams_output(routes: Routes, awx: AwxClient) -> None:
    routes.add(
        "GET",
        f"{API}jobs/42/",
        reply(200, job_body(42, "pending")),
        reply(200, job_body(42, "pending")),
        reply(200, job_body(42, "running")),
        reply(200, job_body(42, "running")),
        reply(200, job_body(42, "successful", event_processing_finished=False, finished="2026-11-26T10:05:00Z")),
        reply(200, job_body(42, "successful", finished="2026-11-26T10:05:00Z", elapsed="270.5")),
    )
    lines = [f"line {i}" for i in range(5)]

    def stdout(request: httpx.Request) -> httpx.Response:
        assert request.url.params["format"] == "json"
        start = int(request.url.params["start_line"])
        # two lines more each time, like a playbook writing output
        available = min(len(lines), start + 2)
        content = "".join(f"\x1b[0;32m{line}\x1b[0m\n" for line in lines[start:available])
        return reply(200, {"range": {"start": start, "end": available, "absolute_end": available}, "content": content})

    routes.add("GET", f"{API}jobs/42/stdout/", stdout)
    seen: list[JobStatus] = []
    streamed: list[str] = []
    job = awx.follow(
        Job.from_api(job_body(42, "pending"), url="", ui_url=""),
        5.0,
        on_status=lambda j: seen.append(j.status),
        on_output=streamed.extend,
        poll=fast_poll(),
    )
    assert seen == [JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SUCCESSFUL]
    assert job.status.succeeded
    assert job.elapsed == 270.5
    assert job.finished == datetime(2026, 11, 26, 10, 5, tzinfo=UTC)
    assert streamed == lines


@pytest.mark.parametrize(
    ("status", "explanation"),
    [("canceled", "Previous Task Canceled"), ("failed", ""), ("error", "Job terminated due to timeout")],
)
def test_a_job_that_does_not_succeed_is_job_failed(
    routes: Routes, awx: AwxClient, status: str, explanation: str
) -> None:
    routes.add(
        "GET",
        f"{API}jobs/42/",
        reply(200, job_body(42, "running")),
        reply(200, job_body(42, status, job_explanation=explanation, event_processing_finished=False)),
        reply(200, job_body(42, status, job_explanation=explanation)),
    )
    output = "".join(f"TASK [step {i}]\n" for i in range(50)) + "fatal: [localhost]: FAILED! => rollout timed out\n"
    routes.add("GET", f"{API}jobs/42/stdout/", lambda r: httpx.Response(200, text=output))
    with pytest.raises(JobFailed) as caught:
        awx.follow(42, 5.0, poll=fast_poll())
    error = caught.value
    assert error.status == status
    assert error.explanation == explanation
    assert error.url == f"{SERVER}/#/jobs/playbook/42/output"
    assert error.output_tail.endswith("fatal: [localhost]: FAILED! => rollout timed out")
    assert "TASK [step 0]" not in error.output_tail  # a tail, not the whole output
    assert f"ended {status}" in str(error)
    assert error.url in str(error)
    assert routes.sent("GET", f"{API}jobs/42/stdout/")[0].url.params["format"] == "txt"


def test_follow_past_the_deadline_names_the_job_and_its_status(routes: Routes, awx: AwxClient) -> None:
    routes.add("GET", f"{API}jobs/42/", reply(200, job_body(42, "pending")))
    with pytest.raises(DeadlineExceeded, match=r"job 42 .* still pending after 0 s: https://awx.example.org/#/jobs/"):
        awx.follow(42, 0.2, poll=fast_poll())


def test_read_output_uses_json_ranges(routes: Routes, awx: AwxClient) -> None:
    routes.add(
        "GET",
        f"{API}jobs/42/stdout/",
        reply(200, {"range": {"start": 3, "end": 5, "absolute_end": 9}, "content": "d\ne\n"}),
    )
    chunk = awx.read_output(42, 3, 5)
    assert (chunk.lines, chunk.start, chunk.end, chunk.absolute_end) == (["d", "e"], 3, 5, 9)
    params = routes.requests[0].url.params
    assert (params["format"], params["start_line"], params["end_line"]) == ("json", "3", "5")


def test_iter_output_pages_to_the_current_end(routes: Routes, awx: AwxClient) -> None:
    def stdout(request: httpx.Request) -> httpx.Response:
        start, end = int(request.url.params["start_line"]), int(request.url.params["end_line"])
        end = min(end, 5)
        content = "".join(f"l{i}\n" for i in range(start, end))
        return reply(200, {"range": {"start": start, "end": end, "absolute_end": 5}, "content": content})

    routes.add("GET", f"{API}jobs/42/stdout/", stdout)
    lines = [line for chunk in awx.iter_output(42, 1, page_lines=2) for line in chunk.lines]
    assert lines == ["l1", "l2", "l3", "l4"]


# ---------------------------------------------------------------- cancel and jobs_since


def test_cancel(routes: Routes, awx: AwxClient) -> None:
    routes.add("GET", f"{API}jobs/42/cancel/", reply(200, {"can_cancel": True}))
    routes.add("POST", f"{API}jobs/42/cancel/", reply(202))
    assert awx.cancel(42) is True
    routes.add("GET", f"{API}jobs/43/cancel/", reply(200, {"can_cancel": False}))
    assert awx.cancel(43) is False
    routes.add("GET", f"{API}jobs/44/cancel/", reply(200, {"can_cancel": True}))
    routes.add("POST", f"{API}jobs/44/cancel/", reply(405, {"detail": 'Method "POST" not allowed.'}))
    assert awx.cancel(44) is False
    assert routes.count("POST", f"{API}jobs/43/cancel/") == 0


def test_cancel_can_wait_for_the_job_to_finish(routes: Routes, awx: AwxClient) -> None:
    routes.add("GET", f"{API}jobs/42/cancel/", reply(200, {"can_cancel": True}))
    routes.add("POST", f"{API}jobs/42/cancel/", reply(202))
    routes.add("GET", f"{API}jobs/42/", reply(200, job_body(42, "running")), reply(200, job_body(42, "canceled")))
    assert awx.cancel(42, wait_seconds=2.0) is True
    assert routes.count("GET", f"{API}jobs/42/") == 2


def test_jobs_since_filters_by_time_and_extra_vars_across_pages(routes: Routes, awx: AwxClient) -> None:
    since = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    page2 = f"{API}job_templates/7/jobs/?page=2"
    mine = job_body(50, "running")
    other = job_body(49, "successful", extra_vars=json.dumps({"stack_image_tag": "latest"}))
    listed_without_vars = {k: v for k, v in job_body(48, "successful").items() if k != "extra_vars"}
    routes.add(
        "GET",
        f"{API}job_templates/7/jobs/",
        lambda r: (
            reply(200, {"next": page2, "results": [mine, other]})
            if "page" not in r.url.params
            else reply(200, {"next": None, "results": [listed_without_vars]})
        ),
    )
    routes.add("GET", f"{API}jobs/48/", reply(200, job_body(48, "successful")))
    found = awx.jobs_since(TEMPLATE, since, {"stack_image_tag": "1.0.3"})
    assert [job.id for job in found] == [50, 48]
    first = routes.sent("GET", f"{API}job_templates/7/jobs/")[0].url.params
    assert first["created__gt"] == "2026-11-26T10:00:00Z"
    assert [job.id for job in awx.jobs_since(7, since - timedelta(days=1))] == [50, 49, 48]


def test_controller_api_path_and_basic_auth() -> None:
    routes = Routes().add("GET", "/api/controller/v2/jobs/5/", reply(200, job_body(5, "running")))
    with AwxClient(
        SERVER, api_path="/api/controller/v2/", username="admin", password=CANARY, transport=routes.transport()
    ) as awx:
        job = awx.job(5)
    assert job.ui_url == f"{SERVER}/execution/jobs/playbook/5/output"
    assert routes.requests[0].headers["authorization"].startswith("Basic ")


# ---------------------------------------------------------------- secrets


def test_the_token_is_never_logged_or_shown(routes: Routes, awx: AwxClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    routes.add("GET", f"{API}job_templates/", reply(401, {"detail": "Authentication credentials were not provided."}))
    routes.add("POST", f"{API}job_templates/7/launch/", httpx.ConnectError("refused"))
    routes.add("GET", f"{API}job_templates/7/jobs/", reply(403, {"detail": "no permission"}))
    errors: list[BaseException] = []
    for action in (lambda: awx.find_template("x"), lambda: awx.launch(TEMPLATE, {"stack_image_tag": "1"})):
        with pytest.raises(ApiError) as caught:
            action()
        errors.append(caught.value)
    assert routes.requests[0].headers["authorization"] == f"Bearer {CANARY}"
    texts = [str(e) for e in errors] + [repr(e) for e in errors] + [repr(awx), str(awx)]
    texts += [record.getMessage() for record in caplog.records]
    assert "Authentication credentials were not provided" in texts[0]
    assert all(CANARY not in text for text in texts)
