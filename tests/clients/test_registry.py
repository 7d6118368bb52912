"""The registry client: references parsed as Docker does, the Bearer challenge, 404s and bounded retries
(httpx.MockTransport), then the registry emulator and Debian's real ``docker-registry``."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from clients.errors import ApiError, ImageNotFound
from clients.registry import (
    ACCEPT,
    MANIFEST_TYPES,
    ImageReference,
    InvalidReference,
    RegistryClient,
    image_digest,
    parse_challenge,
    parse_reference,
)
from clients.retry import RetryPolicy

DIGEST = "sha256:" + "ab" * 32
CANARY = "canary-Zx9-registry-secret"
FAST = RetryPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.02, jitter=0.0, max_retry_after=1.0)


# ------------------------------------------------------------------ references

REFERENCES = [
    (
        "xchem/fragalysis-stack",
        "docker.io",
        "xchem/fragalysis-stack",
        "latest",
        None,
        "docker.io/xchem/fragalysis-stack:latest",
    ),
    ("postgres", "docker.io", "library/postgres", "latest", None, "docker.io/library/postgres:latest"),
    ("postgres:12.16", "docker.io", "library/postgres", "12.16", None, "docker.io/library/postgres:12.16"),
    (
        "docker.io/library/postgres",
        "docker.io",
        "library/postgres",
        "latest",
        None,
        "docker.io/library/postgres:latest",
    ),
    ("index.docker.io/xchem/x:1", "docker.io", "xchem/x", "1", None, "docker.io/xchem/x:1"),
    ("host:5000/a/b:tag", "host:5000", "a/b", "tag", None, "host:5000/a/b:tag"),
    ("a/b@" + DIGEST, "docker.io", "a/b", None, DIGEST, "docker.io/a/b@" + DIGEST),
    ("a/b:v1@" + DIGEST, "docker.io", "a/b", "v1", DIGEST, "docker.io/a/b:v1@" + DIGEST),
    ("localhost/x", "localhost", "x", "latest", None, "localhost/x:latest"),
    ("localhost:5000/x:dev", "localhost:5000", "x", "dev", None, "localhost:5000/x:dev"),
    (
        "ghcr.io/xchem/fragalysis-stack:1.0.3",
        "ghcr.io",
        "xchem/fragalysis-stack",
        "1.0.3",
        None,
        "ghcr.io/xchem/fragalysis-stack:1.0.3",
    ),
    ("Registry/x", "Registry", "x", "latest", None, "Registry/x:latest"),
    ("quay.io/a/b/c", "quay.io", "a/b/c", "latest", None, "quay.io/a/b/c:latest"),
    ("a_b/c-d.e__f", "docker.io", "a_b/c-d.e__f", "latest", None, "docker.io/a_b/c-d.e__f:latest"),
    ("[::1]:5000/x", "[::1]:5000", "x", "latest", None, "[::1]:5000/x:latest"),
]


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest", "canonical"), REFERENCES, ids=[r[0] for r in REFERENCES]
)
def test_parse_reference(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None, canonical: str
) -> None:
    ref = parse_reference(text)
    assert ref == ImageReference(registry, repository, tag, digest)
    assert str(ref) == canonical
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize(
    "text",
    [
        "",
        "upper/Case",
        "a/b:",
        "a/b:-tag",
        "a//b",
        "a/b@sha256:short",
        "a/b@nope",
        "-a/b",
        "a/b:" + "t" * 129,
        "host:5000/A",
    ],
)
def test_invalid_references(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_reference(text)


def test_api_hosts() -> None:
    assert parse_reference("xchem/fragalysis-stack").api_url == "https://registry-1.docker.io"
    assert parse_reference("ghcr.io/a/b").api_url == "https://ghcr.io"
    assert parse_reference("localhost:5000/a").api_url == "http://localhost:5000"
    assert parse_reference("127.0.0.1:5000/a").api_url == "http://127.0.0.1:5000"
    assert parse_reference("a/b@" + DIGEST).reference == DIGEST
    assert parse_reference("a/b:v1").reference == "v1"


def test_parse_challenge() -> None:
    header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:xchem/x:pull"'
    assert parse_challenge(header) == (
        "bearer",
        {"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:xchem/x:pull"},
    )
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})


# ------------------------------------------------------------------ MockTransport: Docker Hub's dance


class FakeHub:
    """Docker Hub's behaviour: anonymous 401 + Bearer challenge, a token service, HEAD with the digest."""

    def __init__(
        self, *, tags: dict[str, str] | None = None, users: dict[str, str] | None = None, expires_in: int = 300
    ) -> None:
        self.tags = tags if tags is not None else {"latest": DIGEST}
        self.users = users or {}
        self.expires_in = expires_in
        self.requests: list[httpx.Request] = []
        self.issued = 0
        self.fail_next = 0
        self.omit_digest_on_head = False
        self.body = b'{"schemaVersion": 2}'

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail_next > 0:
            self.fail_next -= 1
            return httpx.Response(503, json={"errors": [{"code": "UNAVAILABLE", "message": "service unavailable"}]})
        if request.url.host == "auth.example":
            return self.token(request)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer token-"):
            challenge = 'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:xchem/fragalysis-stack:pull"'
            return httpx.Response(
                401, headers={"WWW-Authenticate": challenge}, json={"errors": [{"code": "UNAUTHORIZED"}]}
            )
        tag = request.url.path.rsplit("/", 1)[-1]
        if tag not in self.tags:
            return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})
        headers = {"Content-Type": MANIFEST_TYPES[3]}
        if request.method == "GET" or not self.omit_digest_on_head:
            headers["Docker-Content-Digest"] = self.tags[tag]
        if self.omit_digest_on_head and request.method == "GET":
            del headers["Docker-Content-Digest"]
        return httpx.Response(200, headers=headers, content=self.body if request.method == "GET" else b"")

    def token(self, request: httpx.Request) -> httpx.Response:
        assert request.url.params["service"] == "registry.example"
        assert request.url.params["scope"] == "repository:xchem/fragalysis-stack:pull"
        auth = request.headers.get("Authorization")
        if self.users:
            expected = {"Basic " + base64.b64encode(f"{u}:{p}".encode()).decode() for u, p in self.users.items()}
            if auth not in expected:
                return httpx.Response(401, json={"details": "incorrect username or password"})
        self.issued += 1
        return httpx.Response(200, json={"token": f"token-{self.issued}", "expires_in": self.expires_in})

    def registry_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.host != "auth.example"]


def client_for(hub: FakeHub, **kwargs: Any) -> RegistryClient:
    return RegistryClient("https://registry.example", retry=FAST, transport=httpx.MockTransport(hub), **kwargs)


def test_anonymous_bearer_challenge_then_cached_token() -> None:
    hub = FakeHub()
    with client_for(hub) as client:
        assert client.digest("xchem/fragalysis-stack") == DIGEST
        assert client.digest("xchem/fragalysis-stack:latest") == DIGEST
    methods = [(r.method, r.url.host, r.headers.get("Authorization")) for r in hub.requests]
    assert methods == [
        ("HEAD", "registry.example", None),
        ("GET", "auth.example", None),
        ("HEAD", "registry.example", "Bearer token-1"),
        ("HEAD", "registry.example", "Bearer token-1"),
    ]
    head = hub.requests[0]
    assert head.url.path == "/v2/xchem/fragalysis-stack/manifests/latest"
    assert head.headers["Accept"] == ACCEPT
    assert all(media_type in head.headers["Accept"] for media_type in MANIFEST_TYPES)
    assert head.headers["User-Agent"].startswith("fragalysis-cd/")


def test_expired_token_is_fetched_again() -> None:
    hub = FakeHub(expires_in=1)  # shorter than the client's safety margin: never reused
    with client_for(hub) as client:
        client.digest("xchem/fragalysis-stack")
        client.digest("xchem/fragalysis-stack")
    assert hub.issued == 2


def test_credentials_go_to_the_token_service_as_basic() -> None:
    hub = FakeHub(users={"robot": CANARY})
    with client_for(hub, username="robot", password=SecretStr(CANARY)) as client:
        assert client.digest("xchem/fragalysis-stack") == DIGEST
    token_request = next(r for r in hub.requests if r.url.host == "auth.example")
    assert token_request.headers["Authorization"] == "Basic " + base64.b64encode(f"robot:{CANARY}".encode()).decode()


def test_wrong_credentials_are_an_api_error_without_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    hub = FakeHub(users={"robot": "right"})
    client = client_for(hub, username="robot", password=SecretStr(CANARY))
    with pytest.raises(ApiError) as caught:
        client.digest("xchem/fragalysis-stack")
    assert caught.value.status == 401
    assert "auth.example/token" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), repr(client), str(client), caplog.text):
        assert CANARY not in text
    assert "token-" not in caplog.text
    client.close()


def test_missing_tag_is_image_not_found() -> None:
    hub = FakeHub()
    with client_for(hub) as client, pytest.raises(ImageNotFound) as caught:
        client.digest("xchem/fragalysis-stack:nope")
    message = str(caught.value)
    assert "docker.io/xchem/fragalysis-stack:nope" in message
    assert "https://registry.example/v2/xchem/fragalysis-stack/manifests/nope" in message
    with client_for(FakeHub()) as client:
        assert client.exists("xchem/fragalysis-stack:latest")
        assert not client.exists("xchem/fragalysis-stack:nope")


def test_retries_are_bounded() -> None:
    hub = FakeHub()
    hub.fail_next = 2
    with client_for(hub) as client:
        assert client.digest("xchem/fragalysis-stack") == DIGEST
    hub = FakeHub()
    hub.fail_next = 100
    with client_for(hub) as client, pytest.raises(ApiError) as caught:
        client.digest("xchem/fragalysis-stack")
    assert caught.value.status == 503
    assert len(hub.requests) == FAST.attempts
    assert "service unavailable" in str(caught.value)


def test_digest_from_the_manifest_bytes_when_head_omits_it() -> None:
    hub = FakeHub()
    hub.omit_digest_on_head = True
    with client_for(hub) as client:
        assert client.digest("xchem/fragalysis-stack") == "sha256:" + hashlib.sha256(hub.body).hexdigest()
    assert [r.method for r in hub.registry_requests()][-1] == "GET"


def test_basic_challenge_and_anonymous_refusal() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization", "").startswith("Basic "):
            return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="Registry"'})

    with RegistryClient(
        "https://r.example", username="u", password="p", transport=httpx.MockTransport(handler)
    ) as client:
        assert client.digest("r.example/a/b") == DIGEST
    with (
        RegistryClient("https://r.example", transport=httpx.MockTransport(handler)) as client,
        pytest.raises(ApiError, match="needs credentials"),
    ):
        client.digest("r.example/a/b")


def test_repr_never_shows_the_password() -> None:
    client = RegistryClient(username="robot", password=CANARY)
    assert CANARY not in repr(client)
    assert "robot" in repr(client)
    client.close()
    with pytest.raises(ValueError, match="both"):
        RegistryClient(username="robot")


# ------------------------------------------------------------------ the registry emulator


def test_emulator_token_challenge_and_new_digest(
    make_sandbox: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox = make_sandbox(speed=600)
    endpoints = sandbox.endpoints()
    url = endpoints["registry"]["url"]
    assert sandbox.scenario.registry.auth == "token"
    with RegistryClient(url, retry=FAST) as client:
        first = sandbox.call(sandbox.registry.push_image, "xchem/fragalysis-stack", ["latest"])
        assert client.digest("xchem/fragalysis-stack") == first
        second = sandbox.call(sandbox.registry.push_image, "xchem/fragalysis-stack", ["latest"])
        assert second != first
        assert client.digest("xchem/fragalysis-stack:latest") == second
        assert client.digest("xchem/fragalysis-stack@" + second) == second
        assert sandbox.call(sandbox.registry.resolve, "xchem/fragalysis-stack:latest") == second
        with pytest.raises(ImageNotFound, match="no-such-tag"):
            client.digest("xchem/fragalysis-stack:no-such-tag")
    user, password = endpoints["registry"]["username"], endpoints["registry"]["password"]
    with RegistryClient(url, username=user, password=SecretStr(password), retry=FAST) as client:
        assert client.digest("xchem/fragalysis-stack") == second
    assert password not in caplog.text


def test_emulator_retries_through_injected_faults(make_sandbox: Callable[..., Any]) -> None:
    sandbox = make_sandbox(speed=600)
    url = sandbox.endpoints()["registry"]["url"]
    digest = sandbox.call(sandbox.registry.push_image, "xchem/fragalysis-stack", ["latest"])
    with RegistryClient(url, retry=FAST) as client:
        sandbox.set_faults(registry={"fail_next": 2, "error_status": 503})
        assert client.digest("xchem/fragalysis-stack") == digest
        sandbox.set_faults(registry={"fail_next": 50, "error_status": 503})
        with pytest.raises(ApiError) as caught:
            client.digest("xchem/fragalysis-stack")
        assert caught.value.status == 503


# ------------------------------------------------------------------ Debian's real docker-registry


def push_image(url: str, name: str, tag: str, payload: bytes) -> str:
    """Push a one-layer image with the registry API (blob uploads, then the manifest); returns its digest."""

    def upload(http: httpx.Client, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        started = http.post(f"/v2/{name}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        separator = "&" if "?" in location else "?"
        done = http.put(
            f"{location}{separator}digest={digest}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.text
        return digest

    with httpx.Client(base_url=url, timeout=10.0) as http:
        layer = payload
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPES[3],
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": len(config),
                    "digest": upload(http, config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": len(layer),
                        "digest": upload(http, layer),
                    }
                ],
            }
        ).encode()
        put = http.put(f"/v2/{name}/manifests/{tag}", content=manifest, headers={"Content-Type": MANIFEST_TYPES[3]})
        assert put.status_code == 201, put.text
        assert put.headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(manifest).hexdigest()
        return str(put.headers["Docker-Content-Digest"])


@pytest.mark.docker_registry
def test_real_docker_registry(docker_registry: str) -> None:
    first = push_image(docker_registry, "xchem/fragalysis-stack", "latest", b"layer one")
    with RegistryClient(docker_registry, retry=FAST) as client:
        assert client.digest("xchem/fragalysis-stack") == first
        second = push_image(docker_registry, "xchem/fragalysis-stack", "latest", b"layer two")
        assert second != first
        assert client.digest("xchem/fragalysis-stack:latest") == second
        assert client.digest("xchem/fragalysis-stack@" + first) == first
        with pytest.raises(ImageNotFound, match="no-such-tag"):
            client.digest("xchem/fragalysis-stack:no-such-tag")
        with pytest.raises(ImageNotFound):
            client.digest("xchem/never-pushed:latest")
    host = docker_registry.removeprefix("http://")
    with RegistryClient(retry=FAST) as client:  # base URL derived from the reference: loopback is plain HTTP
        assert client.digest(f"{host}/xchem/fragalysis-stack:latest") == second


DIGEST = "sha256:" + "4f" * 32


@pytest.mark.parametrize(
    ("image_id", "digest"),
    [
        (f"docker.io/xchem/fragalysis-stack@{DIGEST}", DIGEST),  # containerd, CRI-O
        (f"docker-pullable://xchem/fragalysis-stack@{DIGEST}", DIGEST),  # Docker via dockershim / cri-dockerd
        (f"docker://{DIGEST}", DIGEST),  # Docker's local image ID: the value, which no registry digest equals
        (f"localhost:5000/stack@{DIGEST}", DIGEST),  # a port's colon is not a digest's
        (f"ghcr.io/xchem/stack:1.0@{DIGEST}", DIGEST),
        (DIGEST, DIGEST),
        ("docker.io/xchem/fragalysis-stack:latest", None),
        ("docker.io/xchem/fragalysis-stack@latest", None),
        ("", None),
    ],
)
def test_image_digest_from_an_image_id(image_id: str, digest: str | None) -> None:
    assert image_digest(image_id) == digest
