"""Blocks under a Prefect test server: registration, save and load by type, masked secrets, working clients,
and no secret in any repr, str, log line or exception."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from pydantic import SecretStr

from blocks import AwxServer, Budgets, GitHubAccount, ImageRegistry, KubernetesCluster, StackTarget
from clients.errors import ClientError
from clients.retry import RetryPolicy
from deployments.sandbox_target import sandbox_target
from sandbox.runtime import Sandbox

pytestmark = pytest.mark.prefect

CANARY = "canary-5ecret-7oken-do-not-leak"


def test_register_blocks_module_with_the_prefect_cli(prefect_server: None):
    from prefect.settings import PREFECT_API_URL

    result = subprocess.run(
        [str(Path(sys.executable).with_name("prefect")), "block", "register", "-m", "blocks"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            "PATH": str(Path(sys.executable).parent),
            "PREFECT_API_URL": str(PREFECT_API_URL.value()),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "HOME": str(Path.home()),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Successfully registered" in result.stdout


def test_blocks_save_load_by_type_and_build_working_clients(prefect_server: None, sandbox: Sandbox, tmp_path):
    sandbox.write_state(tmp_path)
    target = sandbox_target(sandbox.endpoints(tmp_path.resolve()))
    target.save("blocks-test", overwrite=True)

    loaded = cast(StackTarget, StackTarget.load("blocks-test"))
    assert loaded.namespace == "staging-stack"
    assert loaded.budgets == Budgets().scaled(60.0)
    assert isinstance(loaded.awx, AwxServer)
    with loaded.awx.get_client() as awx:
        assert awx.find_template(loaded.job_template).name == loaded.job_template
    with loaded.github.get_client() as github:
        assert len(github.branch_head("xchem/fragalysis-frontend", "staging")) == 40
    with loaded.registry.get_client() as registry:
        assert registry.digest(loaded.image) == sandbox.call(sandbox.registry.resolve, loaded.image)
    cluster = loaded.cluster.get_client()
    try:
        assert cluster.state(loaded.namespace, loaded.statefulset).done
    finally:
        cluster.close()


def test_secret_fields_are_masked_by_the_api(prefect_server: None):
    from prefect.client.orchestration import get_client

    GitHubAccount(token=SecretStr(CANARY), api_url="http://127.0.0.1:9").save("masked", overwrite=True)
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name("masked", block_type_slug="github-account", include_secrets=False)
    assert document.data["token"] != CANARY
    assert CANARY not in str(document.data)
    assert cast(GitHubAccount, GitHubAccount.load("masked")).token.get_secret_value() == CANARY


def _blocks_with_canary(kubeconfig: str) -> list[Any]:
    return [
        AwxServer(url="http://127.0.0.1:9", token=SecretStr(CANARY)),
        AwxServer(url="http://127.0.0.1:9", username="admin", password=SecretStr(CANARY)),
        GitHubAccount(token=SecretStr(CANARY), api_url="http://127.0.0.1:9", webhook_secret=SecretStr(CANARY)),
        ImageRegistry(url="http://127.0.0.1:9", username="bot", password=SecretStr(CANARY)),
        KubernetesCluster(kubeconfig=SecretStr(kubeconfig)),
    ]


def test_a_canary_secret_never_leaks(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """Clients built from blocks, pointed at a closed port: every failure path is logged and raised, and the
    secret is in none of the logs, exception texts, reprs or strs. (Every try is made; only the waits between
    them are shortened: five clients times the default policy's ~20 s of backoff cost the suite 100 s.)"""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(RetryPolicy, "backoff", lambda self, attempt: 0.01)
    kubeconfig = (
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        f"users: [{{name: u, user: {{token: {CANARY}}}}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    seen: list[str] = []
    for block in _blocks_with_canary(kubeconfig):
        seen += [repr(block), str(block), block.model_dump_json()]
        client = block.get_client()
        seen += [repr(client), str(client)]
        try:
            if isinstance(block, AwxServer):
                client.find_template("Staging Fragalysis Stack (Version Change)")
            elif isinstance(block, GitHubAccount):
                client.branch_head("xchem/fragalysis-stack", "master")
            elif isinstance(block, ImageRegistry):
                client.digest("xchem/fragalysis-stack:latest")
            else:
                client.statefulset("staging-stack", "stack")
        except (ClientError, httpx.HTTPError) as error:
            seen += [str(error), repr(error)]
        else:
            pytest.fail(f"{type(client).__name__} reached a closed port")
        finally:
            client.close()
    assert seen
    for text in seen + [record.getMessage() for record in caplog.records]:
        assert CANARY not in text


def test_tls_verification_off_is_a_warning_once_per_service_and_url(caplog: pytest.LogCaptureFixture):
    """Verification is on unless a block turns it off; then the clients' logger warns, once per process for each
    service and URL, naming both and no secret (nothing is sent: building the client is enough)."""
    caplog.set_level(logging.INFO)
    unique = uuid.uuid4().hex[:8]
    awx_url, github_url, cluster_url = (f"https://{name}-{unique}.example.org" for name in ("awx", "github", "k8s"))
    kubeconfig = (
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: '{cluster_url}', insecure-skip-tls-verify: true}}}}]\n"
        f"users: [{{name: u, user: {{token: {CANARY}}}}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    blocks: list[Any] = [
        AwxServer(url=f"https://verified-{unique}.example.org", token=SecretStr(CANARY)),  # no warning
        AwxServer(url=awx_url, token=SecretStr(CANARY), verify_tls=False),
        AwxServer(url=awx_url, username="admin", password=SecretStr(CANARY), verify_tls=False),  # the same again
        GitHubAccount(token=SecretStr(CANARY), api_url=github_url, verify_tls=False, ca_bundle="/ignored/when/off"),
        KubernetesCluster(kubeconfig=SecretStr(kubeconfig)),
    ]
    for block in blocks:
        block.get_client().close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "verification is OFF" in r.getMessage()]
    assert [r.name for r in warnings] == ["clients.http"] * 3
    messages = [r.getMessage() for r in warnings]
    assert messages[0].startswith(f"AWX {awx_url}: TLS certificate verification is OFF")
    assert messages[1].startswith(f"GitHub {github_url}: TLS certificate verification is OFF")
    assert messages[2].startswith(f"Kubernetes {cluster_url}: TLS certificate verification is OFF")
    assert all(CANARY not in r.getMessage() for r in caplog.records)
    caplog.clear()
    AwxServer(url=awx_url, token=SecretStr(CANARY), verify_tls=False).get_client().close()
    assert not [r for r in caplog.records if "verification is OFF" in r.getMessage()], "once per process"
