"""The AWX emulator's REST API v2 over real HTTP against the in-process sandbox: auth, templates by name and
paging, launch (ignored_fields, variables_needed_to_start, parse errors), job statuses, cancel, allow_simultaneous,
job filters, stdout ranges, job events, injected faults, and the playbooks against the Kubernetes emulator."""

from __future__ import annotations

import time
from typing import Any

import httpx

from sandbox.runtime import Sandbox
from sandbox.scenario import AwxScenario, JobTemplate, KubernetesScenario, Namespace
from tests.conftest import PATIENT_AWX_SECONDS, awx_timeout, kube_http, wait_for

STAGING_VC = "Staging Fragalysis Stack (Version Change)"
ORDER = ["pending", "waiting", "running"]


def api(sb: Sandbox, *, auth: Any = None, base: str = "/api/v2/") -> httpx.Client:
    if auth is None:
        auth = {"Authorization": f"Bearer {sb.scenario.awx.token}"}
    headers = auth if isinstance(auth, dict) else {}
    basic = auth if isinstance(auth, tuple) else None
    return httpx.Client(base_url=sb.urls["awx"] + base, headers=headers, auth=basic, timeout=10)


def wait_job(client: httpx.Client, job_id: int, *, processed: bool = True) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = client.get(f"jobs/{job_id}/").json()
        finished = job["status"] in ("successful", "failed", "error", "canceled")
        return job if finished and (job["event_processing_finished"] or not processed) else None

    return wait_for(done, f"job {job_id} to finish")


def awx_only(*templates: JobTemplate, organizations: list[str] | None = None) -> dict[str, Any]:
    """Scenario changes for ``make_sandbox``: these templates only."""
    return {"awx": AwxScenario(templates=list(templates), organizations=organizations or ["Default"])}


def launch(client: httpx.Client, template_id: int, **body: Any) -> httpx.Response:
    return client.post(f"job_templates/{template_id}/launch/", json=body)


# ---------------------------------------------------------------- roots and auth


def test_versions_root_and_authentication(make_sandbox):
    sb = make_sandbox()
    url = sb.urls["awx"]
    versions = httpx.get(f"{url}/api/").json()
    assert versions["available_versions"] == {"v2": "/api/v2/"}
    root = httpx.get(f"{url}/api/v2/").json()
    assert root["job_templates"] == "/api/v2/job_templates/"
    assert httpx.get(f"{url}/api/v2/ping/").json()["version"]

    anonymous = httpx.get(f"{url}/api/v2/job_templates/")
    assert anonymous.status_code == 401
    assert anonymous.json()["detail"].startswith("Authentication credentials were not provided.")
    assert anonymous.headers["www-authenticate"].startswith("Bearer realm=api")
    with api(sb, auth={"Authorization": "Bearer nope"}) as client:
        assert client.get("job_templates/").status_code == 401
    with api(sb, auth=(sb.scenario.awx.username, "nope")) as client:
        wrong_password = client.get("job_templates/")
    assert wrong_password.status_code == 401
    assert wrong_password.json()["detail"].startswith("Invalid username/password.")

    with api(sb, auth=(sb.scenario.awx.username, sb.scenario.awx.password)) as client:
        basic = client.get("job_templates/")
    assert basic.status_code == 200
    assert basic.json()["count"] == 5  # the four of FACTS.md and one developer's
    with api(sb) as client:
        assert client.get("me/").json()["results"][0]["username"] == sb.scenario.awx.username
        assert client.get("job_templates/99/").json() == {"detail": "Not found."}
        assert client.get("job_templates/99/").status_code == 404
        assert client.get("jobs/1/").status_code == 404
        assert client.put("jobs/").json() == {"detail": 'Method "PUT" not allowed.'}


def test_controller_base_path(make_sandbox):
    sb = make_sandbox(awx=AwxScenario(base_path="/api/controller/v2/", templates=[JobTemplate(name="Deploy")]))
    url = sb.urls["awx"]
    versions = httpx.get(f"{url}/api/controller/").json()
    assert versions["available_versions"] == {"v2": "/api/controller/v2/"}
    with api(sb, base="/api/controller/v2/") as client:
        found = client.get("job_templates/", params={"name": "Deploy"}).json()
        assert found["count"] == 1
        template = found["results"][0]
        assert template["url"] == "/api/controller/v2/job_templates/1/"
        assert template["related"]["launch"] == "/api/controller/v2/job_templates/1/launch/"
    with api(sb) as client:
        assert client.get("job_templates/").status_code == 404


# ---------------------------------------------------------------- templates


def test_template_names_are_unique_per_organisation_only(make_sandbox):
    sb = make_sandbox(
        **awx_only(
            JobTemplate(name="Redeploy", organization="Staging"),
            JobTemplate(name="Redeploy", organization="Production", namespace="production-stack"),
            JobTemplate(name="Other", organization="Staging"),
            organizations=["Staging", "Production"],
        )
    )
    with api(sb) as client:
        found = client.get("job_templates/", params={"name": "Redeploy"}).json()
        assert found["count"] == 2
        orgs = {t["summary_fields"]["organization"]["name"] for t in found["results"]}
        assert orgs == {"Staging", "Production"}
        one = client.get("job_templates/", params={"name": "Redeploy", "organization__name": "Production"}).json()
        assert [t["id"] for t in one["results"]] == [2]
        assert client.get("job_templates/", params={"name": "redeploy"}).json()["count"] == 0
        assert client.get("job_templates/", params={"name__icontains": "redeploy"}).json()["count"] == 2
        assert client.get("organizations/").json()["count"] == 2


def test_paging_follows_relative_next_links(make_sandbox):
    templates = [JobTemplate(name=f"Template {index:02d}") for index in range(1, 31)]
    sb = make_sandbox(**awx_only(*templates))
    with api(sb) as client:
        first = client.get("job_templates/").json()
        assert first["count"] == 30
        assert len(first["results"]) == 25
        assert first["next"] == "/api/v2/job_templates/?page=2"
        assert first["previous"] is None

        names: list[str] = []
        page = client.get("job_templates/", params={"page_size": 7, "order_by": "-name"}).json()
        while True:
            names += [t["name"] for t in page["results"]]
            if page["next"] is None:
                break
            assert page["next"].startswith("/api/v2/job_templates/?")
            page = httpx.get(sb.urls["awx"] + page["next"], headers=client.headers).json()
        assert names == sorted((t.name for t in templates), reverse=True)
        assert page["previous"] == "/api/v2/job_templates/?order_by=-name&page=4&page_size=7"

        assert len(client.get("job_templates/", params={"page_size": 1000}).json()["results"]) == 30
        assert client.get("job_templates/", params={"page": 9}).json() == {"detail": "Invalid page."}


# ---------------------------------------------------------------- launch


def test_extra_vars_are_ignored_when_the_template_does_not_prompt(make_sandbox):
    quiet = JobTemplate(name="Quiet", ask_variables_on_launch=False, extra_vars={"stack_image_tag": "stable"})
    sb = make_sandbox(**awx_only(quiet), faults={"awx_jobs": [{"template": "Quiet", "outcome": "pending"}]})
    with api(sb) as client:
        response = launch(client, 1, extra_vars={"stack_image_tag": "1.0.3"}, limit="web")
        assert response.status_code == 201
        body = response.json()
        assert body["ignored_fields"] == {"extra_vars": {"stack_image_tag": "1.0.3"}, "limit": "web"}
        assert body["job"] == body["id"] == 1
        assert body["status"] == "pending"
        assert body["type"] == "job"
        assert response.headers["location"] == f"{sb.urls['awx']}/api/v2/jobs/1/"
        job = client.get("jobs/1/").json()
        assert job["extra_vars"] == '{"stack_image_tag": "stable"}'
        template = client.get("job_templates/1/").json()
        assert template["ask_variables_on_launch"] is False
        assert "stack_image_tag: stable" in template["extra_vars"]


def test_launch_requirements_and_bad_input(make_sandbox):
    survey = JobTemplate(name="Survey", ask_variables_on_launch=False, survey_required=["stack_image_tag"])
    sb = make_sandbox(**awx_only(survey), faults={"awx_jobs": [{"template": "Survey", "outcome": "pending"}]})
    with api(sb) as client:
        needs = client.get("job_templates/1/launch/").json()
        assert needs["variables_needed_to_start"] == ["stack_image_tag"]
        assert needs["can_start_without_user_input"] is False
        assert needs["ask_variables_on_launch"] is False
        assert needs["survey_enabled"] is True

        missing = launch(client, 1, extra_vars={"other": 1})
        assert missing.status_code == 400
        assert missing.json() == {"variables_needed_to_start": ["'stack_image_tag' value missing"]}

        # survey variables are accepted although the template does not prompt for variables
        accepted = launch(client, 1, extra_vars='{"stack_image_tag": "1.0.3", "other": 1}')
        assert accepted.status_code == 201
        assert accepted.json()["ignored_fields"] == {"extra_vars": {"other": 1}}
        assert '"stack_image_tag": "1.0.3"' in accepted.json()["extra_vars"]

        yaml_vars = launch(client, 1, extra_vars="stack_image_tag: latest")
        assert yaml_vars.status_code == 201

        unparsable = launch(client, 1, extra_vars="[1, 2")
        assert unparsable.status_code == 400
        assert unparsable.json()["extra_vars"][0].startswith("Cannot parse as JSON")

        not_json = client.post(
            "job_templates/1/launch/", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 400
        assert not_json.json()["detail"].startswith("JSON parse error")
        assert launch(client, 42).status_code == 404


# ---------------------------------------------------------------- job life


def test_status_sequence_of_a_job_that_errors(make_sandbox):
    # pending for 36 modelled seconds (0.6 real s): the first poll lands in it even on a loaded machine
    broken = JobTemplate(name="Broken", start_seconds=120)
    sb = make_sandbox(speed=60, **awx_only(broken), faults={"awx_jobs": [{"template": "Broken", "outcome": "error"}]})
    with api(sb) as client:
        job_id = launch(client, 1).json()["job"]
        seen: list[str] = []

        def finished() -> bool:
            status = client.get(f"jobs/{job_id}/").json()["status"]
            if not seen or seen[-1] != status:
                seen.append(status)
            return status == "error"

        wait_for(finished, "the job to error")
        assert seen[0] == "pending"
        assert seen[-1] == "error"
        assert [s for s in seen[:-1]] == [s for s in ORDER if s in seen[:-1]]

        job = wait_job(client, job_id)
        assert job["failed"] is True
        assert job["job_explanation"]
        assert "Traceback" in job["result_traceback"]
        assert job["started"]
        assert job["finished"]
        assert isinstance(job["elapsed"], float)
        assert job["elapsed"] >= 0
        assert job["finished"] >= job["started"] >= job["created"]


def test_cancel_then_405_once_finished(make_sandbox):
    sb = make_sandbox(faults={"awx_jobs": [{"template": STAGING_VC, "outcome": "pending", "count": 1}]})
    with api(sb) as client:
        job_id = launch(client, 1, extra_vars={"stack_image_tag": "latest"}).json()["job"]
        assert client.get(f"jobs/{job_id}/cancel/").json() == {"can_cancel": True}
        assert client.post(f"jobs/{job_id}/cancel/").status_code == 202
        job = wait_job(client, job_id)
        assert job["status"] == "canceled"
        assert job["failed"] is True
        assert job["canceled_on"]
        assert client.get(f"jobs/{job_id}/cancel/").json() == {"can_cancel": False}
        too_late = client.post(f"jobs/{job_id}/cancel/")
        assert too_late.status_code == 405
        assert too_late.json() == {"detail": 'Method "POST" not allowed.'}
    # the fault had count 1: it is used up
    assert sb.runtime.faults.awx_jobs[0].count == 0


def test_a_pending_fault_keeps_the_job_pending(make_sandbox):
    sb = make_sandbox(speed=3000, faults={"awx_jobs": [{"template": STAGING_VC, "outcome": "pending"}]})
    with api(sb) as client:
        job_id = launch(client, 1).json()["job"]
        time.sleep(0.3)  # 900 modelled seconds, far past the template's start_seconds
        assert client.get(f"jobs/{job_id}/").json()["status"] == "pending"


def test_without_allow_simultaneous_a_second_job_waits_for_the_first(make_sandbox):
    serial = JobTemplate(name="Serial", start_seconds=60, allow_simultaneous=False)
    sb = make_sandbox(speed=60, **awx_only(serial), faults={"awx_jobs": [{"template": "Serial", "outcome": "error"}]})
    with api(sb) as client:
        first = launch(client, 1).json()["job"]
        second = launch(client, 1).json()["job"]

        def both_done() -> bool:
            # read the second job first: if the first is still busy afterwards, the second was pending before
            two, one = (client.get(f"jobs/{i}/").json() for i in (second, first))
            if one["status"] in ("waiting", "running"):
                assert two["status"] == "pending"
            return one["finished"] is not None and two["finished"] is not None

        wait_for(both_done, "both jobs to finish")
        one, two = (client.get(f"jobs/{i}/").json() for i in (first, second))
        assert two["started"] >= one["finished"]


def test_jobs_list_filters_and_ordering(make_sandbox):
    templates = [JobTemplate(name="A", allow_simultaneous=True), JobTemplate(name="B", allow_simultaneous=True)]
    faults = [{"template": "A", "outcome": "pending"}, {"template": "B", "outcome": "error"}]
    sb = make_sandbox(speed=3000, **awx_only(*templates), faults={"awx_jobs": faults})
    with api(sb) as client:
        ids = [launch(client, t).json()["job"] for t in (1, 1, 2)]
        wait_job(client, ids[2])
        first_created = client.get(f"jobs/{ids[0]}/").json()["created"]

        def listed(**params: Any) -> list[int]:
            response = client.get("jobs/", params=params)
            assert response.status_code == 200, response.text
            return [job["id"] for job in response.json()["results"]]

        assert listed() == ids
        assert listed(job_template=1) == ids[:2]
        assert listed(status="pending") == ids[:2]
        assert listed(status__in="error,canceled") == [ids[2]]
        assert listed(created__gt=first_created) == ids[1:]
        assert listed(created__gte=first_created) == ids
        assert listed(order_by="-id") == ids[::-1]
        assert listed(order_by="-created") == ids[::-1]
        assert listed(id__gt=ids[0], order_by="-id") == ids[:0:-1]
        assert listed(not__status="pending") == [ids[2]]
        assert listed(failed="true") == [ids[2]]
        assert [j["id"] for j in client.get("job_templates/2/jobs/").json()["results"]] == [ids[2]]
        listed_job = client.get("jobs/").json()["results"][0]
        assert "result_traceback" not in listed_job  # a list shows less than the detail view
        bad = client.get("jobs/", params={"colour": "red"})
        assert bad.status_code == 400
        assert "colour" in bad.json()["detail"]


def test_stdout_formats_ranges_and_job_events(make_sandbox):
    sb = make_sandbox(speed=600, faults={"awx_jobs": [{"template": STAGING_VC, "outcome": "failed"}]})
    with api(sb) as client:
        job_id = launch(client, 1, extra_vars={"stack_image_tag": "latest"}).json()["job"]
        job = wait_job(client, job_id)
        assert job["status"] == "failed"

        text = client.get(f"jobs/{job_id}/stdout/", params={"format": "txt"})
        assert text.headers["content-type"].startswith("text/plain")
        assert "fatal: [localhost]: FAILED! =>" in text.text
        assert "PLAY RECAP" in text.text
        assert "failed=1" in text.text
        lines = text.text.splitlines()

        whole = client.get(f"jobs/{job_id}/stdout/", params={"format": "json"}).json()
        assert whole["content"] == text.text
        assert whole["range"] == {"start": 0, "end": len(lines), "absolute_end": len(lines)}
        part = client.get(f"jobs/{job_id}/stdout/", params={"format": "json", "start_line": 1, "end_line": 3}).json()
        assert part["range"] == {"start": 1, "end": 3, "absolute_end": len(lines)}
        assert part["content"] == "".join(line + "\n" for line in lines[1:3])
        ansi = client.get(f"jobs/{job_id}/stdout/", params={"format": "ansi"}).text
        assert "\x1b[0;31mfatal:" in ansi
        download = client.get(f"jobs/{job_id}/stdout/", params={"format": "txt_download"})
        assert "attachment" in download.headers["content-disposition"]
        assert client.get(f"jobs/{job_id}/stdout/", params={"format": "pdf"}).status_code == 404

        events = client.get(f"jobs/{job_id}/job_events/", params={"order_by": "start_line", "page_size": 200}).json()
        results = events["results"]
        assert [e["counter"] for e in results] == list(range(1, len(results) + 1))
        assert results[0]["event"] == "playbook_on_start"
        assert results[-1]["event"] == "playbook_on_stats"
        assert any(e["event"] == "runner_on_failed" and e["failed"] for e in results)
        rebuilt: list[str] = []
        for event in results:
            assert event["start_line"] == len(rebuilt)
            rebuilt += event["stdout"].split("\r\n") if event["end_line"] > event["start_line"] else []
            assert event["end_line"] == len(rebuilt)
        assert rebuilt == lines
        later = client.get(f"jobs/{job_id}/job_events/", params={"start_line__gte": 3}).json()["results"]
        assert all(e["start_line"] >= 3 for e in later)
        assert client.get(f"job_events/{results[0]['id']}/").json()["job"] == job_id


def test_injected_errors_and_rate_limits_look_like_awx(make_sandbox):
    sb = make_sandbox()
    with api(sb) as client:
        sb.set_faults(awx={"fail_next": 1, "error_status": 502})
        failed = client.get("job_templates/")
        assert failed.status_code == 502
        assert "detail" in failed.json()
        sb.set_faults(awx={"rate_limit_rate": 1.0, "retry_after_seconds": 3})
        limited = client.get("job_templates/")
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "3"
        assert "detail" in limited.json()


def test_in_process_interface(make_sandbox):
    sb = make_sandbox(faults={"awx_jobs": [{"template": STAGING_VC, "outcome": "pending"}]})
    launched = sb.call(sb.awx.launch, STAGING_VC, {"stack_image_tag": "1.0.3"})
    assert launched["ignored_fields"] == {}
    jobs = sb.call(sb.awx.jobs)
    assert [job["id"] for job in jobs] == [launched["job"]]
    assert sb.call(sb.awx.job, launched["job"])["extra_vars"] == '{"stack_image_tag": "1.0.3"}'


# ---------------------------------------------------------------- playbooks against the Kubernetes emulator


def kube(sb: Sandbox) -> httpx.Client:
    return kube_http(sb)


def test_version_change_rolls_the_statefulset_out(make_sandbox):
    sb = make_sandbox(awx_timeout(PATIENT_AWX_SECONDS), speed=600)
    with kube(sb) as k8s:
        before = k8s.get("/apis/apps/v1/namespaces/staging-stack/statefulsets/stack").json()
    with api(sb) as client:
        job_id = launch(client, 1, extra_vars={"stack_image_tag": "stable"}).json()["job"]
        job = wait_job(client, job_id)
        stdout = client.get(f"jobs/{job_id}/stdout/", params={"format": "txt"}).text
    assert job["status"] == "successful", stdout
    assert job["failed"] is False
    assert "PLAY RECAP" in stdout
    assert "changed=1" in stdout
    assert "failed=0" in stdout
    with kube(sb) as k8s:
        after = k8s.get("/apis/apps/v1/namespaces/staging-stack/statefulsets/stack").json()
    container = after["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "xchem/fragalysis-stack:stable"
    assert "fragalysis.xchem/redeployed-at" in after["spec"]["template"]["metadata"]["annotations"]
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    status = after["status"]
    assert status["currentRevision"] == status["updateRevision"] != before["status"]["updateRevision"]
    assert status["updatedReplicas"] == status["readyReplicas"] == 2


def test_deploy_creates_a_missing_statefulset(make_sandbox):
    loaded = awx_timeout(PATIENT_AWX_SECONDS)
    kubernetes = KubernetesScenario(
        namespaces=[
            ns if ns.name != "staging-stack" else Namespace(name="staging-stack") for ns in loaded.kubernetes.namespaces
        ],
        pod_timings=loaded.kubernetes.pod_timings,
    )
    sb = make_sandbox(loaded, speed=600, kubernetes=kubernetes)
    with kube(sb) as k8s:
        assert k8s.get("/apis/apps/v1/namespaces/staging-stack/statefulsets/stack").status_code == 404
    with api(sb) as client:
        deploy = client.get("job_templates/", params={"name": "Staging Fragalysis Stack"}).json()["results"][0]
        job_id = launch(client, deploy["id"], extra_vars={"stack_image_tag": "latest"}).json()["job"]
        job = wait_job(client, job_id)
        stdout = client.get(f"jobs/{job_id}/stdout/", params={"format": "txt"}).text
    assert job["status"] == "successful", stdout
    with kube(sb) as k8s:
        created = k8s.get("/apis/apps/v1/namespaces/staging-stack/statefulsets/stack").json()
    assert created["spec"]["replicas"] == 2
    assert created["metadata"]["labels"] == {"name": "stack"}
    container = created["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "stack"
    assert container["image"] == "xchem/fragalysis-stack:latest"
    assert container["imagePullPolicy"] == "Always"
    assert container["readinessProbe"]["tcpSocket"]["port"] == 80
    assert created["status"]["readyReplicas"] == 2


def test_a_job_past_its_timeout_fails(make_sandbox):
    # The playbook makes three unscaled HTTP calls before its first retry line (tens of ms each on a loaded
    # machine): at speed 30 the one-minute timeout is 2 real seconds (at speed 600 it was 0.1, often too short).
    sb = make_sandbox(awx_timeout(60), speed=30)
    with api(sb) as client:
        job_id = launch(client, 1, extra_vars={"stack_image_tag": "stable"}).json()["job"]
        job = wait_job(client, job_id)
        stdout = client.get(f"jobs/{job_id}/stdout/", params={"format": "txt"}).text
    # the roll-out of two pods takes minutes; the template allows one
    assert job["status"] == "failed"
    assert job["job_explanation"] == "Job terminated due to timeout"
    assert "FAILED - RETRYING" in stdout
    assert "PLAY RECAP" not in stdout
