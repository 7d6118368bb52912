"""The AWX emulator's templates for issue 8, through AWX's and Kubernetes' HTTP APIs: the production version
change to a new tag, a tag the registry lacks, a crash-looping release and its forced rollback, and first
deployments (the one-time templates and a developer's template) into a namespace without a stack."""

from __future__ import annotations

from typing import Any

import httpx

from sandbox.runtime import Sandbox
from sandbox.scenario import Namespace, RegistryImage, Scenario
from tests.conftest import PATIENT_AWX_SECONDS, awx_timeout, wait_for
from tests.sandbox.test_awx import api, kube, wait_job

STACK = "xchem/fragalysis-stack"
PRODUCTION = "production-stack"
PRODUCTION_VC = "Production Fragalysis Stack (Version Change)"
STS = f"/apis/apps/v1/namespaces/{PRODUCTION}/statefulsets/stack"


def with_tags(loaded: Scenario, *tags: str) -> Scenario:
    """``loaded`` with more tags of the stack image in the registry."""
    loaded.registry.images = [
        image if image.name != STACK else RegistryImage(name=STACK, tags=[*image.tags, *tags])
        for image in loaded.registry.images
    ]
    return loaded


def template_id(client: httpx.Client, name: str) -> int:
    [found] = client.get("job_templates/", params={"name": name}).json()["results"]
    return int(found["id"])


def launch(client: httpx.Client, template: str, tag: str) -> int:
    response = client.post(
        f"job_templates/{template_id(client, template)}/launch/", json={"extra_vars": {"stack_image_tag": tag}}
    )
    assert response.status_code == 201, response.text
    return int(response.json()["job"])


def stdout(client: httpx.Client, job_id: int) -> str:
    return client.get(f"jobs/{job_id}/stdout/", params={"format": "txt"}).text


def pod(sb: Sandbox, name: str, namespace: str = PRODUCTION) -> dict[str, Any]:
    found = sb.call(sb.kubernetes.pod, namespace, name)
    assert found is not None
    return found


def waiting_reason(sb: Sandbox, name: str, reason: str) -> dict[str, Any] | None:
    """The pod when its container waits for ``reason`` (None also between a pod's removal and its successor)."""
    found = sb.call(sb.kubernetes.pod, PRODUCTION, name)
    statuses = (found or {}).get("status", {}).get("containerStatuses") or []
    waiting = statuses[0]["state"].get("waiting") if statuses else None
    return found if waiting is not None and waiting.get("reason") == reason else None


# ---------------------------------------------------------------- the version change to a new tag


def test_version_change_sets_the_new_tag(make_sandbox):
    sb = make_sandbox(with_tags(awx_timeout(PATIENT_AWX_SECONDS), "1.0.3"), speed=600)
    with api(sb) as client:
        job_id = launch(client, PRODUCTION_VC, "1.0.3")
        job = wait_job(client, job_id)
        assert job["status"] == "successful", stdout(client, job_id)
    with kube(sb) as k8s:
        sts = k8s.get(STS).json()
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"{STACK}:1.0.3"
    assert container["imagePullPolicy"] == "IfNotPresent"  # a fixed tag, unlike latest/stable
    assert sts["status"]["currentRevision"] == sts["status"]["updateRevision"]
    digest = sb.call(sb.registry.resolve, f"{STACK}:1.0.3")
    for name in ("stack-0", "stack-1"):
        status = pod(sb, name)["status"]["containerStatuses"][0]
        assert status["imageID"] == f"docker.io/{STACK}@{digest}"
        assert status["ready"] is True


def test_a_tag_missing_from_the_registry_pulls_back_off_and_the_job_fails(make_sandbox):
    # the job fails at its timeout (5 real seconds at speed 30), which the playbook's real-time HTTP calls must not
    # use up before its first retry on a loaded machine (2 seconds did, with three other test processes running)
    sb = make_sandbox(awx_timeout(150), speed=30)
    with api(sb) as client:
        job_id = launch(client, PRODUCTION_VC, "9.9.9")
        job = wait_job(client, job_id)
        output = stdout(client, job_id)
    assert job["status"] == "failed"
    assert "FAILED - RETRYING" in output
    backing_off = wait_for(lambda: waiting_reason(sb, "stack-1", "ImagePullBackOff"), "ImagePullBackOff")
    assert backing_off["spec"]["containers"][0]["image"] == f"{STACK}:9.9.9"
    assert backing_off["status"]["phase"] == "Pending"
    assert pod(sb, "stack-0")["spec"]["containers"][0]["image"] == f"{STACK}:1.0.2"  # never reached


def test_a_crash_looping_release_fails_the_job_after_its_wait(make_sandbox):
    sb = make_sandbox(with_tags(awx_timeout(150), "1.0.4"), speed=30)
    sb.set_faults(crashloop=[{"namespace": PRODUCTION, "image": f"{STACK}:1.0.4"}])
    with api(sb) as client:
        job_id = launch(client, PRODUCTION_VC, "1.0.4")
        job = wait_job(client, job_id)
        output = stdout(client, job_id)
    assert job["status"] == "failed"
    assert "FAILED - RETRYING" in output
    wait_for(lambda: waiting_reason(sb, "stack-1", "CrashLoopBackOff"), "CrashLoopBackOff")


def test_rollback_by_version_change_needs_the_broken_pod_deleted(make_sandbox):
    """A bad release (1.0.4) crash-loops; its job is canceled; the version change back to 1.0.3 reverts the
    template, but with OrderedReady its job only finishes once the broken pod is deleted (forced rollback)."""
    sb = make_sandbox(with_tags(awx_timeout(PATIENT_AWX_SECONDS), "1.0.3", "1.0.4"), speed=600)
    sb.set_faults(crashloop=[{"namespace": PRODUCTION, "image": f"{STACK}:1.0.4"}])
    with api(sb) as client, kube(sb) as k8s:
        bad_job = launch(client, PRODUCTION_VC, "1.0.4")
        broken = wait_for(lambda: waiting_reason(sb, "stack-1", "CrashLoopBackOff"), "the bad release crash-looping")
        assert client.post(f"jobs/{bad_job}/cancel/").status_code == 202
        assert wait_job(client, bad_job)["status"] == "canceled"

        rollback_job = launch(client, PRODUCTION_VC, "1.0.3")

        def reverted() -> dict[str, Any] | None:
            sts = k8s.get(STS).json()
            image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
            observed = sts["status"]["observedGeneration"] == sts["metadata"]["generation"]
            return sts if image == f"{STACK}:1.0.3" and observed else None

        sts = wait_for(reverted, "the rollback to revert the template")
        # the broken pod stays (two more restarts seen), and so does the rollback job
        restarts = broken["status"]["containerStatuses"][0]["restartCount"]
        wait_for(
            lambda: pod(sb, "stack-1")["status"]["containerStatuses"][0]["restartCount"] >= restarts + 2,
            "two more restarts",
        )
        assert pod(sb, "stack-1")["metadata"]["uid"] == broken["metadata"]["uid"]
        assert client.get(f"jobs/{rollback_job}/").json()["status"] == "running"

        uid = broken["metadata"]["uid"]
        deleted = k8s.request(
            "DELETE",
            f"/api/v1/namespaces/{PRODUCTION}/pods/stack-1",
            json={"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}},
        )
        assert deleted.status_code == 200, deleted.text
        job = wait_job(client, rollback_job)
        assert job["status"] == "successful", stdout(client, rollback_job)
    digest = sb.call(sb.registry.resolve, f"{STACK}:1.0.3")
    for name in ("stack-0", "stack-1"):
        current = pod(sb, name)
        assert current["metadata"]["labels"]["controller-revision-hash"] == sts["status"]["updateRevision"]
        assert current["status"]["containerStatuses"][0]["imageID"] == f"docker.io/{STACK}@{digest}"


# ---------------------------------------------------------------- first deployments


def without_stack(loaded: Scenario, namespace: str) -> Scenario:
    """``loaded`` whose ``namespace`` keeps its database but has no ``stack`` StatefulSet (as before the first
    deployment): a scenario states it as ``statefulsets`` without ``stack``, or ``[]``."""
    namespaces = [
        ns
        if ns.name != namespace
        else Namespace(name=namespace, statefulsets=[s for s in ns.statefulsets if s.name != "stack"])
        for ns in loaded.kubernetes.namespaces
    ]
    return loaded.model_copy(update={"kubernetes": loaded.kubernetes.model_copy(update={"namespaces": namespaces})})


def test_first_production_deployment_into_a_namespace_without_a_stack(make_sandbox):
    sb = make_sandbox(without_stack(with_tags(awx_timeout(PATIENT_AWX_SECONDS), "1.0.3"), PRODUCTION), speed=600)
    with kube(sb) as k8s:
        assert k8s.get(STS).status_code == 404
        assert k8s.get(f"/apis/apps/v1/namespaces/{PRODUCTION}/statefulsets/database").status_code == 200
    with api(sb) as client:
        # the version change needs a StatefulSet to change
        change = launch(client, PRODUCTION_VC, "1.0.3")
        assert wait_job(client, change)["status"] == "failed"
        failed = stdout(client, change)
        assert "Failed to retrieve requested object" in failed
        assert '"reason": "NotFound", "status": 404' in failed
        first = launch(client, "Production Fragalysis Stack", "1.0.3")
        job = wait_job(client, first)
        assert job["status"] == "successful", stdout(client, first)
    with kube(sb) as k8s:
        sts = k8s.get(STS).json()
    assert sts["spec"]["replicas"] == 2
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady"
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == f"{STACK}:1.0.3"
    assert sts["status"]["readyReplicas"] == 2
    # OrderedReady creation: stack-1 is created only once stack-0 is Ready
    events = [(e["name"], e["event"]) for e in sb.call(sb.kubernetes.pod_events, PRODUCTION)]
    steps = [e for e in events if e[1] in ("created", "ready") and e[0].startswith("stack-")]
    assert steps == [("stack-0", "created"), ("stack-0", "ready"), ("stack-1", "created"), ("stack-1", "ready")]


def test_a_developer_template_creates_its_namespace_and_stack(make_sandbox):
    sb = make_sandbox(awx_timeout(PATIENT_AWX_SECONDS), speed=600)
    assert "stack-dev-default" not in sb.call(sb.kubernetes.namespaces)
    with api(sb) as client:
        job_id = launch(client, "User (dev) Developer Fragalysis Stack", "latest")
        job = wait_job(client, job_id)
        assert job["status"] == "successful", stdout(client, job_id)
    assert "stack-dev-default" in sb.call(sb.kubernetes.namespaces)
    sts = sb.call(sb.kubernetes.statefulset, "stack-dev-default", "stack")
    assert sts is not None
    assert (sts["spec"]["replicas"], sts["status"]["readyReplicas"]) == (1, 1)
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == f"{STACK}:latest"
