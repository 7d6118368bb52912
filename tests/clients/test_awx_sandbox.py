"""AwxClient against the sandbox's AWX emulator over real HTTP: the happy path, every FACTS.md failure
(ignored extra vars, duplicate names, 400 field errors, failed and canceled jobs) and injected faults, with the
attempts counted from the emulator's request log."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clients.awx import AwxClient, JobStatus
from clients.errors import (
    AmbiguousName,
    ApiError,
    DeadlineExceeded,
    JobFailed,
    LaunchRejected,
    NotFound,
    RateLimited,
)
from clients.retry import RetryPolicy
from clients.waiting import Poll
from sandbox.runtime import Sandbox
from sandbox.scenario import AwxScenario, JobTemplate
from tests.conftest import PATIENT_AWX_SECONDS, awx_timeout

STAGING_VC = "Staging Fragalysis Stack (Version Change)"
FAST = RetryPolicy(attempts=3, backoff_initial=0.02, backoff_max=0.05, jitter=0.0, max_retry_after=2.0)
TAG = {"stack_image_tag": "stable"}  # in the registry: a missing tag would leave the roll-out stuck


def fast_poll() -> Poll:
    return Poll(initial=0.02, factor=1.5, cap=0.1)


def client(sb: Sandbox, **kwargs: Any) -> AwxClient:
    awx = sb.endpoints()["awx"]
    options: dict[str, Any] = {"retry": FAST, "launch_lookup_seconds": 0.5} | kwargs
    return AwxClient(awx["url"], api_path=awx["api_path"], token=awx["token"], **options)


@pytest.fixture
def awx_of() -> Iterator[Callable[..., AwxClient]]:
    made: list[AwxClient] = []

    def make(sb: Sandbox, **kwargs: Any) -> AwxClient:
        made.append(client(sb, **kwargs))
        return made[-1]

    yield make
    for awx in made:
        awx.close()


def only(*templates: JobTemplate, organizations: list[str] | None = None) -> dict[str, Any]:
    return {"awx": AwxScenario(templates=list(templates), organizations=organizations or ["Default"])}


def served(sb: Sandbox, method: str, suffix: str, *, at_least: int = 0) -> list[Any]:
    """The requests the emulator served (the log is written just after the answer: wait a moment for it)."""
    end = time.monotonic() + 5.0
    while True:
        found = [r for r in sb.requests("awx") if r.method == method and r.path.endswith(suffix)]
        if len(found) >= at_least or time.monotonic() > end:
            return found
        time.sleep(0.02)


def test_find_launch_follow_and_stream(make_sandbox: Callable[..., Sandbox], awx_of: Callable[..., AwxClient]) -> None:
    sb = make_sandbox(awx_timeout(PATIENT_AWX_SECONDS), speed=600)
    awx = awx_of(sb)
    template = awx.find_template(STAGING_VC)
    assert template.organization == "Default"
    before = datetime.now(UTC) - timedelta(seconds=5)
    job = awx.launch(template, TAG)
    assert job.status in (JobStatus.PENDING, JobStatus.WAITING, JobStatus.NEW)
    seen: list[JobStatus] = []
    lines: list[str] = []
    done = awx.follow(job, 60, on_status=lambda j: seen.append(j.status), on_output=lines.extend, poll=fast_poll())
    assert done.status is JobStatus.SUCCESSFUL
    assert seen[0] in (JobStatus.PENDING, JobStatus.WAITING, JobStatus.RUNNING)  # it may have moved on already
    assert seen[-1] is JobStatus.SUCCESSFUL
    assert JobStatus.RUNNING in seen
    assert done.started is not None
    assert done.finished is not None
    assert done.started < done.finished
    assert done.elapsed > 0
    assert done.event_processing_finished is True
    assert lines
    assert lines == awx.output_text(done).splitlines()  # streamed once each, in order
    assert [j.id for j in awx.jobs_since(template, before, TAG)] == [job.id]
    assert awx.jobs_since(template, before, {"stack_image_tag": "other"}) == []


def test_ignored_extra_vars(make_sandbox: Callable[..., Sandbox], awx_of: Callable[..., AwxClient]) -> None:
    quiet = JobTemplate(name="Quiet", ask_variables_on_launch=False)
    sb = make_sandbox(**only(quiet), faults={"awx_jobs": [{"template": "Quiet", "outcome": "pending"}]})
    awx = awx_of(sb)
    with pytest.raises(LaunchRejected, match=r"ignored the launch fields extra_vars .*Prompt on launch") as caught:
        awx.launch(awx.find_template("Quiet"), TAG)
    assert caught.value.job_id is not None
    assert "It was canceled" in str(caught.value)
    with pytest.raises(JobFailed) as failed:
        awx.follow(caught.value.job_id, 30, poll=fast_poll())
    assert failed.value.status == "canceled"


def test_duplicate_names_across_organisations(
    make_sandbox: Callable[..., Sandbox], awx_of: Callable[..., AwxClient]
) -> None:
    sb = make_sandbox(
        **only(
            JobTemplate(name="Redeploy", organization="Staging"),
            JobTemplate(name="Redeploy", organization="Production", namespace="production-stack"),
            organizations=["Staging", "Production"],
        )
    )
    awx = awx_of(sb)
    with pytest.raises(
        AmbiguousName, match=r"2 job templates named 'Redeploy'.*Staging.*Production|Production.*Staging"
    ):
        awx.find_template("Redeploy")
    with pytest.raises(NotFound, match=rf"AWX at {sb.urls['awx']} has no job template named 'redeploy'"):
        awx.find_template("redeploy")


def test_missing_survey_variable_is_quoted(
    make_sandbox: Callable[..., Sandbox], awx_of: Callable[..., AwxClient]
) -> None:
    survey = JobTemplate(name="Survey", survey_required=["stack_image_tag"])
    sb = make_sandbox(**only(survey))
    awx = awx_of(sb)
    with pytest.raises(LaunchRejected, match="variables_needed_to_start") as caught:
        awx.launch(awx.find_template("Survey"), {})
    assert "stack_image_tag" in str(caught.value)
    assert len(served(sb, "POST", "/launch/")) == 1


@pytest.mark.parametrize("outcome", ["failed", "error"])
def test_a_failing_job_is_job_failed_with_its_output(
    make_sandbox: Callable[..., Sandbox], awx_of: Callable[..., AwxClient], outcome: str
) -> None:
    sb = make_sandbox(speed=600, faults={"awx_jobs": [{"template": STAGING_VC, "outcome": outcome}]})
    awx = awx_of(sb)
    job = awx.launch(awx.find_template(STAGING_VC), TAG)
    with pytest.raises(JobFailed) as caught:
        awx.follow(job, 60, poll=fast_poll())
    error = caught.value
    assert error.status == outcome
    assert error.url == job.ui_url
    assert error.url in str(error)
    text = awx.output_text(job)
    if outcome == "failed":  # a job in error may have stopped before the playbook wrote anything
        assert error.output_tail
    assert error.output_tail == "\n".join(text.rstrip("\n").splitlines()[-30:])


def test_a_canceled_job_is_job_failed(make_sandbox: Callable[..., Sandbox], awx_of: Callable[..., AwxClient]) -> None:
    sb = make_sandbox(faults={"awx_jobs": [{"template": STAGING_VC, "outcome": "pending"}]})
    awx = awx_of(sb)
    job = awx.launch(awx.find_template(STAGING_VC), TAG)
    assert awx.cancel(job, wait_seconds=30) is True
    with pytest.raises(JobFailed, match=f"AWX job {job.id} .* ended canceled") as caught:
        awx.follow(job, 30, poll=fast_poll())
    assert caught.value.status == "canceled"
    assert awx.cancel(job) is False  # finished: AWX says it can no longer be canceled


def test_a_launch_refused_with_5xx_is_looked_up_then_repeated_once(
    make_sandbox: Callable[..., Sandbox], awx_of: Callable[..., AwxClient]
) -> None:
    sb = make_sandbox(speed=600, faults={"awx": {"fail_next": 1, "error_status": 502, "paths": "/launch/$"}})
    awx = awx_of(sb)
    template = awx.find_template(STAGING_VC)
    before = datetime.now(UTC) - timedelta(seconds=5)
    job = awx.launch(template, TAG)
    assert [r.status for r in served(sb, "POST", "/launch/", at_least=2)] == [502, 201]
    assert served(sb, "GET", f"/job_templates/{template.id}/jobs/")  # it looked before launching again
    assert [j.id for j in awx.jobs_since(template, before)] == [job.id]  # one job, not two


def test_dropped_launches_are_bounded(make_sandbox: Callable[..., Sandbox], awx_of: Callable[..., AwxClient]) -> None:
    sb = make_sandbox(faults={"awx": {"drop_rate": 1.0, "paths": "/launch/$"}})
    awx = awx_of(sb)
    template = awx.find_template(STAGING_VC)
    with pytest.raises(ApiError, match="after 3 attempts, and no job of it turned up"):
        awx.launch(template, TAG)
    assert len(served(sb, "POST", "/launch/", at_least=3)) == awx.launch_attempts == 3
    assert awx.jobs_since(template, datetime.now(UTC) - timedelta(minutes=5)) == []


def test_a_lost_launch_answer_is_looked_up_not_launched_again(
    make_sandbox: Callable[..., Sandbox], awx_of: Callable[..., AwxClient]
) -> None:
    """AWX creates the job but the answer never arrives: the client finds that job instead of doubling it."""
    sb = make_sandbox(speed=600, faults={"awx": {"lose_answer_rate": 1.0, "paths": "/launch/$"}})
    awx = awx_of(sb)
    template = awx.find_template(STAGING_VC)
    job = awx.launch(template, TAG)
    assert len(served(sb, "POST", "/launch/", at_least=1)) == 1
    assert [created["id"] for created in sb.call(sb.awx.jobs)] == [job.id]
    assert job.matches(TAG)


def test_reads_retry_through_5xx_and_429_with_bounded_attempts(
    make_sandbox: Callable[..., Sandbox], awx_of: Callable[..., AwxClient]
) -> None:
    sb = make_sandbox(faults={"awx": {"fail_next": 2, "error_status": 503, "paths": "/job_templates/$"}})
    awx = awx_of(sb)
    assert awx.find_template(STAGING_VC).name == STAGING_VC
    assert [r.status for r in served(sb, "GET", "/job_templates/", at_least=3)] == [503, 503, 200]

    sb.set_faults(awx={"fail_next": 5, "error_status": 500, "paths": "/job_templates/$"})
    with pytest.raises(ApiError, match="answered 500"):
        awx.find_template(STAGING_VC)
    assert len(served(sb, "GET", "/job_templates/", at_least=3 + FAST.attempts)) == 3 + FAST.attempts

    sb.set_faults(awx={"fail_next": 0, "rate_limit_rate": 1.0, "retry_after_seconds": 1, "paths": "/launch/$"})
    with pytest.raises(RateLimited):
        awx.launch(1, TAG)
    assert [r.status for r in served(sb, "POST", "/launch/", at_least=FAST.attempts)] == [
        429
    ] * FAST.attempts  # 429 is safe to repeat


def test_wait_for_job_finds_a_job_that_something_else_launched(make_sandbox, awx_of):
    sb = make_sandbox(speed=600, faults={"awx_jobs": [{"template": STAGING_VC, "outcome": "pending"}]})
    awx = awx_of(sb)
    template = awx.find_template(STAGING_VC)
    since = datetime.now(UTC) - timedelta(seconds=1)
    other = client(sb)  # "the stack build's trigger": another client launches
    launched = other.launch(template, TAG)
    other.close()
    found = awx.wait_for_job(template, since=since, extra_vars=TAG, deadline_seconds=5, poll=fast_poll())
    assert found.id == launched.id
    with pytest.raises(DeadlineExceeded, match="no AWX job of template"):
        awx.wait_for_job(
            template, since=datetime.now(UTC) + timedelta(seconds=30), deadline_seconds=0.3, poll=fast_poll()
        )


def test_follow_returns_early_when_told_to_stop(make_sandbox, awx_of):
    sb = make_sandbox(speed=600, faults={"awx_jobs": [{"template": STAGING_VC, "outcome": "pending"}]})
    awx = awx_of(sb)
    job = awx.launch(awx.find_template(STAGING_VC), TAG)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    # the pending fault holds the job forever: only the stop ends the wait (the deadline would raise instead)
    current = awx.follow(job, 600, poll=Poll(initial=5, cap=5), stop=stop)
    assert current.status is JobStatus.PENDING
