"""HTTPS in the sandbox: the Kubernetes emulator always, every emulator with ``tls=SERVICES`` (``--tls``), with a CA
made at start; our clients, built from the blocks as the flows build them, trust it through ``ca_bundle`` and the
kubeconfig's ``certificate-authority-data``, and fail clearly without it or with another CA."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from blocks import KubernetesCluster
from clients.errors import TlsVerificationFailed
from deployments.sandbox_target import sandbox_target
from sandbox.runtime import FREE_PORTS, SERVICES, Sandbox
from sandbox.tls import Certificates
from tests.conftest import PATIENT_AWX_SECONDS, awx_timeout, kube_http, wait_for

SPEED = 600
STACK = "xchem/fragalysis-stack"
IMAGE = "xchem/fragalysis-stack:latest"
TEMPLATE = "Staging Fragalysis Stack (Version Change)"


@pytest.fixture
def all_https(tmp_path: Path) -> Iterator[tuple[Sandbox, dict[str, Any]]]:
    """A sandbox whose four emulators serve HTTPS, its state written to ``tmp_path``; and its endpoints."""
    scenario = awx_timeout(PATIENT_AWX_SECONDS)
    sandbox = Sandbox(scenario, speed=SPEED, ports=FREE_PORTS, tls=SERVICES).start()
    try:
        sandbox.write_state(tmp_path)
        yield sandbox, json.loads((tmp_path / "endpoints.json").read_text())
    finally:
        sandbox.stop()


def test_the_kubernetes_emulator_serves_https_and_its_kubeconfig_carries_the_ca(sandbox: Sandbox, tmp_path: Path):
    assert sandbox.urls["kubernetes"].startswith("https://127.0.0.1:")
    assert all(sandbox.urls[name].startswith("http://") for name in ("github", "awx", "registry"))
    kubeconfig, endpoints_file = sandbox.write_state(tmp_path)
    cluster = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]
    assert base64.b64decode(cluster["certificate-authority-data"]) == (tmp_path / "ca.pem").read_bytes()
    assert (tmp_path / "ca.pem").stat().st_mode & 0o777 == 0o600
    endpoints = json.loads(endpoints_file.read_text())
    assert endpoints["kubernetes"]["ca_bundle"] == str((tmp_path / "ca.pem").resolve())
    assert "ca_bundle" not in endpoints["github"]
    # the roll-out client, loaded from that kubeconfig by the kubernetes package's own loader, trusts it
    with KubernetesCluster(kubeconfig=SecretStr(kubeconfig.read_text())).get_client() as rollout:
        assert rollout.statefulset("staging-stack", "stack")["metadata"]["name"] == "stack"


def test_the_certificate_names_the_loopback_host_and_localhost(sandbox: Sandbox):
    port = sandbox.urls["kubernetes"].rpartition(":")[2]
    with kube_http(sandbox, base_url=f"https://localhost:{port}") as by_name:
        assert by_name.get("/version").status_code == 200


def test_every_emulator_over_https_with_the_blocks_clients(all_https: tuple[Sandbox, dict[str, Any]]):
    sandbox, endpoints = all_https
    assert all(url.startswith("https://") for url in sandbox.urls.values())
    target = sandbox_target(endpoints)
    assert target.awx.ca_bundle == endpoints["awx"]["ca_bundle"]
    with target.github.get_client() as github:
        assert len(github.branch_head("xchem/fragalysis-frontend", "staging")) == 40
    with target.awx.get_client() as awx:
        assert awx.find_template(TEMPLATE).name == TEMPLATE
    with target.registry.get_client() as registry:
        assert registry.digest(IMAGE).startswith("sha256:")
    with target.cluster.get_client() as rollout:
        assert rollout.statefulset("staging-stack", "stack")["metadata"]["name"] == "stack"


def test_the_emulators_own_traffic_over_https(all_https: tuple[Sandbox, dict[str, Any]]):
    """A stack build's "Trigger AWX" step (GitHub -> AWX) and the job's playbook (AWX -> Kubernetes) trust the CA."""
    sandbox, endpoints = all_https
    target = sandbox_target(endpoints)
    before = datetime.now(UTC)
    sha = sandbox.push(STACK, "master")
    with target.github.get_client() as github:

        def built() -> Any:
            run = next(github.runs(STACK, "build-main.yaml", head_sha=sha), None)
            return run if run is not None and run.conclusion is not None else None

        run = wait_for(built, "the stack build to end")
    assert run.conclusion == "success"
    with target.awx.get_client() as awx:
        (job,) = awx.jobs_since(awx.find_template(TEMPLATE), since=before)
        assert job.status == "successful", job


@pytest.mark.parametrize("ca", ["none", "another CA"])
def test_a_client_without_the_ca_fails_naming_the_service_url_and_certificate(
    all_https: tuple[Sandbox, dict[str, Any]], tmp_path: Path, ca: str
):
    sandbox, endpoints = all_https
    other = Certificates.generate().write(tmp_path / "other").ca if ca == "another CA" else None
    target = sandbox_target(endpoints)
    blocks = [
        target.github.model_copy(update={"ca_bundle": str(other) if other else None}),
        target.awx.model_copy(update={"ca_bundle": str(other) if other else None}),
        target.registry.model_copy(update={"ca_bundle": str(other) if other else None}),
    ]
    calls = [
        lambda github: github.branch_head("xchem/fragalysis-frontend", "staging"),
        lambda awx: awx.find_template(TEMPLATE),
        lambda registry: registry.digest(IMAGE),
    ]
    for name, block, call in zip(("GitHub", "AWX", "registry"), blocks, calls, strict=True):
        with block.get_client() as client, pytest.raises(TlsVerificationFailed) as caught:
            call(client)
        message = str(caught.value)
        assert message.startswith(name), message
        assert sandbox.urls[name.lower()] in message, message
        assert "TLS certificate verification failed" in message, message
        assert caught.value.url is not None
        assert caught.value.url.startswith(sandbox.urls[name.lower()])

    kubeconfig = yaml.safe_load(Path(endpoints["kubernetes"]["kubeconfig"]).read_text())
    cluster = kubeconfig["clusters"][0]["cluster"]
    if other is None:
        del cluster["certificate-authority-data"]
    else:
        cluster["certificate-authority-data"] = base64.b64encode(other.read_bytes()).decode()
    block = KubernetesCluster(kubeconfig=SecretStr(yaml.safe_dump(kubeconfig)))
    with block.get_client() as rollout, pytest.raises(TlsVerificationFailed) as caught:
        rollout.statefulset("staging-stack", "stack")
    message = str(caught.value)
    assert message.startswith("Kubernetes"), message
    assert sandbox.urls["kubernetes"] in message, message
    assert "TLS certificate verification failed" in message, message
