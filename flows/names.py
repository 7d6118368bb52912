"""The names of the Prefect objects kept per environment (Variables, concurrency limits): ``fragalysis-<kind>-<env>``,
with the environment lowercased and anything but letters, digits, dashes and underscores turned into dashes (what
Prefect allows in those names)."""

from __future__ import annotations

import re


def per_environment(kind: str, environment: str) -> str:
    """``per_environment("last-good", "Production")`` is ``fragalysis-last-good-production``."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", environment.lower()).strip("-")
    return f"fragalysis-{kind}-{slug}"
