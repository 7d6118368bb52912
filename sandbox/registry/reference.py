"""Image names, tags, digests and media types as the registry and Docker understand them.

The grammar follows distribution's ``reference`` package (the Registry HTTP API v2 route patterns): a repository
name is lower-case path components separated by ``/``; a tag is ``[\\w][\\w.-]{0,127}``; a digest is
``algorithm:hex``. Docker normalises short names: ``postgres`` means ``docker.io/library/postgres``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# distribution/reference: path-component and the separators allowed inside one. distribution writes the dash
# separator as ``[-]*``; Go's RE2 is linear, but Python's backtracking engine explodes on that nested empty
# repetition (a long upload UUID took minutes), so the same language is written with ``-+``.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME = rf"{_COMPONENT}(?:/{_COMPONENT})*"
TAG = r"[\w][\w.-]{0,127}"
# opencontainers/go-digest's DigestRegexp: what the router accepts before the digest is parsed
DIGEST_SHAPE = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"

NAME_RE = re.compile(NAME)
TAG_RE = re.compile(TAG)
DIGEST_SHAPE_RE = re.compile(DIGEST_SHAPE)
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_TYPES = (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX)
SCHEMA1_TYPES = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json",
    "",
)

DOCKER_HOSTS = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")


def sha256_digest(data: bytes) -> str:
    """The OCI digest (``sha256:<hex>``) of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_valid_digest(digest: str) -> bool:
    """Whether ``digest`` parses as a digest with an algorithm this registry can verify."""
    algorithm, _, hexpart = digest.partition(":")
    length = _HEX_LENGTHS.get(algorithm)
    return length is not None and len(hexpart) == length and re.fullmatch(r"[a-f0-9]+", hexpart) is not None


def digest_of(algorithm: str, data: bytes) -> str:
    """The digest of ``data`` with the digest's algorithm (sha256 or sha512)."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def normalize_name(name: str) -> str:
    """A repository name as Docker means it: ``postgres`` -> ``library/postgres``; Docker Hub hosts dropped."""
    for host in DOCKER_HOSTS:
        if name.startswith(host):
            name = name[len(host) :]
            break
    if "/" not in name:
        name = f"library/{name}"
    return name


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference: ``name`` normalised; ``tag`` defaults to ``latest`` unless a digest is given."""

    name: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag}"


def parse_image(image: str) -> ImageReference:
    """Parse ``name``, ``name:tag``, ``name@sha256:...`` (with optional Docker Hub host) like Docker does.

    Raises:
        ValueError: when the reference is not a valid image reference.
    """
    rest, _, digest = image.partition("@")
    tag: str | None = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, _, tag = rest.rpartition(":")
    name = normalize_name(rest)
    if not NAME_RE.fullmatch(name) or (tag is not None and not TAG_RE.fullmatch(tag)):
        raise ValueError(f"invalid image reference: {image!r}")
    if digest:
        if not is_valid_digest(digest):
            raise ValueError(f"invalid digest in image reference: {image!r}")
        return ImageReference(name, tag, digest)
    return ImageReference(name, tag or "latest", None)


def accepted_types(accept_headers: list[str]) -> set[str]:
    """The media types a client accepts: every ``Accept`` header, split on commas, parameters dropped.

    distribution 2.8 ignores q-values and wildcards: ``*/*`` does not accept any manifest type.
    """
    types: set[str] = set()
    for header in accept_headers:
        for part in header.split(","):
            media_type = part.split(";", 1)[0].strip().lower()
            if media_type:
                types.add(media_type)
    return types
