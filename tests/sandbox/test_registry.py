"""The registry emulator over real HTTP: Docker Hub's token dance, manifests by tag and digest, pushes, faults,
and the in-process interface (push_image, resolve, tags) that the other emulators use."""

from __future__ import annotations

import hashlib
import json
import re

import httpx
import pytest

from sandbox.runtime import Sandbox
from sandbox.scenario import load_scenario
from tests.conftest import SandboxFactory

STACK = "xchem/fragalysis-stack"
ACCEPT_ALL = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
USER = ("sandbox", "sandbox-registry-password")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def challenge(response: httpx.Response) -> dict[str, str]:
    """The parameters of a ``WWW-Authenticate: Bearer k="v",...`` challenge."""
    header = response.headers["www-authenticate"]
    assert header.startswith("Bearer ")
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def fetch_token(client: httpx.Client, response: httpx.Response, auth: tuple[str, str] | None = None) -> str:
    """Follow a 401's challenge to the token endpoint, as docker and containerd do."""
    params = challenge(response)
    query = {"service": params["service"]}
    if "scope" in params:
        query["scope"] = params["scope"]
    answer = client.get(params["realm"], params=query, auth=auth)
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> Sandbox:
    return make_sandbox(speed=600)


@pytest.fixture
def open_sandbox(make_sandbox: SandboxFactory) -> Sandbox:
    """The registry without authentication (like Debian's registry with its default config)."""
    registry = load_scenario("fragalysis").registry.model_copy(update={"auth": "none"})
    return make_sandbox(speed=600, registry=registry)


def upload_blob(client: httpx.Client, name: str, data: bytes, headers: dict[str, str]) -> None:
    started = client.post(f"/v2/{name}/blobs/uploads/", headers=headers)
    assert started.status_code == 202, started.text
    # the Location already has a query (_state): the digest is appended to it
    location = started.headers["location"] + "&digest=" + sha256(data)
    done = client.put(location, content=data, headers=headers)
    assert done.status_code == 201, done.text


def docker_manifest(config: bytes, layer: bytes) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_V2,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": sha256(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": sha256(layer),
                }
            ],
        }
    ).encode()


# ---------------------------------------------------------------- the token dance


def test_challenge_then_anonymous_pull_token(sandbox: Sandbox):
    url = sandbox.urls["registry"]
    with httpx.Client(base_url=url, timeout=5) as client:
        base = client.get("/v2/")
        assert base.status_code == 401
        assert base.headers["docker-distribution-api-version"] == "registry/2.0"
        assert challenge(base) == {"realm": f"{url}/token", "service": "registry.sandbox"}
        assert base.json()["errors"][0]["code"] == "UNAUTHORIZED"

        head = client.head(f"/v2/{STACK}/manifests/latest", headers={"Accept": ACCEPT_ALL})
        assert head.status_code == 401
        assert head.content == b""
        assert challenge(head)["scope"] == f"repository:{STACK}:pull"

        token = fetch_token(client, head)
        authorised = {"Accept": ACCEPT_ALL, "Authorization": f"Bearer {token}"}
        again = client.head(f"/v2/{STACK}/manifests/latest", headers=authorised)
        assert again.status_code == 200
        assert again.headers["docker-content-digest"] == sandbox.call(sandbox.registry.resolve, f"{STACK}:latest")
        assert client.get("/v2/", headers=authorised).json() == {}


def test_token_endpoint_answer(sandbox: Sandbox):
    url = sandbox.urls["registry"]
    answer = httpx.get(f"{url}/token", params={"service": "registry.sandbox", "scope": "repository:library/x:pull"})
    body = answer.json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["issued_at"])
    wrong = httpx.get(f"{url}/token", params={"scope": f"repository:{STACK}:pull,push"}, auth=("sandbox", "nope"))
    assert wrong.status_code == 401
    assert wrong.json() == {"details": "incorrect username or password"}


def test_push_needs_a_user(sandbox: Sandbox):
    name = "xchem/pushed"
    with httpx.Client(base_url=sandbox.urls["registry"], timeout=5) as client:
        first = client.post(f"/v2/{name}/blobs/uploads/")
        assert first.status_code == 401
        assert challenge(first)["scope"] == f"repository:{name}:pull,push"

        anonymous = fetch_token(client, first)
        refused = client.post(f"/v2/{name}/blobs/uploads/", headers={"Authorization": f"Bearer {anonymous}"})
        assert refused.status_code == 401
        params = challenge(refused)
        assert params["scope"] == f"repository:{name}:pull,push"
        assert params["error"] == "insufficient_scope"

        token = fetch_token(client, refused, auth=USER)
        headers = {"Authorization": f"Bearer {token}"}
        config, layer = b'{"architecture":"amd64","os":"linux"}', b"layer bytes"
        upload_blob(client, name, config, headers)
        upload_blob(client, name, layer, headers)
        manifest = docker_manifest(config, layer)
        put = client.put(
            f"/v2/{name}/manifests/1.0.0", content=manifest, headers={**headers, "Content-Type": DOCKER_V2}
        )
        assert put.status_code == 201, put.text
        assert put.headers["docker-content-digest"] == sha256(manifest)
        assert put.headers["location"].endswith(f"/v2/{name}/manifests/{sha256(manifest)}")
    assert sandbox.call(sandbox.registry.resolve, f"{name}:1.0.0") == sha256(manifest)


def test_bad_token_is_refused_as_invalid(sandbox: Sandbox):
    response = httpx.get(f"{sandbox.urls['registry']}/v2/", headers={"Authorization": "Bearer not.a.token"})
    assert response.status_code == 401
    assert challenge(response)["error"] == "invalid_token"


# ---------------------------------------------------------------- manifests


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_head_digest_is_the_digest_of_the_body(open_sandbox: Sandbox, by: str):
    reference = "latest" if by == "tag" else open_sandbox.call(open_sandbox.registry.resolve, STACK)
    path = f"/v2/{STACK}/manifests/{reference}"
    with httpx.Client(base_url=open_sandbox.urls["registry"], timeout=5) as client:
        head = client.head(path, headers={"Accept": ACCEPT_ALL})
        get = client.get(path, headers={"Accept": ACCEPT_ALL})
    assert head.status_code == get.status_code == 200
    assert head.headers["docker-content-digest"] == sha256(get.content) == get.headers["docker-content-digest"]
    assert head.headers["content-type"] == DOCKER_V2
    assert head.headers["content-length"] == str(len(get.content))
    assert head.headers["etag"] == f'"{sha256(get.content)}"'
    manifest = get.json()
    assert manifest["mediaType"] == DOCKER_V2
    blob = httpx.get(f"{open_sandbox.urls['registry']}/v2/{STACK}/blobs/{manifest['config']['digest']}")
    assert sha256(blob.content) == manifest["config"]["digest"]


def test_missing_tag_is_manifest_unknown_and_head_has_no_body(open_sandbox: Sandbox):
    path = f"/v2/{STACK}/manifests/no-such-tag"
    # one keep-alive connection: a body after the HEAD answer would corrupt the next response
    with httpx.Client(base_url=open_sandbox.urls["registry"], timeout=5) as client:
        head = client.head(path, headers={"Accept": ACCEPT_ALL})
        get = client.get(path, headers={"Accept": ACCEPT_ALL})
        tags = client.get(f"/v2/{STACK}/tags/list")
    assert head.status_code == get.status_code == 404
    assert head.content == b""
    assert head.headers["content-type"] == "application/json; charset=utf-8"
    assert get.json() == {
        "errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {"Tag": "no-such-tag"}}]
    }
    assert tags.json() == {"name": STACK, "tags": ["1.0.2", "latest", "stable"]}


def test_manifest_referencing_a_missing_blob_is_refused(open_sandbox: Sandbox):
    manifest = docker_manifest(b"absent config", b"absent layer")
    response = httpx.put(
        f"{open_sandbox.urls['registry']}/v2/xchem/broken/manifests/latest",
        content=manifest,
        headers={"Content-Type": DOCKER_V2},
    )
    assert response.status_code == 400
    assert [(e["code"], e["detail"]) for e in response.json()["errors"]] == [
        ("MANIFEST_BLOB_UNKNOWN", sha256(b"absent config")),
        ("MANIFEST_BLOB_UNKNOWN", sha256(b"absent layer")),
    ]


# ---------------------------------------------------------------- the in-process interface


def test_seeded_images_stable_shares_the_newest_numbered_tag(make_sandbox: SandboxFactory):
    first = make_sandbox(speed=600)
    tags = first.call(first.registry.tags, STACK)
    assert set(tags) == {"latest", "stable", "1.0.2"}
    assert tags["stable"] == tags["1.0.2"] != tags["latest"]
    # the same seed gives the same images
    second = make_sandbox(speed=600)
    assert second.call(second.registry.tags, STACK) == tags


def test_push_image_changes_the_digest_of_the_tag(open_sandbox: Sandbox):
    registry = open_sandbox.registry
    before = open_sandbox.call(registry.tags, STACK)
    digest = open_sandbox.call(registry.push_image, STACK, ["latest"])
    assert digest != before["latest"]
    head = httpx.head(f"{open_sandbox.urls['registry']}/v2/{STACK}/manifests/latest", headers={"Accept": ACCEPT_ALL})
    assert head.headers["docker-content-digest"] == digest
    after = open_sandbox.call(registry.tags, STACK)
    assert after == {**before, "latest": digest}
    # a production build pushes the tag and stable with one digest
    release = open_sandbox.call(registry.push_image, STACK, ["1.0.3", "stable"])
    assert (
        open_sandbox.call(registry.tags, STACK)["stable"]
        == release
        == open_sandbox.call(registry.resolve, f"{STACK}:1.0.3")
    )


def test_missing_images_fault(open_sandbox: Sandbox):
    registry = open_sandbox.registry
    old = open_sandbox.call(registry.resolve, f"{STACK}:latest")
    open_sandbox.set_faults(missing_images=[f"{STACK}:latest", "docker.io/postgres:12"])
    assert open_sandbox.call(registry.resolve, f"{STACK}:latest") is None
    assert open_sandbox.call(registry.resolve, "postgres:12") is None
    url = open_sandbox.urls["registry"]
    assert httpx.head(f"{url}/v2/{STACK}/manifests/latest", headers={"Accept": ACCEPT_ALL}).status_code == 404
    assert "latest" not in httpx.get(f"{url}/v2/{STACK}/tags/list").json()["tags"]
    # a build does not push a missing tag, but pushes the others
    digest = open_sandbox.call(registry.push_image, STACK, ["latest", "1.0.4"])
    assert open_sandbox.call(registry.resolve, f"{STACK}:1.0.4") == digest
    open_sandbox.set_faults(missing_images=[])
    assert open_sandbox.call(registry.resolve, f"{STACK}:latest") == old


def test_resolve_reference_forms(sandbox: Sandbox):
    registry = sandbox.registry
    postgres = sandbox.call(registry.tags, "postgres")["12"]
    latest = sandbox.call(registry.tags, STACK)["latest"]
    cases = {
        "postgres:12": postgres,
        "library/postgres:12": postgres,
        "docker.io/postgres:12": postgres,
        "index.docker.io/library/postgres:12": postgres,
        f"docker.io/library/postgres@{postgres}": postgres,
        f"postgres:12@{postgres}": postgres,
        STACK: latest,
        f"{STACK}:latest": latest,
        f"{STACK}@{latest}": latest,
        f"{STACK}:nope": None,
        f"{STACK}@sha256:{'0' * 64}": None,
        "postgres@sha256:short": None,
        "Not A Reference": None,
    }
    assert {image: sandbox.call(registry.resolve, image) for image in cases} == cases


# ---------------------------------------------------------------- faults and bad input


def test_injected_faults_look_like_registry_errors(open_sandbox: Sandbox):
    url = f"{open_sandbox.urls['registry']}/v2/{STACK}/manifests/latest"
    open_sandbox.set_faults(registry={"fail_next": 1, "error_status": 503})
    unavailable = httpx.get(url, headers={"Accept": ACCEPT_ALL})
    assert unavailable.status_code == 503
    assert unavailable.json()["errors"][0]["code"] == "UNAVAILABLE"
    open_sandbox.set_faults(registry={"rate_limit_rate": 1.0, "retry_after_seconds": 9})
    limited = httpx.get(url, headers={"Accept": ACCEPT_ALL})
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "9"
    assert limited.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    open_sandbox.set_faults(registry={"rate_limit_rate": 0.0})
    assert httpx.head(url, headers={"Accept": ACCEPT_ALL}).status_code == 200


def test_unknown_routes_and_methods(open_sandbox: Sandbox):
    url = open_sandbox.urls["registry"]
    missing = httpx.get(f"{url}/v2/UPPER/case/manifests/latest")
    assert (missing.status_code, missing.text) == (404, "404 page not found\n")
    wrong = httpx.post(f"{url}/v2/{STACK}/manifests/latest")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "DELETE, GET, HEAD, PUT"
    bad_digest = httpx.get(f"{url}/v2/{STACK}/blobs/sha256:nothex")
    assert (bad_digest.status_code, bad_digest.json()["errors"][0]["code"]) == (400, "DIGEST_INVALID")
