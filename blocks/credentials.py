"""Credentials blocks: each holds one service's address and secrets and builds that service's client.

Secrets are ``SecretStr`` (masked in the Prefect UI and API) and are read only where a client writes a request
header. Anyone who reaches an unprotected Prefect server API can read them with ``include_secrets``: protect the
server with ``PREFECT_SERVER_API_AUTH_STRING`` (see FACTS.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

if TYPE_CHECKING:
    from clients.awx import AwxClient
    from clients.github import GitHubClient
    from clients.registry import RegistryClient
    from clients.rollout import RolloutClient


class AwxServer(CredentialsBlock):
    """An AWX (or Ansible Automation Platform controller) server and the credentials to launch jobs on it."""

    _block_type_name = "AWX Server"
    _description = "An AWX server: its URL, API path and a token (or user and password) allowed to launch jobs."

    url: str = Field(description="The server's root URL, e.g. https://awx.example.org")
    api_path: str = Field(
        default="/api/v2/", description="The API base path: /api/v2/ (AWX), /api/controller/v2/ (AAP 2.5+)"
    )
    token: SecretStr | None = Field(default=None, description="An OAuth2 token with 'write' scope (preferred)")
    username: str | None = Field(default=None, description="User for Basic auth, when no token is given")
    password: SecretStr | None = Field(default=None, description="Password for Basic auth")
    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate")
    ca_bundle: str | None = Field(default=None, description="Path of a CA bundle to verify TLS with")
    timeout_seconds: float = Field(default=30.0, gt=0, description="Timeout of one HTTP request")
    websocket_path: str | None = Field(
        default="/websocket/",
        description="Where AWX serves its websocket, whose job status messages end a follow at once (polling stays "
        "the fallback); empty to poll alone",
    )

    def get_client(self) -> AwxClient:
        """A new ``AwxClient`` for this server (close it, or use it as a context manager)."""
        from clients.awx import AwxClient

        return AwxClient(
            self.url,
            api_path=self.api_path,
            token=self.token,
            username=self.username,
            password=self.password,
            verify=_verify(self.verify_tls, self.ca_bundle),
            timeout=_timeout(self.timeout_seconds),
            websocket_path=self.websocket_path or None,
        )


class GitHubAccount(CredentialsBlock):
    """A GitHub (or GitHub Enterprise) account token, and the secret that signs its webhooks."""

    _block_type_name = "GitHub Account"
    _description = "A GitHub token for the Actions API, the API URL (GitHub Enterprise), and the webhook secret."

    token: SecretStr = Field(description="A token that can read Actions and dispatch workflows")
    api_url: str = Field(
        default="https://api.github.com", description="https://api.github.com, or https://HOST/api/v3 for GHE"
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="The secret of the repositories' webhooks (verifies X-Hub-Signature-256)"
    )
    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate")
    ca_bundle: str | None = Field(default=None, description="Path of a CA bundle to verify TLS with")
    timeout_seconds: float = Field(default=30.0, gt=0, description="Timeout of one HTTP request")

    def get_client(self) -> GitHubClient:
        """A new ``GitHubClient`` for this account."""
        from clients.github import GitHubClient

        return GitHubClient(
            self.token,
            api_url=self.api_url,
            verify=_verify(self.verify_tls, self.ca_bundle),
            timeout=_timeout(self.timeout_seconds),
        )


class ImageRegistry(CredentialsBlock):
    """An OCI image registry (Docker Hub by default), anonymous or with a user and token."""

    _block_type_name = "Image Registry"
    _description = "An OCI registry to read image digests from: Docker Hub by default, anonymous or with a token."

    url: str | None = Field(
        default=None, description="The registry's URL; empty: derived from the image name (Docker Hub)"
    )
    username: str | None = Field(default=None, description="User, for private images")
    password: SecretStr | None = Field(default=None, description="Password or access token of the user")
    verify_tls: bool = Field(default=True, description="Verify the registry's TLS certificate")
    ca_bundle: str | None = Field(default=None, description="Path of a CA bundle to verify TLS with")
    timeout_seconds: float = Field(default=30.0, gt=0, description="Timeout of one HTTP request")

    def get_client(self) -> RegistryClient:
        """A new ``RegistryClient``."""
        from clients.registry import RegistryClient

        anonymous = self.password is None
        return RegistryClient(
            self.url,
            username=None if anonymous else self.username,
            password=self.password,
            verify=_verify(self.verify_tls, self.ca_bundle),
            timeout=_timeout(self.timeout_seconds),
        )


class KubernetesCluster(CredentialsBlock):
    """A Kubernetes cluster: a kubeconfig (inline or a file) with an optional context, or in-cluster config."""

    _block_type_name = "Kubernetes Cluster"
    _description = "A Kubernetes cluster reached with a kubeconfig (and context) or the in-cluster service account."

    kubeconfig: SecretStr | None = Field(
        default=None, description="The kubeconfig's YAML text (it holds credentials, so it is a secret)"
    )
    kubeconfig_path: str | None = Field(default=None, description="Or the path of a kubeconfig file")
    context: str | None = Field(default=None, description="The kubeconfig context; empty: its current context")
    in_cluster: bool = Field(default=False, description="Use the pod's service account (running in the cluster)")
    request_timeout_seconds: float = Field(default=30.0, gt=0, description="Timeout of one API request")

    def get_client(self) -> RolloutClient:
        """A roll-out client built with the kubernetes package's own config loaders."""
        from clients.rollout import RolloutClient

        if self.in_cluster:
            return RolloutClient.in_cluster(request_timeout=self.request_timeout_seconds)
        if self.kubeconfig is not None:
            import yaml

            return RolloutClient.from_kubeconfig_dict(
                yaml.safe_load(self.kubeconfig.get_secret_value()),
                context=self.context,
                request_timeout=self.request_timeout_seconds,
            )
        if self.kubeconfig_path:
            return RolloutClient.from_kubeconfig(
                self.kubeconfig_path, context=self.context, request_timeout=self.request_timeout_seconds
            )
        raise ValueError("KubernetesCluster needs a kubeconfig, a kubeconfig_path or in_cluster=True")


def _verify(verify_tls: bool, ca_bundle: str | None) -> bool | str:
    return ca_bundle if (verify_tls and ca_bundle) else verify_tls


def _timeout(seconds: float) -> Any:
    import httpx

    return httpx.Timeout(seconds, connect=min(seconds, 5.0))
