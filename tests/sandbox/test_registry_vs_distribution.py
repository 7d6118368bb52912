"""The same Registry HTTP API v2 conversation against Debian's real ``docker-registry`` (distribution 2.8) and
against the registry emulator (auth ``none``): statuses, digests, content types and lengths, Location shapes
and error codes must agree."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from sandbox.scenario import load_scenario
from tests.conftest import SandboxFactory

pytestmark = pytest.mark.docker_registry

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT_ALL = f"{OCI_INDEX}, {OCI_MANIFEST}, {DOCKER_LIST}, {DOCKER_V2}"
ACCEPTS = {
    "all": ACCEPT_ALL,
    "docker": DOCKER_V2,
    "oci": OCI_MANIFEST,
    "oci-index": f"{OCI_INDEX}, {OCI_MANIFEST}",
    "none": None,
    "wildcard": "*/*",
}
COMPARED_HEADERS = (
    "content-type",
    "content-length",
    "docker-content-digest",
    "etag",
    "range",
    "location",
    "docker-upload-uuid",
    "content-range",
    "accept-ranges",
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def emulator(make_sandbox: SandboxFactory) -> str:
    scenario = load_scenario("fragalysis")
    registry = scenario.registry.model_copy(update={"auth": "none", "images": []})
    return make_sandbox(speed=600, registry=registry).urls["registry"]


# ---------------------------------------------------------------- the conversation


@dataclass
class Conversation:
    """Runs requests against one registry and records what is comparable about each answer."""

    client: httpx.Client
    base: str
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def send(self, label: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = path if path.startswith("http") else self.base + path
        response = self.client.request(method, url, **kwargs)
        self.records.append((label, self.observe(response)))
        return response

    def observe(self, response: httpx.Response) -> dict[str, Any]:
        seen: dict[str, Any] = {"status": response.status_code}
        for name in COMPARED_HEADERS:
            if name in response.headers:
                seen[name] = self.normalise(response.headers[name])
        content_type = response.headers.get("content-type", "")
        if response.content and content_type.startswith("application/json"):
            body = response.json()
            if "errors" in body:
                seen["errors"] = [error["code"] for error in body["errors"]]
            elif "tags" in body:
                seen["tags"] = sorted(body["tags"])  # distribution lists tags in directory order
            else:
                seen["body"] = body
        elif response.content:
            seen["body-digest"] = sha256(response.content)
        return seen

    def normalise(self, value: str) -> str:
        value = value.replace(self.base, "<base>")
        value = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", value)
        return re.sub(r"_state=[^&]+", "_state=<state>", value)


def blob_upload(talk: Conversation, label: str, name: str, data: bytes) -> None:
    started = talk.send(f"{label}: start", "POST", f"/v2/{name}/blobs/uploads/")
    talk.send(f"{label}: monolithic PUT", "PUT", started.headers["location"] + "&digest=" + sha256(data), content=data)


def manifest_for(media_type: str, config: bytes, layers: list[bytes]) -> bytes:
    oci = media_type == OCI_MANIFEST
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json"
                if oci
                else "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": sha256(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"
                    if oci
                    else "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": sha256(layer),
                }
                for layer in layers
            ],
        },
        indent=3,
    ).encode()


def index_for(media_type: str, child_type: str, child: bytes) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {
                    "mediaType": child_type,
                    "size": len(child),
                    "digest": sha256(child),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    ).encode()


def converse(talk: Conversation) -> None:
    name = "sandbox/app"
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = b"first layer " * 20
    other_layer = b"second layer"

    talk.send("base", "GET", "/v2/")
    talk.send("unknown repository tags", "GET", f"/v2/{name}/tags/list")
    talk.send("unknown repository manifest", "GET", f"/v2/{name}/manifests/latest", headers={"Accept": ACCEPT_ALL})

    # blobs: distribution 2.8 has no single-POST upload (the body is ignored and a session starts)
    talk.send("POST with digest and body", "POST", f"/v2/{name}/blobs/uploads/?digest={sha256(config)}", content=config)
    talk.send("blob after POST with body", "HEAD", f"/v2/{name}/blobs/{sha256(config)}")
    blob_upload(talk, "config", name, config)

    started = talk.send("chunked: start", "POST", f"/v2/{name}/blobs/uploads/")
    first = talk.send("chunked: patch 1", "PATCH", started.headers["location"], content=layer[:100],
                      headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    second = talk.send("chunked: patch 2", "PATCH", first.headers["location"], content=layer[100:])
    talk.send("chunked: stale location", "PATCH", first.headers["location"], content=b"x")
    status = talk.send("chunked: status", "GET", second.headers["location"])
    talk.send("chunked: wrong digest", "PUT", status.headers["location"] + "&digest=" + sha256(b"other"))
    talk.send("chunked: right digest", "PUT", status.headers["location"] + "&digest=" + sha256(layer))
    talk.send("chunked: after completion", "GET", status.headers["location"])

    started = talk.send("errors: start", "POST", f"/v2/{name}/blobs/uploads/")
    talk.send("errors: PATCH text/plain", "PATCH", started.headers["location"], content=b"x",
              headers={"Content-Type": "text/plain"})  # fmt: skip
    talk.send("errors: PUT without digest", "PUT", started.headers["location"])
    talk.send("errors: PUT bad digest", "PUT", started.headers["location"] + "&digest=sha256:zz")
    talk.send("errors: PUT without state", "PUT", started.headers["location"].split("?")[0] + f"?digest={sha256(b'')}")
    talk.send("errors: DELETE upload", "DELETE", started.headers["location"])
    talk.send("errors: after DELETE", "GET", started.headers["location"])
    talk.send("errors: no slash", "POST", f"/v2/{name}/blobs/uploads", follow_redirects=False)

    for method in ("HEAD", "GET"):
        talk.send(f"{method} blob", method, f"/v2/{name}/blobs/{sha256(layer)}")
        talk.send(f"{method} missing blob", method, f"/v2/{name}/blobs/{sha256(b'missing')}")
        talk.send(f"{method} blob of another repository", method, f"/v2/sandbox/other/blobs/{sha256(layer)}")
        talk.send(f"{method} malformed digest", method, f"/v2/{name}/blobs/sha256:ZZ")
    talk.send("blob range", "GET", f"/v2/{name}/blobs/{sha256(layer)}", headers={"Range": "bytes=0-9"})
    talk.send("mount", "POST", f"/v2/sandbox/other/blobs/uploads/?mount={sha256(config)}&from={name}")
    talk.send("mount of a missing blob", "POST", f"/v2/sandbox/other/blobs/uploads/?mount={sha256(b'x')}&from={name}")
    blob_upload(talk, "second layer", name, other_layer)

    # manifests
    docker = manifest_for(DOCKER_V2, config, [layer])
    oci = manifest_for(OCI_MANIFEST, config, [layer, other_layer])
    put = {"Content-Type": DOCKER_V2}
    talk.send("PUT docker manifest by tag", "PUT", f"/v2/{name}/manifests/v1", content=docker, headers=put)
    talk.send("PUT docker manifest by digest", "PUT", f"/v2/{name}/manifests/{sha256(docker)}", content=docker,
              headers=put)  # fmt: skip
    talk.send("PUT by a digest that does not match", "PUT", f"/v2/{name}/manifests/{sha256(b'no')}", content=docker,
              headers=put)  # fmt: skip
    talk.send("PUT OCI manifest", "PUT", f"/v2/{name}/manifests/oci", content=oci,
              headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
    missing = manifest_for(DOCKER_V2, b"no such config", [layer, b"no such layer"])
    talk.send("PUT with missing blobs", "PUT", f"/v2/{name}/manifests/broken", content=missing, headers=put)
    talk.send("PUT not JSON", "PUT", f"/v2/{name}/manifests/broken", content=b"not json", headers=put)
    talk.send("PUT type mismatch", "PUT", f"/v2/{name}/manifests/broken", content=oci, headers=put)
    talk.send("PUT as application/json", "PUT", f"/v2/{name}/manifests/broken", content=docker,
              headers={"Content-Type": "application/json"})  # fmt: skip
    talk.send("PUT schemaVersion 1", "PUT", f"/v2/{name}/manifests/broken",
              content=docker.replace(b'"schemaVersion": 2', b'"schemaVersion": 1'), headers=put)  # fmt: skip
    talk.send("PUT index as OCI manifest", "PUT", f"/v2/{name}/manifests/broken",
              content=b'{"schemaVersion":2,"manifests":[]}', headers={"Content-Type": OCI_MANIFEST})  # fmt: skip

    oci_index = index_for(OCI_INDEX, OCI_MANIFEST, oci)
    docker_list = index_for(DOCKER_LIST, DOCKER_V2, docker)
    talk.send("PUT OCI index", "PUT", f"/v2/{name}/manifests/index", content=oci_index,
              headers={"Content-Type": OCI_INDEX})  # fmt: skip
    talk.send("PUT manifest list", "PUT", f"/v2/{name}/manifests/list", content=docker_list,
              headers={"Content-Type": DOCKER_LIST})  # fmt: skip
    dangling = index_for(OCI_INDEX, OCI_MANIFEST, b"not pushed")
    talk.send("PUT index of a missing manifest", "PUT", f"/v2/{name}/manifests/dangling", content=dangling,
              headers={"Content-Type": OCI_INDEX})  # fmt: skip

    references = ["v1", sha256(docker), "oci", sha256(oci), "index", sha256(oci_index), "list", sha256(docker_list)]
    for reference in [*references, "no-such-tag", sha256(b"no such manifest")]:
        for accept_name, accept in ACCEPTS.items():
            headers = {"Accept": accept} if accept else {}
            for method in ("HEAD", "GET"):
                talk.send(f"{method} {reference} accept={accept_name}", method, f"/v2/{name}/manifests/{reference}",
                          headers=headers)  # fmt: skip
    talk.send("tags", "GET", f"/v2/{name}/tags/list")
    talk.send("catalog", "GET", "/v2/_catalog")
    talk.send("catalog page", "GET", "/v2/_catalog?n=1")
    etag = f'"{sha256(docker)}"'
    talk.send("manifest If-None-Match", "GET", f"/v2/{name}/manifests/v1",
              headers={"Accept": DOCKER_V2, "If-None-Match": etag})  # fmt: skip
    talk.send("blob If-None-Match", "GET", f"/v2/{name}/blobs/{sha256(layer)}",
              headers={"If-None-Match": f'"{sha256(layer)}"'})  # fmt: skip

    talk.send("DELETE by tag", "DELETE", f"/v2/{name}/manifests/oci")
    talk.send("DELETE by digest", "DELETE", f"/v2/{name}/manifests/{sha256(oci)}")
    talk.send("DELETE again", "DELETE", f"/v2/{name}/manifests/{sha256(oci)}")
    talk.send("deleted manifest", "HEAD", f"/v2/{name}/manifests/oci", headers={"Accept": ACCEPT_ALL})
    talk.send("tags after DELETE", "GET", f"/v2/{name}/tags/list")
    talk.send("DELETE blob", "DELETE", f"/v2/{name}/blobs/{sha256(other_layer)}")
    talk.send("DELETE missing blob", "DELETE", f"/v2/{name}/blobs/{sha256(other_layer)}")

    talk.send("unknown route", "GET", "/v2/Upper/manifests/latest")
    talk.send("wrong method", "POST", f"/v2/{name}/manifests/v1")
    talk.send("no slash", "GET", "/v2", follow_redirects=False)


def run(url: str, script: Callable[[Conversation], None]) -> list[tuple[str, dict[str, Any]]]:
    with httpx.Client(timeout=10) as client:
        talk = Conversation(client, url)
        script(talk)
    return talk.records


def test_same_conversation_same_answers(docker_registry: str, emulator: str):
    real = run(docker_registry, converse)
    emulated = run(emulator, converse)
    assert [label for label, _ in emulated] == [label for label, _ in real]
    differences = [
        f"{label}:\n    distribution {theirs}\n    emulator     {ours}"
        for (label, theirs), (_, ours) in zip(real, emulated, strict=True)
        if theirs != ours
    ]
    assert not differences, "\n".join(differences)
    # the conversation did exercise what matters
    statuses = {label: seen["status"] for label, seen in real}
    assert statuses["PUT docker manifest by tag"] == 201
    assert statuses["chunked: right digest"] == 201
    assert statuses["PUT with missing blobs"] == 400
    assert statuses["GET no-such-tag accept=all"] == 404
