"""The Kubernetes emulator through the official Python client (and plain httpx where the client hides the wire)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from sandbox.runtime import Sandbox
from sandbox.scenario import Scenario, load_scenario
from tests.conftest import SandboxFactory, kube_http

NS = "staging-stack"
SPEED = 1200


@pytest.fixture
def cluster(make_sandbox: SandboxFactory) -> Sandbox:
    return make_sandbox(speed=SPEED)


@pytest.fixture
def api(cluster: Sandbox) -> Iterator[client.ApiClient]:
    yield from _api_client(cluster)


def _api_client(sandbox: Sandbox, token: str | None = "") -> Iterator[client.ApiClient]:
    cfg = client.Configuration(host=sandbox.urls["kubernetes"])
    cfg.ssl_ca_cert = str(sandbox.ca_file)
    token = sandbox.scenario.kubernetes.token if token == "" else token
    if token is not None:
        cfg.api_key = {"authorization": token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(cfg) as api_client:
        yield api_client


def _wait(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def _status(error: ApiException) -> dict[str, Any]:
    body = json.loads(error.body)
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == error.status
    return body


def _rolled_out(apps: client.AppsV1Api, name: str = "stack", ns: str = NS) -> bool:
    sts = apps.read_namespaced_stateful_set(name, ns)
    s = sts.status
    return bool(
        s.observed_generation >= sts.metadata.generation
        and (s.ready_replicas or 0) >= sts.spec.replicas
        and (s.updated_replicas or 0) >= sts.spec.replicas
        and s.current_revision == s.update_revision
    )


def _restart(apps: client.AppsV1Api, ns: str = NS, name: str = "stack") -> None:
    """What ``kubectl rollout restart`` sends (FACTS.md)."""
    body = {
        "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": str(time.time())}}}}
    }
    apps.patch_namespaced_stateful_set(name, ns, body)


# ---------------------------------------------------------------- discovery, auth, errors


def test_discovery_and_version(api: client.ApiClient):
    assert client.VersionApi(api).get_code().git_version == "v1.31.0"
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = client.ApisApi(api).get_api_versions().groups
    assert [g.name for g in groups] == ["apps"]
    core = {r.name: r for r in client.CoreV1Api(api).get_api_resources().resources}
    assert core["pods"].namespaced
    assert "watch" in core["pods"].verbs
    apps = {r.name: r for r in client.AppsV1Api(api).get_api_resources().resources}
    assert apps["statefulsets"].kind == "StatefulSet"
    assert "patch" in apps["statefulsets"].verbs


def test_unknown_paths_are_404_status(cluster: Sandbox):
    with kube_http(cluster) as kube:
        for path in ("/apis/batch/v1/jobs", "/api/v1/namespaces/staging-stack/secrets", "/nothing", "/openapi/v2"):
            response = kube.get(path)
            assert response.status_code == 404, path
            assert response.json()["reason"] == "NotFound"


def test_wrong_or_missing_token_is_401(make_sandbox: SandboxFactory):
    sandbox = make_sandbox(speed=SPEED)  # anonymous access is off by default, as on a real cluster
    for token in ("wrong-token", None):
        for api_client in _api_client(sandbox, token):
            with pytest.raises(ApiException) as caught:
                client.CoreV1Api(api_client).list_namespace()
            assert caught.value.status == 401
            assert _status(caught.value)["reason"] == "Unauthorized"
    # liveness and version are public, as the apiserver's system:public-info-viewer role makes them
    with kube_http(sandbox, token=None) as anonymous:
        assert anonymous.get("/version").status_code == 200


def test_wrong_token_is_401_even_with_anonymous_access(make_sandbox: SandboxFactory):
    scenario = load_scenario("fragalysis")
    scenario.kubernetes.anonymous_auth = True
    cluster = make_sandbox(scenario, speed=SPEED)
    with kube_http(cluster, token="nope") as wrong:
        response = wrong.get("/api/v1/namespaces")
    assert response.status_code == 401
    assert response.json()["reason"] == "Unauthorized"
    with kube_http(cluster, token=None) as anonymous:
        assert anonymous.get("/api/v1/namespaces").status_code == 200


def test_missing_statefulset_is_404_status(api: client.ApiClient):
    with pytest.raises(ApiException) as caught:
        client.AppsV1Api(api).read_namespaced_stateful_set("nope", NS)
    assert caught.value.status == 404
    body = _status(caught.value)
    assert body["reason"] == "NotFound"
    assert body["message"] == 'statefulsets.apps "nope" not found'
    assert body["details"] == {"name": "nope", "group": "apps", "kind": "statefulsets"}


def test_injected_errors_and_rate_limits_are_status_objects(cluster: Sandbox, api: client.ApiClient):
    core = client.CoreV1Api(api)
    cluster.set_faults(kubernetes={"fail_next": 1, "error_status": 500})
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_pod(NS)
    assert caught.value.status == 500
    assert _status(caught.value)["reason"] == "InternalError"
    cluster.set_faults(kubernetes={"fail_next": 1, "error_status": 503})
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_pod(NS)
    assert _status(caught.value)["reason"] == "ServiceUnavailable"
    # urllib3 under the client honours Retry-After on 429 (three retries), then gives up
    cluster.set_faults(kubernetes={"rate_limit_rate": 1.0, "retry_after_seconds": 0})
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_pod(NS)
    assert caught.value.status == 429
    assert caught.value.headers["Retry-After"] == "0"
    body = _status(caught.value)
    assert body["reason"] == "TooManyRequests"
    assert body["details"]["retryAfterSeconds"] == 0


# ---------------------------------------------------------------- reads


def test_initial_state_is_rolled_out(api: client.ApiClient, cluster: Sandbox, tmp_path: Path):
    kubeconfig, _ = cluster.write_state(tmp_path)
    with config.new_client_from_config(str(kubeconfig)) as from_kubeconfig:
        sts = client.AppsV1Api(from_kubeconfig).read_namespaced_stateful_set("stack", NS)
    assert sts.spec.replicas == 2
    assert sts.status.current_revision == sts.status.update_revision
    assert sts.status.update_revision.startswith("stack-")
    assert sts.status.ready_replicas == 2
    assert sts.status.observed_generation == sts.metadata.generation == 1
    container = sts.spec.template.spec.containers[0]
    assert (container.name, container.image, container.image_pull_policy) == (
        "stack",
        "xchem/fragalysis-stack:latest",
        "Always",
    )
    assert container.readiness_probe.tcp_socket.port == 80
    assert sts.spec.update_strategy.rolling_update.partition == 0
    pods = client.CoreV1Api(api).list_namespaced_pod(NS, label_selector="name=stack")
    assert [p.metadata.name for p in pods.items] == ["stack-0", "stack-1"]
    for pod in pods.items:
        assert pod.status.phase == "Running"
        assert isinstance(pod.metadata.creation_timestamp, datetime)
        assert pod.metadata.labels["controller-revision-hash"] == sts.status.update_revision
        assert pod.status.container_statuses[0].image_id.startswith("docker.io/xchem/fragalysis-stack@sha256:")
        ready = next(c for c in pod.status.conditions if c.type == "Ready")
        assert ready.status == "True"
        assert isinstance(ready.last_transition_time, datetime)
    assert int(pods.metadata.resource_version) >= int(pods.items[-1].metadata.resource_version)


def test_label_and_field_selectors(api: client.ApiClient):
    core = client.CoreV1Api(api)
    names = lambda **kw: [p.metadata.name for p in core.list_namespaced_pod(NS, **kw).items]  # noqa: E731
    assert names(label_selector="name in (stack,database)") == ["database-0", "stack-0", "stack-1"]
    assert names(label_selector="name!=stack") == ["database-0"]
    assert names(field_selector="metadata.name=stack-1") == ["stack-1"]
    assert names(field_selector="status.phase=Running,metadata.name!=stack-0", label_selector="name") == [
        "database-0",
        "stack-1",
    ]
    assert names(field_selector="status.phase=Pending") == []
    everywhere = core.list_pod_for_all_namespaces(field_selector="metadata.namespace=production-stack")
    assert {p.metadata.namespace for p in everywhere.items} == {"production-stack"}
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_pod(NS, field_selector="spec.color=blue")
    assert caught.value.status == 400


def test_table_output_for_kubectl(cluster: Sandbox):
    headers = {"accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    url = f"/api/v1/namespaces/{NS}/pods"
    kube = kube_http(cluster)
    table = kube.get(url, headers=headers).json()
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
    ]
    assert table["rows"][1]["cells"][:4] == ["stack-0", "1/1", "Running", "0"]
    assert table["rows"][1]["object"]["kind"] == "PartialObjectMetadata"
    plain = kube.get(url).json()
    kube.close()
    assert plain["kind"] == "PodList"


# ---------------------------------------------------------------- writes


def test_patch_flavours_merge_containers_by_name(api: client.ApiClient):
    apps = client.AppsV1Api(api)
    before = apps.read_namespaced_stateful_set("stack", NS)
    # strategic merge: the container list merges by name, so the probe and ports stay
    patched = apps.patch_namespaced_stateful_set(
        "stack", NS, {"spec": {"template": {"spec": {"containers": [{"name": "stack", "image": "x/y:1.0.3"}]}}}}
    )
    container = patched.spec.template.spec.containers[0]
    assert len(patched.spec.template.spec.containers) == 1
    assert container.image == "x/y:1.0.3"
    assert container.readiness_probe.tcp_socket.port == 80
    assert patched.metadata.generation == before.metadata.generation + 1
    # merge patch: lists replace, maps merge; a metadata-only change keeps the generation
    merged = apps.patch_namespaced_stateful_set(
        "stack", NS, {"metadata": {"labels": {"team": "xchem"}}}, _content_type="application/merge-patch+json"
    )
    assert merged.metadata.labels == {"name": "stack", "team": "xchem"}
    assert merged.metadata.generation == patched.metadata.generation
    # JSON patch
    jsonpatched = apps.patch_namespaced_stateful_set(
        "stack", NS, [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "x/y:1.0.4"}]
    )
    assert jsonpatched.spec.template.spec.containers[0].image == "x/y:1.0.4"
    assert jsonpatched.metadata.generation == before.metadata.generation + 2
    assert int(jsonpatched.metadata.resource_version) > int(merged.metadata.resource_version)
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_stateful_set("stack", NS, [{"op": "test", "path": "/spec/replicas", "value": 9}])
    assert caught.value.status == 422


def test_replace_with_stale_resource_version_conflicts(api: client.ApiClient):
    apps = client.AppsV1Api(api)
    sts = apps.read_namespaced_stateful_set("stack", NS)
    sts.metadata.annotations = {"note": "first"}
    replaced = apps.replace_namespaced_stateful_set("stack", NS, sts)
    assert replaced.metadata.annotations == {"note": "first"}
    assert replaced.metadata.generation == sts.metadata.generation  # metadata only
    sts.metadata.annotations = {"note": "stale"}
    with pytest.raises(ApiException) as caught:
        apps.replace_namespaced_stateful_set("stack", NS, sts)
    assert caught.value.status == 409
    body = _status(caught.value)
    assert body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]


def test_create_namespace_and_statefulset_like_the_deploy_playbook(api: client.ApiClient):
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    ns = "stack-alice-default"
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "stack", "labels": {"name": "stack"}},
        "spec": {
            "replicas": 1,
            "serviceName": "stack",
            "selector": {"matchLabels": {"name": "stack"}},
            "template": {
                "metadata": {"labels": {"name": "stack"}},
                "spec": {"containers": [{"name": "stack", "image": "xchem/fragalysis-stack:latest"}]},
            },
        },
    }
    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_stateful_set(ns, manifest)
    assert caught.value.status == 404
    assert _status(caught.value)["message"] == f'namespaces "{ns}" not found'
    core.create_namespace({"metadata": {"name": ns}})
    with pytest.raises(ApiException) as caught:
        core.create_namespace({"metadata": {"name": ns}})
    assert _status(caught.value)["reason"] == "AlreadyExists"
    created = apps.create_namespaced_stateful_set(ns, manifest)
    assert created.metadata.generation == 1
    assert created.metadata.uid
    assert created.spec.update_strategy.rolling_update.partition == 0
    assert created.spec.template.spec.containers[0].image_pull_policy == "Always"
    _wait(lambda: _rolled_out(apps, ns=ns))
    pod = core.read_namespaced_pod("stack-0", ns)
    assert pod.metadata.owner_references[0].uid == created.metadata.uid
    bad = {
        **manifest,
        "metadata": {"name": "other"},
        "spec": {**manifest["spec"], "selector": {"matchLabels": {"a": "b"}}},
    }
    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_stateful_set(ns, bad)
    assert caught.value.status == 422
    assert _status(caught.value)["reason"] == "Invalid"


def test_scaling_up_and_down_goes_in_order(cluster: Sandbox, api: client.ApiClient):
    apps = client.AppsV1Api(api)
    apps.patch_namespaced_stateful_set("stack", NS, {"spec": {"replicas": 4}})
    _wait(lambda: apps.read_namespaced_stateful_set("stack", NS).status.ready_replicas == 4)
    apps.patch_namespaced_stateful_set("stack", NS, {"spec": {"replicas": 1}})
    _wait(lambda: apps.read_namespaced_stateful_set("stack", NS).status.replicas == 1)
    events = [(e["name"], e["event"]) for e in cluster.call(cluster.kubernetes.pod_events, NS)]
    created = [name for name, event in events if event == "created"]
    deleted = [name for name, event in events if event == "terminating"]
    assert created == ["stack-2", "stack-3"]
    assert deleted == ["stack-3", "stack-2", "stack-1"]
    # each new pod was Ready before the next was created
    assert events.index(("stack-2", "ready")) < events.index(("stack-3", "created"))


# ---------------------------------------------------------------- roll-outs and watches


def test_watch_pods_during_a_rollout(cluster: Sandbox, api: client.ApiClient):
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    listed = core.list_namespaced_pod(NS, label_selector="name=stack")
    old = apps.read_namespaced_stateful_set("stack", NS).status.update_revision
    _restart(apps)
    new = _wait(lambda: (r := apps.read_namespaced_stateful_set("stack", NS).status.update_revision) != old and r)
    seen: list[tuple[str, str, bool]] = []
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_pod,
        NS,
        label_selector="name=stack",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=30,
    ):
        pod = event["object"]
        seen.append((event["type"], pod.metadata.name, pod.metadata.deletion_timestamp is not None))
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if pod.metadata.name == "stack-0" and pod.metadata.labels["controller-revision-hash"] == new and ready:
            w.stop()
    assert all(name.startswith("stack-") for _, name, _ in seen)
    kinds = [(t, n) for t, n, _ in seen if t in ("ADDED", "DELETED")]
    assert kinds == [("DELETED", "stack-1"), ("ADDED", "stack-1"), ("DELETED", "stack-0"), ("ADDED", "stack-0")]
    assert ("MODIFIED", "stack-1", True) in seen  # Terminating before gone


def test_watch_from_scratch_and_bookmarks(cluster: Sandbox):
    url = f"/apis/apps/v1/namespaces/{NS}/statefulsets"
    params = {"watch": "1", "timeoutSeconds": "1", "allowWatchBookmarks": "true"}
    with kube_http(cluster) as kube, kube.stream("GET", url, params=params) as response:
        assert response.status_code == 200
        events = [json.loads(line) for line in response.iter_lines() if line]
    assert [(e["type"], e["object"]["metadata"].get("name")) for e in events[:2]] == [
        ("ADDED", "database"),
        ("ADDED", "stack"),
    ]
    assert events[-1]["type"] == "BOOKMARK"


def test_too_old_resource_version_is_410(make_sandbox: SandboxFactory):
    scenario = load_scenario("fragalysis")
    scenario.kubernetes.history_size = 5
    sandbox = make_sandbox(scenario, speed=SPEED)
    for api_client in _api_client(sandbox):
        core = client.CoreV1Api(api_client)
        with pytest.raises(ApiException) as caught:
            for _ in watch.Watch().stream(core.list_namespaced_pod, NS, resource_version="2", timeout_seconds=5):
                pass
        assert caught.value.status == 410
        assert "too old resource version: 2" in caught.value.reason
    # on the wire: HTTP 200, then one ERROR event carrying a Status 410 Expired, then the end
    url = f"/api/v1/namespaces/{NS}/pods"
    params = {"watch": "true", "resourceVersion": "2"}
    with kube_http(sandbox) as kube, kube.stream("GET", url, params=params) as response:
        assert response.status_code == 200
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert len(lines) == 1
    assert lines[0]["type"] == "ERROR"
    assert lines[0]["object"]["code"] == 410
    assert lines[0]["object"]["reason"] == "Expired"


def test_expiring_watches_force_a_relist(cluster: Sandbox, api: client.ApiClient):
    core = client.CoreV1Api(api)
    listed = core.list_namespaced_pod(NS)
    cluster.set_faults(watch_expire_seconds=0.3)
    started = time.monotonic()
    with pytest.raises(ApiException) as caught:
        # no timeout_seconds: the client re-watches once from its resourceVersion, gets 410 again, raises
        for _ in watch.Watch().stream(core.list_namespaced_pod, NS, resource_version=listed.metadata.resource_version):
            pass
    assert caught.value.status == 410
    assert time.monotonic() - started < 20
    # a fresh list's resourceVersion watches fine
    fresh = core.list_namespaced_pod(NS).metadata.resource_version
    cluster.set_faults(watch_expire_seconds=None)
    events = list(watch.Watch().stream(core.list_namespaced_pod, NS, resource_version=fresh, timeout_seconds=1))
    assert events == []


def test_crash_looping_pod_never_completes_the_rollout(cluster: Sandbox, api: client.ApiClient):
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    cluster.set_faults(crashloop=[{"namespace": NS, "statefulset": "stack", "only_new_revision": True}])
    old_revision = apps.read_namespaced_stateful_set("stack", NS).status.current_revision
    _restart(apps)

    def crash_looping() -> Any:
        pod = core.read_namespaced_pod("stack-1", NS)
        statuses = pod.status.container_statuses or []
        if statuses and statuses[0].state.waiting and statuses[0].state.waiting.reason == "CrashLoopBackOff":
            return statuses[0] if statuses[0].restart_count >= 3 else None
        return None

    status = _wait(crash_looping)
    assert status.last_state.terminated.reason == "Error"
    assert status.last_state.terminated.exit_code == 1
    assert status.ready is False
    sts = apps.read_namespaced_stateful_set("stack", NS)
    assert sts.status.current_revision == old_revision != sts.status.update_revision
    assert sts.status.updated_replicas == 1
    assert sts.status.ready_replicas == 1
    # stack-0 was never touched: the controller waits for stack-1 to be Ready
    stack0 = core.read_namespaced_pod("stack-0", NS)
    assert stack0.metadata.labels["controller-revision-hash"] == old_revision


def test_missing_image_then_it_appears(cluster: Sandbox, api: client.ApiClient):
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    cluster.set_faults(missing_images=["xchem/fragalysis-stack:latest"])
    _restart(apps)
    reasons: list[str] = []

    def waiting_reason() -> Any:
        pod = core.read_namespaced_pod("stack-1", NS)
        statuses = pod.status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        if waiting is not None and waiting.reason not in reasons[-1:]:
            reasons.append(waiting.reason)
        return "ImagePullBackOff" in reasons

    _wait(waiting_reason)
    assert pod_phase(core, "stack-1") == "Pending"
    events = [e["event"] for e in cluster.call(cluster.kubernetes.pod_events, NS) if e["name"] == "stack-1"]
    assert events.index("ErrImagePull") < events.index("ImagePullBackOff")
    assert "running" not in events[events.index("ErrImagePull") :]
    cluster.set_faults(missing_images=[])
    _wait(lambda: _rolled_out(apps))
    digest = cluster.call(cluster.registry.resolve, "xchem/fragalysis-stack:latest")
    pod = core.read_namespaced_pod("stack-1", NS)
    assert pod.status.container_statuses[0].image_id == f"docker.io/xchem/fragalysis-stack@{digest}"


def pod_phase(core: client.CoreV1Api, name: str) -> str:
    return str(core.read_namespaced_pod(name, NS).status.phase)


def test_in_process_api(cluster: Sandbox):
    k8s = cluster.kubernetes
    assert cluster.call(k8s.statefulset, NS, "nope") is None
    assert [p["metadata"]["name"] for p in cluster.call(k8s.pods, NS, {"name": "stack"})] == ["stack-0", "stack-1"]
    assert "production-stack" in cluster.call(k8s.namespaces)
    assert cluster.call(k8s.pod_events) == []


def test_scenario_with_a_partition(make_sandbox: SandboxFactory):
    scenario: Scenario = load_scenario("fragalysis")
    scenario.kubernetes.namespaces[0].statefulsets[0].partition = 1
    sandbox = make_sandbox(scenario, speed=SPEED)
    for api_client in _api_client(sandbox):
        apps = client.AppsV1Api(api_client)
        _restart(apps)

        def settled(apps: client.AppsV1Api = apps) -> bool:
            status = apps.read_namespaced_stateful_set("stack", NS).status
            return bool(status.updated_replicas == 1 and status.ready_replicas == 2)

        _wait(settled)
        sts = apps.read_namespaced_stateful_set("stack", NS)
        # pods below the partition keep the old revision; currentRevision stays
        assert sts.status.current_revision != sts.status.update_revision
        pods = sandbox.call(sandbox.kubernetes.pods, NS, {"name": "stack"})
        revisions = [p["metadata"]["labels"]["controller-revision-hash"] for p in pods]
        assert revisions == [sts.status.current_revision, sts.status.update_revision]


def test_dynamic_client_as_ansible_uses_it(api: client.ApiClient):
    """Ansible's kubernetes.core.k8s module drives the API through the client's DynamicClient."""
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(api)
    statefulsets = dynamic.resources.get(api_version="apps/v1", kind="StatefulSet")
    sts = statefulsets.get(name="stack", namespace=NS)
    assert sts.status.readyReplicas == 2
    patched = statefulsets.patch(
        name="stack",
        namespace=NS,
        body={"spec": {"template": {"metadata": {"annotations": {"ansible": "yes"}}}}},
        content_type="application/strategic-merge-patch+json",
    )
    assert patched.metadata.generation == sts.metadata.generation + 1
    pods = dynamic.resources.get(api_version="v1", kind="Pod")
    assert [p.metadata.name for p in pods.get(namespace=NS, label_selector="name=stack").items] == [
        "stack-0",
        "stack-1",
    ]


def test_stopping_the_sandbox_ends_open_watches(cluster: Sandbox):
    url = f"/api/v1/namespaces/{NS}/pods"
    with kube_http(cluster) as kube, kube.stream("GET", url, params={"watch": "true"}) as response:
        lines = response.iter_lines()
        assert json.loads(next(lines))["type"] == "ADDED"
        cluster.stop()
        rest = [json.loads(line) for line in lines if line]
    assert all(event["type"] == "ADDED" for event in rest)
