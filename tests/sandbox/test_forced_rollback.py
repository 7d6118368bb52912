"""A bad release on production and its rollback, as the Kubernetes emulator must play it (issue 8): pods of one
image tag crash-loop (the image-keyed crash-loop fault), and with OrderedReady reverting the StatefulSet's
template does not replace the crash-looping pod until someone deletes it - the StatefulSet docs' "Forced
rollback" (https://kubernetes.io/docs/concepts/workloads/controllers/statefulset/#forced-rollback). Driven through
the official Python client."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from sandbox.runtime import Sandbox
from sandbox.scenario import RegistryImage, Scenario, load_scenario
from tests.conftest import SandboxFactory

NS = "production-stack"
STACK = "xchem/fragalysis-stack"
GOOD, BAD = "1.0.3", "1.0.4"
SPEED = 1200
LIFECYCLE = ("terminating", "deleted", "created", "ready")


def scenario(policy: str = "OrderedReady") -> Scenario:
    """Fragalysis with tags 1.0.3 and 1.0.4 in the registry and production's StatefulSet under ``policy``."""
    loaded = load_scenario("fragalysis")
    loaded.registry.images = [
        image if image.name != STACK else RegistryImage(name=STACK, tags=[*image.tags, GOOD, BAD])
        for image in loaded.registry.images
    ]
    production = next(ns for ns in loaded.kubernetes.namespaces if ns.name == NS)
    production.statefulsets[0].pod_management_policy = policy  # type: ignore[assignment]
    return loaded


def crash_on_bad_tag(sb: Sandbox) -> None:
    """The bad release's pods crash-loop; pods of any other tag start normally, even at a new revision."""
    sb.set_faults(crashloop=[{"namespace": NS, "statefulset": "stack", "image": f"{STACK}:{BAD}"}])


@pytest.fixture
def cluster(make_sandbox: SandboxFactory) -> Sandbox:
    return make_sandbox(scenario(), speed=SPEED)


def api_client(sb: Sandbox) -> Iterator[client.ApiClient]:
    cfg = client.Configuration(host=sb.urls["kubernetes"])
    cfg.ssl_ca_cert = str(sb.ca_file)
    cfg.api_key = {"authorization": sb.scenario.kubernetes.token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(cfg) as api:
        yield api


@pytest.fixture
def api(cluster: Sandbox) -> Iterator[client.ApiClient]:
    yield from api_client(cluster)


def wait(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def set_image(apps: client.AppsV1Api, tag: str) -> client.V1StatefulSet:
    """What the version-change playbook and ``kubectl set image`` send: a strategic merge patch of the image."""
    body = {"spec": {"template": {"spec": {"containers": [{"name": "stack", "image": f"{STACK}:{tag}"}]}}}}
    return apps.patch_namespaced_stateful_set("stack", NS, body)


def crash_looping(core: client.CoreV1Api, name: str, restarts: int = 1) -> Callable[[], Any]:
    def check() -> Any:
        try:
            pod = core.read_namespaced_pod(name, NS)
        except ApiException as error:  # between the old pod's removal and the new one's creation
            if error.status == 404:
                return None
            raise
        statuses = pod.status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        if waiting is not None and waiting.reason == "CrashLoopBackOff" and statuses[0].restart_count >= restarts:
            return pod
        return None

    return check


def rolled_out(apps: client.AppsV1Api) -> bool:
    sts = apps.read_namespaced_stateful_set("stack", NS)
    s = sts.status
    return bool(
        s.observed_generation >= sts.metadata.generation
        and (s.ready_replicas or 0) == sts.spec.replicas
        and (s.updated_replicas or 0) == sts.spec.replicas
        and s.current_revision == s.update_revision
    )


def images_and_revisions(core: client.CoreV1Api) -> dict[str, tuple[str, str]]:
    pods = core.list_namespaced_pod(NS, label_selector="name=stack").items
    return {p.metadata.name: (p.spec.containers[0].image, p.metadata.labels["controller-revision-hash"]) for p in pods}


def break_the_release(core: client.CoreV1Api, apps: client.AppsV1Api) -> tuple[client.V1Pod, str, str]:
    """Roll production out to the bad tag: stack-1 crash-loops, stack-0 is left at the good old revision.
    Returns the crash-looping pod, the revision running before and the bad revision."""
    before = apps.read_namespaced_stateful_set("stack", NS).status.current_revision
    set_image(apps, BAD)
    broken = wait(crash_looping(core, "stack-1"), "stack-1 to crash-loop on the bad tag")
    bad_revision = broken.metadata.labels["controller-revision-hash"]
    assert bad_revision != before
    assert broken.spec.containers[0].image == f"{STACK}:{BAD}"
    return broken, before, bad_revision


# ---------------------------------------------------------------- the crash-loop fault keyed on the image


def test_only_the_bad_tag_crash_loops(cluster: Sandbox, api: client.ApiClient):
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    crash_on_bad_tag(cluster)
    # a roll-out to another tag is a new revision too, and comes up: the fault is keyed on the image
    set_image(apps, GOOD)
    wait(lambda: rolled_out(apps), "the roll-out to the good tag")
    assert {image for image, _ in images_and_revisions(core).values()} == {f"{STACK}:{GOOD}"}
    events = [e["event"] for e in cluster.call(cluster.kubernetes.pod_events, NS)]
    assert "CrashLoopBackOff" not in events

    broken, _, _ = break_the_release(core, apps)
    status = broken.status.container_statuses[0]
    assert status.ready is False
    assert status.last_state.terminated.reason == "Error"
    # the kubelet reports the normalised reference of what it runs
    assert status.image == f"docker.io/{STACK}:{BAD}"
    digest = cluster.call(cluster.registry.resolve, f"{STACK}:{BAD}")
    assert status.image_id == f"docker.io/{STACK}@{digest}"


def test_the_fault_matches_an_image_written_with_docker_defaults(make_sandbox: SandboxFactory):
    sb = make_sandbox(scenario(), speed=SPEED)
    sb.set_faults(crashloop=[{"namespace": NS, "image": f"docker.io/{STACK}:{BAD}"}])
    for api in api_client(sb):
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        set_image(apps, BAD)
        wait(crash_looping(core, "stack-1"), "stack-1 to crash-loop")


# ---------------------------------------------------------------- forced rollback


def revert(apps: client.AppsV1Api) -> str:
    """Set the good image back and wait for the controller to see it; the StatefulSet's new update revision."""
    reverted = set_image(apps, GOOD)
    wait(
        lambda: (
            apps.read_namespaced_stateful_set("stack", NS).status.observed_generation == reverted.metadata.generation
        ),
        "the controller to observe the reverted template",
    )
    revision: str = apps.read_namespaced_stateful_set("stack", NS).status.update_revision
    return revision


def test_reverting_the_template_leaves_the_crash_looping_pod(cluster: Sandbox, api: client.ApiClient):
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    crash_on_bad_tag(cluster)
    broken, before, bad_revision = break_the_release(core, apps)

    rollback_revision = revert(apps)
    assert rollback_revision not in (before, bad_revision)
    # it keeps crashing and restarting for further back-offs, and the controller leaves it there: the broken pod
    # is neither deleted nor replaced, and stack-0 is not touched
    restarts = broken.status.container_statuses[0].restart_count
    still = wait(crash_looping(core, "stack-1", restarts + 2), "two more restarts of the broken pod")
    assert still.metadata.uid == broken.metadata.uid
    assert still.metadata.deletion_timestamp is None
    assert still.metadata.labels["controller-revision-hash"] == bad_revision
    assert images_and_revisions(core)["stack-0"] == (f"{STACK}:1.0.2", before)
    sts = apps.read_namespaced_stateful_set("stack", NS)
    assert (sts.status.current_revision, sts.status.update_revision) == (before, rollback_revision)
    assert (sts.status.ready_replicas, sts.status.updated_replicas) == (1, 0)
    pod_events = [e for e in cluster.call(cluster.kubernetes.pod_events, NS) if e["uid"] == broken.metadata.uid]
    assert "terminating" not in [e["event"] for e in pod_events]


def test_deleting_the_broken_pod_completes_the_rollback(cluster: Sandbox, api: client.ApiClient):
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    crash_on_bad_tag(cluster)
    broken, before, bad_revision = break_the_release(core, apps)
    rollback_revision = revert(apps)

    # the delete names the pod it means (DeleteOptions.preconditions): a wrong uid is refused, nothing happens
    with pytest.raises(ApiException) as caught:
        core.delete_namespaced_pod(
            "stack-1", NS, body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-this-pod"))
        )
    assert caught.value.status == 409
    refused = json.loads(caught.value.body)
    assert refused["reason"] == "Conflict"
    assert "Precondition failed: UID in precondition: not-this-pod" in refused["message"]
    with pytest.raises(ApiException) as caught:
        core.delete_namespaced_pod(
            "stack-1", NS, body=client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version="1"))
        )
    assert caught.value.status == 409
    assert "Precondition failed: ResourceVersion in precondition: 1" in json.loads(caught.value.body)["message"]
    assert core.read_namespaced_pod("stack-1", NS).metadata.deletion_timestamp is None

    deleted = core.delete_namespaced_pod(
        "stack-1", NS, body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=broken.metadata.uid))
    )
    assert deleted.metadata.uid == broken.metadata.uid
    assert deleted.metadata.deletion_timestamp is not None

    wait(lambda: rolled_out(apps), "the rollback to roll out")
    pods = images_and_revisions(core)
    assert pods == {name: (f"{STACK}:{GOOD}", rollback_revision) for name in ("stack-0", "stack-1")}
    recreated = core.read_namespaced_pod("stack-1", NS)
    assert recreated.metadata.uid != broken.metadata.uid
    assert recreated.status.container_statuses[0].ready is True
    # in order: the broken pod goes, stack-1 comes back at the rollback revision and Ready, then stack-0 is replaced
    events = cluster.call(cluster.kubernetes.pod_events, NS)
    start = next(i for i, e in enumerate(events) if e["uid"] == broken.metadata.uid and e["event"] == "terminating")
    order = [(e["name"], e["event"], e["revision"]) for e in events[start:] if e["event"] in LIFECYCLE]
    assert order == [
        ("stack-1", "terminating", bad_revision),
        ("stack-1", "deleted", bad_revision),
        ("stack-1", "created", rollback_revision),
        ("stack-1", "ready", rollback_revision),
        ("stack-0", "terminating", before),
        ("stack-0", "deleted", before),
        ("stack-0", "created", rollback_revision),
        ("stack-0", "ready", rollback_revision),
    ]


def test_with_parallel_pod_management_the_revert_replaces_the_broken_pod(make_sandbox: SandboxFactory):
    """The rule is OrderedReady's: with Parallel the controller's update step deletes the broken pod itself."""
    sb = make_sandbox(scenario("Parallel"), speed=SPEED)
    crash_on_bad_tag(sb)
    for api in api_client(sb):
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        broken, _, _ = break_the_release(core, apps)
        set_image(apps, GOOD)
        wait(lambda apps=apps: rolled_out(apps), "the rollback to roll out without help")
        revision = apps.read_namespaced_stateful_set("stack", NS).status.update_revision
        assert images_and_revisions(core) == {name: (f"{STACK}:{GOOD}", revision) for name in ("stack-0", "stack-1")}
        gone = [e["event"] for e in sb.call(sb.kubernetes.pod_events, NS) if e["uid"] == broken.metadata.uid]
        assert gone[-2:] == ["terminating", "deleted"]
