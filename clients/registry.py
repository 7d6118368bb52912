"""The OCI registry client: image references parsed as Docker does, and a tag's digest read with ``HEAD``.

FACTS.md "OCI registry": ``HEAD /v2/<name>/manifests/<tag>`` with an ``Accept`` list naming the OCI index, OCI
manifest, Docker manifest list and Docker manifest v2 media types answers ``Docker-Content-Digest`` (and Docker
Hub does not count a HEAD as a pull). A 401 carries ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``:
fetch a token there (anonymously, or with Basic credentials) and try again (the distribution token spec).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from clients.errors import ApiError, ImageNotFound
from clients.http import DEFAULT_TIMEOUT, BasicAuth, Closable, HttpService, TokenAuth
from clients.retry import RetryPolicy

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ACCEPT = ", ".join(MANIFEST_TYPES)

# The grammar of github.com/distribution/reference (regexp.go), written out here.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


class InvalidReference(ValueError):
    """Not an image reference Docker would accept."""


@dataclass(frozen=True)
class ImageReference:
    """A normalised image reference.

    Attributes:
        registry: the registry's name as Docker writes it (``docker.io``, ``ghcr.io``, ``localhost:5000``).
        repository: the path in it (``xchem/fragalysis-stack``, ``library/postgres``).
        tag: the tag, or None when only a digest was given.
        digest: ``sha256:...`` when the reference pins one.
    """

    registry: str
    repository: str
    tag: str | None = "latest"
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``, Docker's fully qualified name."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def api_host(self) -> str:
        """The host serving the registry API (Docker Hub's is ``registry-1.docker.io``)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def api_url(self) -> str:
        """The registry API's root URL; plain HTTP only for loopback registries (Docker's default insecure set)."""
        host = self.api_host.split(":")[0]
        scheme = "http" if host in ("localhost", "127.0.0.1", "[::1]") or host.startswith("127.") else "https"
        return f"{scheme}://{self.api_host}"

    def with_digest(self, digest: str) -> ImageReference:
        return ImageReference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(reference: str) -> ImageReference:
    """Parse an image reference as Docker does (``ParseNormalizedNamed`` and ``TagNameOnly``).

    ``xchem/fragalysis-stack`` -> ``docker.io/xchem/fragalysis-stack:latest``; ``postgres`` ->
    ``docker.io/library/postgres:latest``; the first component is a registry when it holds a ``.`` or ``:``,
    is ``localhost``, or has capitals; ``index.docker.io`` is ``docker.io``; ``latest`` is added only when
    neither a tag nor a digest is given.

    Raises:
        InvalidReference: the reference breaks Docker's grammar.
    """
    text = reference.strip()
    if not text:
        raise InvalidReference("an image reference cannot be empty")
    remainder, _, digest = text.partition("@")
    if digest and not _DIGEST.match(digest):
        raise InvalidReference(f"invalid digest in image reference {reference!r}")
    first, slash, rest = remainder.partition("/")
    if slash and (any(c in first for c in ".:") or first == "localhost" or first.lower() != first):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, remainder
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    tag: str | None = None
    last_colon = path.rfind(":")
    if last_colon != -1 and "/" not in path[last_colon:]:
        path, tag = path[:last_colon], path[last_colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidReference(f"invalid tag {tag!r} in image reference {reference!r}")
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _PATH.match(path):
        raise InvalidReference(f"invalid repository name {path!r} in image reference {reference!r}")
    if not _DOMAIN.match(registry):
        raise InvalidReference(f"invalid registry {registry!r} in image reference {reference!r}")
    if tag is None and not digest:
        tag = "latest"
    return ImageReference(registry, path, tag, digest or None)


def image_digest(image_id: str) -> str | None:
    """The manifest digest in a container's ``imageID`` (``containerStatuses[].imageID``), or None without one.

    Runtimes write ``<repository>@sha256:...`` (containerd, CRI-O), ``docker-pullable://<repository>@sha256:...``
    (Docker through dockershim or cri-dockerd) or ``docker://sha256:...`` (an image Docker did not pull by digest:
    that is its local image ID, which no registry digest equals). The digest is what follows the last ``@``, after
    any ``<scheme>://`` prefix; None when that is not a digest (an empty imageID, a bare tag).
    """
    text = image_id.strip()
    if "://" in text:
        text = text.partition("://")[2]
    digest = text.rpartition("@")[2]
    return digest if _DIGEST.match(digest) else None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate: Bearer realm="...",service="...",scope="..."`` -> ``("bearer", {...})``."""
    scheme, _, params = header.strip().partition(" ")
    values = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _CHALLENGE_PARAM.finditer(params)
    }
    return scheme.lower(), values


@dataclass(frozen=True)
class _Token:
    value: SecretStr
    expires: float


class RegistryClient(Closable):
    """Read image digests from an OCI registry (Docker Hub, GHCR, a private ``registry:2``).

    Args:
        base_url: the registry API's root (``http://127.0.0.1:5000``); None derives it from each reference's
            registry (``docker.io`` -> ``https://registry-1.docker.io``).
        username: for Basic auth at the token service (or the registry); None for anonymous pulls.
        password: the password or access token, a ``SecretStr``.
        verify: TLS verification: True, False, or a CA bundle path.
        timeout: the ``httpx.Timeout`` of every request.
        retry: the ``RetryPolicy`` (5xx, 429 and dropped connections are retried; HEAD and GET are idempotent).
        transport: an httpx transport for tests.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        username: str | None = None,
        password: SecretStr | str | None = None,
        verify: bool | str = True,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither (anonymous)")
        self.base_url = base_url.rstrip("/") if base_url else None
        self.username = username
        self._basic = BasicAuth(username, password) if username is not None and password is not None else None
        self._options: dict[str, Any] = {"verify": verify, "timeout": timeout, "retry": retry, "transport": transport}
        self._services: dict[str, HttpService] = {}
        self._tokens: dict[tuple[str, str], _Token] = {}

    def __repr__(self) -> str:
        who = f"username={self.username!r}, password=**********" if self.username else "anonymous"
        return f"RegistryClient(base_url={self.base_url!r}, {who})"

    def close(self) -> None:
        for service in self._services.values():
            service.close()
        self._services.clear()

    # ------------------------------------------------------------ public

    def digest(self, image: str | ImageReference) -> str:
        """The manifest digest (``sha256:...``) that a tag points to now (for a pinned digest: that digest,
        once the registry confirms it has it).

        Raises:
            ImageNotFound: the registry has no such tag or repository.
            ApiError: any other failure (refused credentials, 5xx after the retries, no digest header).
        """
        ref = image if isinstance(image, ImageReference) else parse_reference(image)
        service = self._service(ref)
        path = f"/v2/{ref.repository}/manifests/{ref.reference}"
        response = self._send(service, ref, "HEAD", path)
        digest: str | None = response.headers.get("Docker-Content-Digest")
        if not digest:
            # Some registries omit the header on HEAD; the digest is the sha256 of the manifest bytes.
            response = self._send(service, ref, "GET", path)
            digest = str(response.headers.get("Docker-Content-Digest") or "") or (
                "sha256:" + hashlib.sha256(response.content).hexdigest()
            )
        return digest

    def exists(self, image: str | ImageReference) -> bool:
        """Whether the registry has the tag (or digest)."""
        try:
            self.digest(image)
        except ImageNotFound:
            return False
        return True

    # ------------------------------------------------------------ internals

    def _service(self, ref: ImageReference) -> HttpService:
        root = self.base_url or ref.api_url
        if root not in self._services:
            self._services[root] = HttpService(root, service=f"registry {root}", **self._options)
        return self._services[root]

    def _send(self, service: HttpService, ref: ImageReference, method: str, path: str) -> httpx.Response:
        scope = f"repository:{ref.repository}:pull"
        headers = {"Accept": ACCEPT}
        auth: httpx.Auth | None = self._cached_token(service, scope)
        response = service.request(method, path, headers=headers, auth=auth, expected=(200, 401, 404))
        if response.status_code == 401:
            auth = self._answer_challenge(service, ref, response)
            response = service.request(method, path, headers=headers, auth=auth, expected=(200, 401, 404))
            if response.status_code == 401:
                who = f"user {self.username!r}" if self.username else "an anonymous client"
                raise ApiError(
                    f"registry {service.base_url} refused {who} access to {ref.repository} "
                    f"(it may not exist, or need other credentials)",
                    status=401,
                    url=service.url(path),
                )
        if response.status_code == 404:
            raise ImageNotFound(f"image {ref} not found: registry {service.url(path)} answered 404")
        return response

    def _cached_token(self, service: HttpService, scope: str) -> TokenAuth | None:
        token = self._tokens.get((service.base_url, scope))
        if token is None:
            return None
        if token.expires <= time.monotonic():
            del self._tokens[(service.base_url, scope)]
            return None
        return TokenAuth(token.value, "Bearer")

    def _answer_challenge(self, service: HttpService, ref: ImageReference, response: httpx.Response) -> httpx.Auth:
        header = response.headers.get("WWW-Authenticate", "")
        scheme, params = parse_challenge(header)
        if scheme == "basic":
            if self._basic is None:
                raise ApiError(
                    f"registry {service.base_url} needs credentials to read {ref.repository}",
                    status=401,
                    url=service.base_url,
                )
            return self._basic
        if scheme != "bearer" or not params.get("realm"):
            raise ApiError(
                f"registry {service.base_url} answered 401 without a usable Bearer challenge",
                status=401,
                url=service.base_url,
            )
        realm = params["realm"]
        pull_scope = f"repository:{ref.repository}:pull"
        scope = params.get("scope") or pull_scope
        query = {key: params[key] for key in ("service",) if params.get(key)}
        query["scope"] = scope
        answer = service.request(
            "GET", realm, params=query, headers={"Accept": "application/json"}, auth=self._basic, expected=(200,)
        )
        try:
            body = answer.json()
            token = body.get("token") or body.get("access_token")
            expires_in = float(body.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token, expires_in = None, 0.0
        if not isinstance(token, str) or not token:
            raise ApiError(f"token service {realm} gave no token for {scope}", status=answer.status_code, url=realm)
        # The token spec's default lifetime is 60 s; keep a margin so a token never expires in flight.
        secret = SecretStr(token)
        self._tokens[(service.base_url, pull_scope)] = _Token(secret, time.monotonic() + max(0.0, expires_in - 5.0))
        return TokenAuth(secret, "Bearer")
