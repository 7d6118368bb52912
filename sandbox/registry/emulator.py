"""The registry emulator: the Registry HTTP API v2 (as Debian's distribution 2.8 answers it) behind Docker Hub's
token challenge, with images from the scenario.

The in-process interface is what the GitHub emulator (builds push images) and the Kubernetes emulator (kubelet
pulls resolve tags) use, as a ``sandbox.emulator.ImageStore``; call it on the sandbox's loop (``Sandbox.call``)
from other threads:

- ``push_image(name, tags) -> digest``: a new image under ``tags`` (skipping ``faults.missing_images``).
- ``resolve(image) -> digest | None``: what ``name``, ``name:tag`` or ``name@sha256:...`` resolves to now.
- ``tags(name) -> {tag: digest}``: the tags a client sees (tags/list), with their digests.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sandbox.clock import isoformat
from sandbox.emulator import Emulator, Runtime
from sandbox.registry.api import RegistryApi
from sandbox.registry.auth import TokenService
from sandbox.registry.errors import error_entry, errors_response, not_found_page, plain_response
from sandbox.registry.manifest import generate_image, parse_manifest
from sandbox.registry.reference import normalize_name, parse_image
from sandbox.registry.store import Manifest, Store

# codes distribution would use for these statuses (a 502/504 from a proxy has no registry code of its own)
_FAULT_CODES = {429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
_NUMBERED_TAG = re.compile(r"\d+(?:\.\d+)*")


class RegistryEmulator(Emulator):
    """An OCI registry on loopback. ``scenario.registry.auth``: ``token`` (Docker Hub's Bearer challenge;
    anonymous clients get pull tokens, ``scenario.registry.users`` also push) or ``none`` (no auth at all,
    like Debian's registry with its default configuration)."""

    name = "registry"

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        scenario = runtime.scenario
        # a generator of its own, seeded from the scenario: image content and upload ids are reproducible and
        # do not shift the fault middleware's random sequence
        self.rng = random.Random(f"{scenario.seed}:registry")
        secret = self.rng.getrandbits(256).to_bytes(32, "big")
        self.store = Store(secret, hidden=self._is_missing)
        self.tokens = TokenService(secret, dict(scenario.registry.users), f"{self.url}/token", self.rng.getrandbits)
        self.api = RegistryApi(self)
        self._generated = 0
        self._seed_images()

    @property
    def auth_mode(self) -> str:
        return self.runtime.scenario.registry.auth

    # ------------------------------------------------------------ HTTP

    def routes(self) -> list[BaseRoute]:
        return [
            # every method reaches the handlers, which answer a wrong one as distribution does
            Route("/v2/", self.api.base, methods=_ALL_METHODS),
            Route("/v2", self.api.redirect_base, methods=_ALL_METHODS),
            Route("/v2/{path:path}", self.api.dispatch, methods=_ALL_METHODS),
            Route("/token", self.api.token, methods=["GET", "POST"]),
        ]

    def exception_handlers(self) -> dict[Any, Any]:
        async def not_found(request: Request, exc: HTTPException) -> Response:
            return not_found_page()

        async def not_allowed(request: Request, exc: HTTPException) -> Response:
            return plain_response("Method not allowed\n", 405)

        return {404: not_found, 405: not_allowed}

    def fault_response(self, status: int, message: str, headers: dict[str, str]) -> Response:
        """Injected 5xx/429 in the registry's error shape; 429 keeps its ``Retry-After``."""
        code = _FAULT_CODES.get(status, "UNKNOWN")
        return errors_response([error_entry(code, message)], status, headers)

    # ------------------------------------------------------------ in-process interface

    def push_image(self, name: str, tags: list[str]) -> str:
        """Push a new image (new config and layer blobs, so a new manifest digest) under ``tags``.

        ``name`` is normalised as Docker does (``postgres`` -> ``library/postgres``; a ``docker.io/`` prefix is
        dropped). Tags listed in ``faults.missing_images`` are not pushed (when none is left, nothing is
        stored). Returns the manifest digest.
        """
        repository = normalize_name(name)
        kept = [tag for tag in tags if not self._is_missing(repository, tag)]
        image = generate_image(self.rng, repository, self._created())
        if kept:
            self._store_image(repository, image)
            for tag in kept:
                self.store.tag(repository, tag, image.digest)
        return image.digest

    def resolve(self, image: str) -> str | None:
        """The manifest digest (``sha256:...``) that an image reference (``xchem/fragalysis-stack:latest``,
        ``postgres:12``, ``docker.io/library/postgres@sha256:...``) resolves to now, or None when the tag is
        missing (or listed in ``faults.missing_images``)."""
        try:
            reference = parse_image(image)
        except ValueError:
            return None
        manifest = self.store.manifest(reference.name, reference.digest or reference.tag or "latest")
        return manifest.digest if manifest else None

    def tags(self, name: str) -> dict[str, str]:
        """The visible tags of a repository and their digests (empty when it has none)."""
        return self.store.tags(normalize_name(name)) or {}

    # ------------------------------------------------------------ internals

    def _created(self) -> str:
        """The image's ``created`` time: a fixed start plus a minute per image generated, so that digests
        depend on the seed and the order of pushes only (not on the wall clock)."""
        self._generated += 1
        return isoformat(_EPOCH + timedelta(minutes=self._generated), precise=False) or ""

    def _is_missing(self, name: str, tag: str) -> bool:
        for entry in self.runtime.faults.missing_images:
            try:
                reference = parse_image(entry)
            except ValueError:
                continue
            if reference.digest is None and reference.name == name and reference.tag == tag:
                return True
        return False

    def _store_image(self, repository: str, image: Any) -> None:
        self.store.add_blob(repository, image.config)
        self.store.add_blob(repository, image.layer)
        parsed = parse_manifest(image.media_type, image.manifest)
        self.store.store_manifest(repository, Manifest(image.digest, image.media_type, image.manifest, parsed))

    def _seed_images(self) -> None:
        """Each listed tag gets an image of its own, except ``stable``, which shares the newest numbered tag's
        digest when there is one (a production tag pushes ``:<tag>`` and ``:stable`` together: FACTS.md)."""
        for spec in self.runtime.scenario.registry.images:
            repository = normalize_name(spec.name)
            numbered = [tag for tag in spec.tags if _NUMBERED_TAG.fullmatch(tag)]
            newest = max(numbered, key=lambda tag: tuple(int(part) for part in tag.split(".")), default=None)
            digests: dict[str, str] = {}
            for tag in spec.tags:
                if tag == "stable" and newest is not None:
                    continue
                image = generate_image(self.rng, repository, self._created())
                self._store_image(repository, image)
                digests[tag] = image.digest
            if "stable" in spec.tags and newest is not None:
                digests["stable"] = digests[newest]
            for tag, digest in digests.items():
                self.store.tag(repository, tag, digest)
