"""The registry emulator (to be built: see issue 2). The in-process interface below is the contract that the
GitHub emulator (builds push images) and the Kubernetes emulator (kubelet pulls resolve tags) rely on."""

from __future__ import annotations

import hashlib

from starlette.routing import BaseRoute

from sandbox.runtime import Emulator


class RegistryEmulator(Emulator):
    name = "registry"

    def routes(self) -> list[BaseRoute]:
        return []

    def push_image(self, name: str, tags: list[str]) -> str:
        """Push a new image (new config and layer blobs, so a new manifest digest) under ``tags``.

        ``name`` is normalised as Docker does (``postgres`` -> ``library/postgres``; a ``docker.io/`` prefix is
        dropped). Tags listed in ``faults.missing_images`` are not pushed. Returns the manifest digest.
        """
        raise NotImplementedError

    def resolve(self, image: str) -> str | None:
        """The manifest digest (``sha256:...``) that an image reference (``xchem/fragalysis-stack:latest``,
        ``postgres:12``, ``docker.io/library/postgres@sha256:...``) resolves to now, or None when the tag is
        missing (or listed in ``faults.missing_images``)."""
        return "sha256:" + hashlib.sha256(image.encode()).hexdigest()
