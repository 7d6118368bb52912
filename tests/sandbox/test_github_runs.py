"""The GitHub emulator's workflows at work: pushes start the matching workflows, builds push images, fail on a
fault, chain themselves (downstream dispatch, AWX launch) and send signed webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from sandbox.github.webhooks import signatures
from sandbox.runtime import Sandbox
from sandbox.scenario import Webhook
from tests.conftest import PATIENT_AWX_SECONDS, awx_timeout
from tests.sandbox.test_github import (
    FACTS_INPUTS,
    FRONTEND,
    SPEED,
    STACK,
    api,
    push,
    scenario,
    wait_for,
    wait_run,
)


def runs_of(client: httpx.Client, repository: str, **params: str) -> list[dict[str, Any]]:
    return client.get(f"/repos/{repository}/actions/runs", params=params).json()["workflow_runs"]


def private(sb: Sandbox, run_id: int, name: str) -> Any:
    return sb.call(lambda: getattr(sb.github.state.runs[run_id], name))


# ---------------------------------------------------------------- pushes start the matching workflows


def test_push_starts_matching_workflows(make_sandbox: Callable[..., Sandbox]):
    sb = make_sandbox(scenario(), speed=SPEED)
    with api(sb) as gh:
        staging = push(sb, FRONTEND, "staging")
        [run] = runs_of(gh, FRONTEND)
        assert staging["runs"] == [run["id"]]
        assert (run["name"], run["event"], run["head_branch"]) == ("build staging", "push", "staging")
        assert run["head_sha"] == staging["sha"]
        assert gh.get(f"/repos/{FRONTEND}/branches/staging").json()["commit"]["sha"] == staging["sha"]

        tag = push(sb, STACK, "refs/tags/1.0.3")
        [tag_run] = runs_of(gh, STACK)
        assert tag["runs"] == [tag_run["id"]]
        # build main builds every tag (as the real build-main.yaml's `tags: ['**']`); GitHub shows a tag push's run
        # with the tag's name as head_branch and the tagged commit as head_sha
        assert (tag_run["name"], tag_run["event"], tag_run["head_branch"]) == ("build main", "push", "1.0.3")
        assert tag_run["head_sha"] == tag["sha"]
        assert tag_run["path"] == ".github/workflows/build-main.yaml"
        listed = {t["name"]: t["commit"]["sha"] for t in gh.get(f"/repos/{STACK}/tags").json()}
        assert listed["1.0.3"] == tag["sha"]

        [two_number_run] = push(sb, STACK, "refs/tags/1.0")["runs"]  # any tag, not only production-grade ones
        assert private(sb, two_number_run, "ref") == "refs/tags/1.0"
        assert push(sb, FRONTEND, "master")["runs"] == []
        assert push(sb, FRONTEND, "refs/tags/2.1.3-rc1")["runs"] == []  # '[0-9]+.[0-9]+.[0-9]+' is the whole name
        two_numbers = push(sb, FRONTEND, "refs/tags/2.1")
        assert [r["name"] for r in runs_of(gh, FRONTEND, head_sha=two_numbers["sha"])] == ["build production"]
        main = push(sb, STACK, "master", message="Bump\n\nbody")
        [main_run] = runs_of(gh, STACK, head_sha=main["sha"])
        assert (main_run["name"], main_run["event"], main_run["display_title"]) == ("build main", "push", "Bump")


def test_builds_push_a_new_image(make_sandbox: Callable[..., Sandbox]):
    sb = make_sandbox(scenario(), speed=SPEED)
    before = sb.call(sb.registry.resolve, "xchem/fragalysis-stack:1.0.3")
    stable_before = sb.call(sb.registry.resolve, "xchem/fragalysis-stack:stable")
    with api(sb) as gh:
        [run_id] = push(sb, STACK, "refs/tags/1.0.3")["runs"]
        assert wait_run(gh, STACK, run_id)["conclusion"] == "success"
    digest = private(sb, run_id, "image_digest")
    assert digest is not None
    assert digest.startswith("sha256:")
    # build main pushes the tag only (the stack has no `stable`: FACTS.md, "TAG = latest unless ... for a tag")
    assert private(sb, run_id, "image_tags") == ["1.0.3"]
    assert sb.call(sb.registry.resolve, "xchem/fragalysis-stack:1.0.3") == digest
    assert sb.call(sb.registry.resolve, "xchem/fragalysis-stack:stable") == stable_before
    assert before is None
    assert digest != stable_before


# ---------------------------------------------------------------- a failing build


def test_failing_build_fault(make_sandbox: Callable[..., Sandbox]):
    faults = {"failing_builds": [{"repository": FRONTEND, "workflow": "build staging", "step": "Build", "count": 1}]}
    sb = make_sandbox(scenario(downstream=True), speed=SPEED, faults=faults)
    with api(sb) as gh:
        [failed_id] = push(sb, FRONTEND, "staging")["runs"]
        failed = wait_run(gh, FRONTEND, failed_id)
        assert failed["conclusion"] == "failure"
        [job] = gh.get(failed["jobs_url"]).json()["jobs"]
        assert job["conclusion"] == "failure"
        steps = {step["name"]: step["conclusion"] for step in job["steps"]}
        assert steps == {
            "Set up job": "success",
            "Checkout": "success",
            "Build": "failure",
            "Push": "skipped",
            "Trigger stack": "skipped",
            "Complete job": "skipped",
        }
        assert private(sb, failed_id, "image_digest") is None
        assert runs_of(gh, STACK) == []  # nothing downstream
        assert sb.runtime.faults.failing_builds[0].count == 0
        [next_id] = push(sb, FRONTEND, "staging")["runs"]
        assert wait_run(gh, FRONTEND, next_id)["conclusion"] == "success"


def test_cancel_a_run(make_sandbox: Callable[..., Sandbox]):
    loaded = scenario()
    frontend = loaded.repository(FRONTEND)
    assert frontend is not None
    frontend.workflows[0].duration_seconds = 36000.0  # 30 s at this speed: still running when cancelled
    sb = make_sandbox(loaded, speed=SPEED)
    with api(sb) as gh:
        [run_id] = push(sb, FRONTEND, "staging")["runs"]
        cancel = f"/repos/{FRONTEND}/actions/runs/{run_id}/cancel"
        assert gh.post(cancel).status_code == 202
        run = wait_run(gh, FRONTEND, run_id)
        assert run["conclusion"] == "cancelled"
        assert gh.get(run["jobs_url"]).json()["jobs"][0]["conclusion"] == "cancelled"
        too_late = gh.post(cancel)
        assert too_late.status_code == 409
        assert private(sb, run_id, "image_digest") is None


# ---------------------------------------------------------------- chaining


def test_frontend_build_dispatches_the_stack_build(make_sandbox: Callable[..., Sandbox]):
    sb = make_sandbox(scenario(downstream=True), speed=SPEED)
    with api(sb) as gh:
        [frontend_id] = push(sb, FRONTEND, "staging")["runs"]
        assert wait_run(gh, FRONTEND, frontend_id)["conclusion"] == "success"
        [stack_run] = wait_for(lambda: runs_of(gh, STACK), "the stack build")
        assert (stack_run["name"], stack_run["event"], stack_run["head_branch"]) == (
            "build main",
            "workflow_dispatch",
            "master",
        )
        assert private(sb, stack_run["id"], "inputs") == FACTS_INPUTS
        assert private(sb, frontend_id, "downstream_runs") == [stack_run["id"]]
        steps = gh.get(f"/repos/{FRONTEND}/actions/runs/{frontend_id}/jobs").json()["jobs"][0]["steps"]
        trigger = next(step for step in steps if step["name"] == "Trigger stack")
        assert trigger["conclusion"] == "success"
        assert wait_run(gh, STACK, stack_run["id"])["conclusion"] == "success"


def test_without_trigger_downstream_the_step_is_skipped(make_sandbox: Callable[..., Sandbox]):
    sb = make_sandbox(scenario(downstream=False), speed=SPEED)
    with api(sb) as gh:
        [frontend_id] = push(sb, FRONTEND, "staging")["runs"]
        run = wait_run(gh, FRONTEND, frontend_id)
        assert run["conclusion"] == "success"
        steps = gh.get(run["jobs_url"]).json()["jobs"][0]["steps"]
        assert next(s for s in steps if s["name"] == "Trigger stack")["conclusion"] == "skipped"
        assert runs_of(gh, STACK) == []


def test_stack_build_launches_awx_over_http(make_sandbox: Callable[..., Sandbox]):
    """Needs the AWX emulator (issue 2): the stack build finds and launches the template over AWX's API."""
    # the build waits for the job, whose default timeout is 1.5 real seconds at this speed
    sb = make_sandbox(awx_timeout(PATIENT_AWX_SECONDS, scenario(awx=True)), speed=SPEED)
    with api(sb) as gh:
        [run_id] = push(sb, STACK, "master")["runs"]
        run = wait_run(gh, STACK, run_id)
        assert run["conclusion"] == "success", private(sb, run_id, "error")
        steps = gh.get(run["jobs_url"]).json()["jobs"][0]["steps"]
        assert next(s for s in steps if s["name"] == "Trigger AWX")["conclusion"] == "success"
    jobs = private(sb, run_id, "awx_jobs")
    assert list(jobs) == ["Staging Fragalysis Stack (Version Change)"]  # a master build: staging only
    job_id = jobs["Staging Fragalysis Stack (Version Change)"]
    awx = sb.scenario.awx
    base = sb.urls["awx"] + awx.base_path
    job = httpx.get(f"{base}jobs/{job_id}/", headers={"Authorization": f"Bearer {awx.token}"}).json()
    assert job["status"] in ("successful", "canceled")
    assert json.loads(job["extra_vars"])["stack_image_tag"] == "latest"
    launches = [r for r in sb.requests("awx") if r.method == "POST" and r.path.endswith("/launch/")]
    assert [r.user_agent for r in launches] == ["sandbox-github-actions"]


STAGING_VC = "Staging Fragalysis Stack (Version Change)"
PRODUCTION_VC = "Production Fragalysis Stack (Version Change)"


def awx_job(sb: Sandbox, job_id: int) -> dict[str, Any]:
    awx = sb.scenario.awx
    url = f"{sb.urls['awx']}{awx.base_path}jobs/{job_id}/"
    return httpx.get(url, headers={"Authorization": f"Bearer {awx.token}"}).json()


def stack_image(sb: Sandbox, namespace: str) -> str:
    sts = sb.call(sb.kubernetes.statefulset, namespace, "stack")
    assert sts is not None
    return str(sts["spec"]["template"]["spec"]["containers"][0]["image"])


def test_a_production_tag_deploys_to_staging_and_production(make_sandbox: Callable[..., Sandbox]):
    """build main for tag 1.0.3: pushes :1.0.3, then (TRIGGER_AWX) launches Staging and Production side by side."""
    sb = make_sandbox(awx_timeout(PATIENT_AWX_SECONDS, scenario(awx=True)), speed=SPEED)
    with api(sb) as gh:
        tag = push(sb, STACK, "refs/tags/1.0.3", message="Release 1.0.3")
        [run_id] = tag["runs"]
        run = wait_run(gh, STACK, run_id)
        assert run["conclusion"] == "success", private(sb, run_id, "error")
        assert (run["name"], run["event"], run["head_branch"], run["head_sha"]) == (
            "build main",
            "push",
            "1.0.3",
            tag["sha"],
        )
        steps = gh.get(run["jobs_url"]).json()["jobs"][0]["steps"]
        assert next(s for s in steps if s["name"] == "Trigger AWX")["conclusion"] == "success"
    digest = sb.call(sb.registry.resolve, "xchem/fragalysis-stack:1.0.3")
    assert digest == private(sb, run_id, "image_digest")
    jobs = private(sb, run_id, "awx_jobs")
    assert set(jobs) == {STAGING_VC, PRODUCTION_VC}
    for template, job_id in jobs.items():
        job = awx_job(sb, job_id)
        assert job["name"] == template
        assert job["status"] == "successful"
        assert json.loads(job["extra_vars"])["stack_image_tag"] == "1.0.3"
    for namespace in ("staging-stack", "production-stack"):
        assert stack_image(sb, namespace) == "xchem/fragalysis-stack:1.0.3"
        pods = sb.call(sb.kubernetes.pods, namespace, {"name": "stack"})
        assert {p["status"]["containerStatuses"][0]["imageID"] for p in pods} == {
            f"docker.io/xchem/fragalysis-stack@{digest}"
        }


def test_any_other_tag_deploys_to_staging_only(make_sandbox: Callable[..., Sandbox]):
    sb = make_sandbox(awx_timeout(PATIENT_AWX_SECONDS, scenario(awx=True)), speed=SPEED)
    with api(sb) as gh:
        [run_id] = push(sb, STACK, "refs/tags/1.0.3-RC1")["runs"]
        run = wait_run(gh, STACK, run_id)
        assert run["conclusion"] == "success", private(sb, run_id, "error")
    # the image tag is the tag's slug (GITHUB_REF_SLUG: lower case), not a production-grade one
    assert private(sb, run_id, "image_tags") == ["1.0.3-rc1"]
    assert list(private(sb, run_id, "awx_jobs")) == [STAGING_VC]
    assert stack_image(sb, "staging-stack") == "xchem/fragalysis-stack:1.0.3-rc1"
    assert stack_image(sb, "production-stack") == "xchem/fragalysis-stack:1.0.2"  # untouched


def test_without_a_launch_for_the_ref_the_awx_step_is_skipped(make_sandbox: Callable[..., Sandbox]):
    loaded = scenario(awx=True)
    stack = loaded.repository(STACK)
    assert stack is not None
    main = stack.workflows[0]
    main.awx = [launch for launch in main.awx if launch.when_ref_matches is not None]  # production only
    sb = make_sandbox(loaded, speed=SPEED)
    with api(sb) as gh:
        [run_id] = push(sb, STACK, "refs/tags/2.0")["runs"]
        run = wait_run(gh, STACK, run_id)
        assert run["conclusion"] == "success"
        steps = {s["name"]: s["conclusion"] for s in gh.get(run["jobs_url"]).json()["jobs"][0]["steps"]}
    assert (steps["Push"], steps["Trigger AWX"]) == ("success", "skipped")
    assert private(sb, run_id, "awx_jobs") == {}
    assert [r for r in sb.requests("awx") if r.path.endswith("/launch/")] == []


def test_dispatch_on_a_tag_builds_the_tag(make_sandbox: Callable[..., Sandbox]):
    """The image tag follows the run's ref, not its event: a dispatch on refs/tags/1.0.2 builds :1.0.2."""
    sb = make_sandbox(scenario(), speed=SPEED)
    dispatches = f"/repos/{STACK}/actions/workflows/build-main.yaml/dispatches"
    with api(sb) as gh:
        on_tag = gh.post(dispatches, json={"ref": "refs/tags/1.0.2", "return_run_details": True}).json()
        on_master = gh.post(dispatches, json={"ref": "master", "return_run_details": True}).json()
        for run_id in (on_tag["workflow_run_id"], on_master["workflow_run_id"]):
            assert wait_run(gh, STACK, run_id)["conclusion"] == "success"
    assert private(sb, on_tag["workflow_run_id"], "image_tags") == ["1.0.2"]
    assert private(sb, on_master["workflow_run_id"], "image_tags") == ["latest"]


def test_awx_refusing_fails_the_step(make_sandbox: Callable[..., Sandbox]):
    sb = make_sandbox(scenario(awx=True), speed=SPEED, faults={"awx": {"error_rate": 1.0, "error_status": 503}})
    with api(sb) as gh:
        [run_id] = push(sb, STACK, "master")["runs"]
        run = wait_run(gh, STACK, run_id)
        assert run["conclusion"] == "failure"
        steps = {s["name"]: s["conclusion"] for s in gh.get(run["jobs_url"]).json()["jobs"][0]["steps"]}
        assert steps["Push"] == "success"
        assert steps["Trigger AWX"] == "failure"
        assert "503" in private(sb, run_id, "error")


# ---------------------------------------------------------------- webhooks


def test_github_signature_test_vector():
    headers = signatures("It's a Secret to Everybody", b"Hello, World!")
    assert headers["X-Hub-Signature-256"] == ("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")


def test_signed_push_and_workflow_run_webhooks(make_sandbox: Callable[..., Sandbox], receiver):
    url, received = receiver
    secret = "webhook-secret"
    sb = make_sandbox(scenario(webhook=Webhook(url=url, secret=secret)), speed=SPEED)
    with api(sb) as gh:
        pushed = push(sb, FRONTEND, "staging", message="Change the frontend")
        [run_id] = pushed["runs"]
        wait_run(gh, FRONTEND, run_id)
    wait_for(lambda: len(received) >= 4, "four deliveries")
    # the receiver records a delivery before it answers: wait until the sender has the four answers too
    wait_for(lambda: sb.call(lambda: sum(d.delivered.is_set() for d in sb.github.deliveries)) >= 4, "the four answers")
    guids = set()
    for headers, body in received:
        lowered = {k.lower(): v for k, v in headers.items()}
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(lowered["x-hub-signature-256"], expected)
        assert lowered["x-hub-signature"] == "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
        assert lowered["content-type"] == "application/json"
        assert lowered["user-agent"].startswith("GitHub-Hookshot/")
        assert lowered["x-github-hook-id"].isdigit()
        guids.add(str(uuid.UUID(lowered["x-github-delivery"])))
    assert len(guids) == len(received)
    events = [(h["X-GitHub-Event"], json.loads(b).get("action")) for h, b in received]
    assert events == [
        ("push", None),
        ("workflow_run", "requested"),
        ("workflow_run", "in_progress"),
        ("workflow_run", "completed"),
    ]
    payloads = [json.loads(body) for _, body in received]
    push_event = payloads[0]
    assert push_event["ref"] == "refs/heads/staging"
    assert push_event["after"] == pushed["sha"]
    assert push_event["before"] != pushed["sha"]
    assert (push_event["created"], push_event["deleted"], push_event["forced"]) == (False, False, False)
    assert push_event["head_commit"]["id"] == pushed["sha"]
    assert push_event["head_commit"]["message"] == "Change the frontend"
    assert push_event["repository"]["full_name"] == FRONTEND
    assert "name" in push_event["pusher"]
    statuses = [(p["workflow_run"]["status"], p["workflow_run"]["conclusion"]) for p in payloads[1:]]
    assert statuses == [("queued", None), ("in_progress", None), ("completed", "success")]
    for payload in payloads[1:]:
        assert payload["workflow_run"]["id"] == run_id
        assert payload["workflow"]["path"] == ".github/workflows/build-staging.yaml"
        assert payload["repository"]["full_name"] == FRONTEND
    recorded = sb.call(lambda: [(d.event, d.action, d.status) for d in sb.github.deliveries])
    assert recorded == [
        ("push", None, 204),
        ("workflow_run", "requested", 204),
        ("workflow_run", "in_progress", 204),
        ("workflow_run", "completed", 204),
    ]


def test_a_failing_receiver_does_not_stop_the_run(make_sandbox: Callable[..., Sandbox]):
    sb = make_sandbox(scenario(webhook=Webhook(url="http://127.0.0.1:9/nothing", secret="s")), speed=SPEED)
    with api(sb) as gh:
        [run_id] = push(sb, FRONTEND, "staging")["runs"]
        assert wait_run(gh, FRONTEND, run_id)["conclusion"] == "success"
    errors = wait_for(
        lambda: (lambda found: found if len(found) >= 4 else None)(
            sb.call(lambda: [d.error for d in sb.github.deliveries if d.delivered.is_set()])
        ),
        "the failed deliveries",
    )
    assert all(error is not None for error in errors)
