"""The registry's content: blobs (content-addressed), repositories (blob links, manifests, tags), uploads.

As in distribution, blob content is shared but each repository only sees the blobs linked into it (by an
upload, a mount, or the sandbox's own pushes), so ``HEAD /v2/other/blobs/<digest>`` is 404 even when another
repository holds that blob.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox.registry.errors import RegistryError
from sandbox.registry.manifest import ParsedManifest, missing_reference_errors, parse_manifest
from sandbox.registry.reference import sha256_digest


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes
    parsed: ParsedManifest


@dataclass
class Repository:
    blobs: set[str] = field(default_factory=set)
    manifests: dict[str, Manifest] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Upload:
    """A blob upload session (distribution keeps the bytes in ``_uploads/<uuid>``)."""

    uuid: str
    name: str
    started: str
    data: bytearray = field(default_factory=bytearray)


class Store:
    """All registry state. ``hidden(name, tag)`` hides tags (the scenario's ``missing_images``)."""

    def __init__(self, secret: bytes, hidden: Callable[[str, str], bool] | None = None) -> None:
        self._blobs: dict[str, bytes] = {}
        self._repos: dict[str, Repository] = {}
        self.uploads: dict[str, Upload] = {}
        self._secret = secret
        self.hidden: Callable[[str, str], bool] = hidden or (lambda name, tag: False)

    # ------------------------------------------------------------ repositories and blobs

    def repository(self, name: str) -> Repository:
        return self._repos.setdefault(name, Repository())

    def add_blob(self, name: str, data: bytes, digest: str | None = None) -> str:
        """Store ``data`` and link it into repository ``name``."""
        digest = digest or sha256_digest(data)
        self._blobs[digest] = bytes(data)
        self.repository(name).blobs.add(digest)
        return digest

    def has_blob(self, name: str, digest: str) -> bool:
        repo = self._repos.get(name)
        return repo is not None and digest in repo.blobs

    def blob(self, name: str, digest: str) -> bytes | None:
        return self._blobs.get(digest) if self.has_blob(name, digest) else None

    def mount_blob(self, name: str, digest: str, source: str) -> bool:
        """Link a blob of repository ``source`` into ``name`` (cross-repository mount)."""
        if not self.has_blob(source, digest):
            return False
        self.repository(name).blobs.add(digest)
        return True

    def delete_blob(self, name: str, digest: str) -> bool:
        repo = self._repos.get(name)
        if repo is None or digest not in repo.blobs:
            return False
        repo.blobs.discard(digest)
        return True

    # ------------------------------------------------------------ manifests and tags

    def put_manifest(self, name: str, reference: str, content_type: str, body: bytes) -> str:
        """Store a manifest PUT to ``reference`` (a tag or a digest); returns its digest.

        Raises:
            RegistryError: as distribution 2.8 answers an invalid manifest or one with missing references.
        """
        parsed = parse_manifest(content_type, body)
        digest = sha256_digest(body)
        if ":" in reference and reference != digest:
            raise RegistryError.of("DIGEST_INVALID")
        repo = self._repos.get(name) or Repository()
        errors = missing_reference_errors(parsed.blobs, repo.blobs.__contains__)
        errors += missing_reference_errors(parsed.children, repo.manifests.__contains__)
        if errors:
            raise RegistryError(*errors)
        self.store_manifest(name, Manifest(digest, parsed.media_type, bytes(body), parsed))
        if ":" not in reference:
            self.tag(name, reference, digest)
        return digest

    def store_manifest(self, name: str, manifest: Manifest) -> None:
        # distribution links manifests under _manifests only: HEAD .../blobs/<manifest digest> stays 404
        self.repository(name).manifests[manifest.digest] = manifest

    def tag(self, name: str, tag: str, digest: str) -> None:
        self.repository(name).tags[tag] = digest

    def manifest(self, name: str, reference: str) -> Manifest | None:
        """The manifest a tag or digest names (None when unknown or hidden)."""
        repo = self._repos.get(name)
        if repo is None:
            return None
        if ":" in reference:
            return repo.manifests.get(reference)
        if self.hidden(name, reference):
            return None
        digest = repo.tags.get(reference)
        return repo.manifests.get(digest) if digest else None

    def delete_manifest(self, name: str, digest: str) -> bool:
        """Delete a manifest by digest and every tag pointing at it."""
        repo = self._repos.get(name)
        if repo is None or digest not in repo.manifests:
            return False
        del repo.manifests[digest]
        repo.tags = {tag: d for tag, d in repo.tags.items() if d != digest}
        return True

    def tags(self, name: str) -> dict[str, str] | None:
        """Visible tags of a repository (None when the repository has no manifests)."""
        repo = self._repos.get(name)
        if repo is None or not repo.manifests:
            return None
        return {tag: digest for tag, digest in sorted(repo.tags.items()) if not self.hidden(name, tag)}

    def catalog(self) -> list[str]:
        return sorted(name for name, repo in self._repos.items() if repo.blobs or repo.manifests)

    # ------------------------------------------------------------ uploads

    def start_upload(self, name: str, uuid: str, started: str) -> Upload:
        upload = Upload(uuid, name, started)
        self.uploads[uuid] = upload
        return upload

    def upload_state(self, upload: Upload) -> str:
        """The opaque ``_state`` of the upload's Location: distribution's HMAC-signed JSON
        (name, UUID, offset, start), so that a stale Location is refused."""
        payload = json.dumps(
            {"Name": upload.name, "UUID": upload.uuid, "Offset": len(upload.data), "StartedAt": upload.started},
            separators=(",", ":"),
        ).encode()
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac + payload).decode()

    def read_state(self, state: str) -> dict[str, object] | None:
        """The state's fields when its signature holds, else None."""
        try:
            raw = base64.urlsafe_b64decode(state.encode())
        except (ValueError, UnicodeEncodeError):
            return None
        mac, payload = raw[:32], raw[32:]
        if not hmac.compare_digest(mac, hmac.new(self._secret, payload, hashlib.sha256).digest()):
            return None
        try:
            data = json.loads(payload)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None


def new_uuid(bits: int) -> str:
    """A version-4 UUID string from random bits (seeded by the caller)."""
    return str(uuidlib.UUID(int=bits, version=4))
