"""The last good tag of an environment whose tags are immutable (production): remembered after each verified
deployment in a Prefect Variable (``fragalysis-last-good-<environment>``), and what a failed roll-out rolls back to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect.variables import Variable

from flows.names import per_environment


def variable_name(environment: str) -> str:
    """``fragalysis-last-good-production`` (Variable names allow lowercase letters, digits, dashes, underscores)."""
    return per_environment("last-good", environment)


@dataclass(frozen=True)
class LastGood:
    """A tag verified on an environment, with the digest its pods ran."""

    tag: str
    digest: str
    run_id: str | None = None
    verified_at: str | None = None

    def describe(self) -> str:
        return f"{self.tag} ({self.digest})"


def recall(environment: str) -> LastGood | None:
    """The environment's last good tag, or None when none was ever verified (or the Variable is malformed)."""
    value: Any = Variable.get(variable_name(environment), default=None)
    if not isinstance(value, dict) or not isinstance(value.get("tag"), str) or not isinstance(value.get("digest"), str):
        return None
    return LastGood(value["tag"], value["digest"], value.get("run_id"), value.get("verified_at"))


def remember(environment: str, good: LastGood) -> None:
    """Keep ``good`` as the environment's last good tag."""
    Variable.set(
        variable_name(environment),
        {"tag": good.tag, "digest": good.digest, "run_id": good.run_id, "verified_at": good.verified_at},
        overwrite=True,
    )
