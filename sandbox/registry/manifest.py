"""Manifest checks on PUT, and the small generated images the sandbox starts with and builds push.

The checks follow distribution 2.8 (checked against Debian's ``docker-registry`` 2.8.2 by
``tests/sandbox/test_registry_vs_distribution.py``): the ``Content-Type`` picks the manifest schema; a body
that does not parse, or whose ``mediaType`` disagrees with that type, is ``MANIFEST_INVALID``; a
``schemaVersion`` other than 2 is a 500 ``UNKNOWN`` (distribution returns its plain verification error);
every referenced blob (config and layers) or child manifest (indexes) must already be in the repository,
otherwise one ``MANIFEST_BLOB_UNKNOWN`` per missing digest.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
from dataclasses import dataclass, field
from typing import Any

from sandbox.registry.errors import NO_DETAIL, RegistryError, error_entry
from sandbox.registry.reference import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    is_valid_digest,
    sha256_digest,
)

INDEX_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)


@dataclass(frozen=True)
class ParsedManifest:
    """What the store needs from a manifest: its type, the blobs and child manifests it references."""

    media_type: str
    blobs: list[str] = field(default_factory=list)
    """Config first, then layers (the order distribution reports missing ones in)."""
    children: list[str] = field(default_factory=list)
    """Manifests an index or manifest list points to."""
    platforms: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    """``(digest, os, architecture)`` of each child, for the linux/amd64 fallback of manifest lists."""


def _invalid() -> RegistryError:
    # distribution wraps Go errors whose exported fields are empty: the detail serialises as {}
    return RegistryError.of("MANIFEST_INVALID", {})


def _descriptor(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid()
    digest = value.get("digest", "")
    if not isinstance(digest, str) or not isinstance(value.get("size", 0), int):
        raise _invalid()
    urls = value.get("urls", [])
    if not isinstance(urls, list):
        raise _invalid()
    return value


def parse_manifest(content_type: str, body: bytes) -> ParsedManifest:
    """Check a manifest as PUT with ``content_type`` (parameters ignored).

    Raises:
        RegistryError: ``MANIFEST_INVALID`` (400) or, for a wrong ``schemaVersion``, ``UNKNOWN`` (500).
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in MANIFEST_TYPES:
        # schema1 types (and no Content-Type) go to distribution's schema1 parser, which rejects these bodies
        raise _invalid()
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise _invalid() from None
    except json.JSONDecodeError as error:
        # distribution passes Go's *json.SyntaxError through: its only exported field is the offset
        raise RegistryError.of("MANIFEST_INVALID", {"Offset": _go_syntax_offset(error)}) from None
    if not isinstance(data, dict):
        raise _invalid()
    declared = data.get("mediaType", "")
    if not isinstance(declared, str):
        raise _invalid()
    if media_type in (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST):
        if declared != media_type:
            raise _invalid()
    elif declared not in ("", media_type):
        raise _invalid()
    version = data.get("schemaVersion", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise _invalid()
    if media_type in INDEX_TYPES:
        return _parse_index(media_type, data, version)
    return _parse_image_manifest(media_type, data, version)


def _go_syntax_offset(error: json.JSONDecodeError) -> int:
    """Where Go's JSON scanner stops: the bytes read up to and including the offending one (Python reports
    where the bad token starts; inside a literal such as ``null``, Go reads on while the prefix matches)."""
    text, pos = error.doc, error.pos
    if pos >= len(text):
        return len(text)
    for literal in ("true", "false", "null"):
        if text[pos] == literal[0]:
            matched = 1
            while pos + matched < len(text) and matched < len(literal) and text[pos + matched] == literal[matched]:
                matched += 1
            return pos + matched + 1
    return pos + 1


def _parse_image_manifest(media_type: str, data: dict[str, Any], version: int) -> ParsedManifest:
    if media_type == OCI_MANIFEST and "manifests" in data:
        raise _invalid()  # distribution 2.8: an index sent as an image manifest
    layers = data.get("layers", [])
    if not isinstance(layers, list):
        raise _invalid()
    config = _descriptor(data.get("config", {}))
    descriptors = [config, *(_descriptor(layer) for layer in layers)]
    if version != 2:
        raise RegistryError.of("UNKNOWN", {})
    blobs = [d.get("digest", "") for d in descriptors if not d.get("urls")]
    return ParsedManifest(media_type, blobs=blobs)


def _parse_index(media_type: str, data: dict[str, Any], version: int) -> ParsedManifest:
    if media_type == OCI_INDEX and ("config" in data or "layers" in data):
        raise _invalid()  # distribution 2.8: an image manifest sent as an index
    manifests = data.get("manifests", [])
    if not isinstance(manifests, list):
        raise _invalid()
    descriptors = [_descriptor(entry) for entry in manifests]
    if version != 2:
        raise RegistryError.of("UNKNOWN", {})
    platforms = []
    for d in descriptors:
        platform = d.get("platform")
        if not isinstance(platform, dict):
            platform = {}
        platforms.append((d.get("digest", ""), platform.get("os"), platform.get("architecture")))
    return ParsedManifest(media_type, children=[d.get("digest", "") for d in descriptors], platforms=platforms)


def missing_reference_errors(digests: list[str], exists: Any) -> list[dict[str, Any]]:
    """``MANIFEST_BLOB_UNKNOWN`` for each digest that ``exists(digest)`` denies.

    An unparsable digest first gets what distribution's blob lookup reports for it: ``DIGEST_INVALID`` when it
    is empty, two ``UNKNOWN`` errors (a 500) when it is malformed.
    """
    entries: list[dict[str, Any]] = []
    for digest in digests:
        if not digest:
            entries.append(error_entry("DIGEST_INVALID", NO_DETAIL))
        elif not is_valid_digest(digest):
            entries += [error_entry("UNKNOWN", NO_DETAIL), error_entry("UNKNOWN", {})]
        elif exists(digest):
            continue
        entries.append(error_entry("MANIFEST_BLOB_UNKNOWN", digest))
    return entries


# ---------------------------------------------------------------- generated images


@dataclass(frozen=True)
class GeneratedImage:
    """A complete small image: config and one gzipped tar layer, and the manifest that ties them."""

    config: bytes
    layer: bytes
    manifest: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)


def _layer(name: str, build: str) -> tuple[bytes, bytes]:
    """A gzipped tar with one file; fixed mtimes so that the same build gives the same bytes."""
    payload = f"image {name}\nbuild {build}\n".encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("etc/sandbox-build")
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    uncompressed = raw.getvalue()
    return uncompressed, gzip.compress(uncompressed, mtime=0)


def generate_image(rng: random.Random, name: str, created: str, *, oci: bool = False) -> GeneratedImage:
    """A new image for ``name``: a build id drawn from ``rng`` makes its config (and so its digest) new."""
    build = f"{rng.getrandbits(64):016x}"
    uncompressed, layer = _layer(name, build)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Labels": {"org.opencontainers.image.title": name, "sandbox.build": build},
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(uncompressed)]},
        "history": [{"created": created, "created_by": f"sandbox build {build}"}],
    }
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
            "size": len(config_bytes),
            "digest": sha256_digest(config_bytes),
        },
        "layers": [
            {"mediaType": OCI_LAYER if oci else DOCKER_LAYER, "size": len(layer), "digest": sha256_digest(layer)}
        ],
    }
    # docker push writes indented JSON with 3 spaces; the digest is of these exact bytes
    manifest_bytes = json.dumps(manifest, indent=3).encode()
    return GeneratedImage(config_bytes, layer, manifest_bytes, media_type)
