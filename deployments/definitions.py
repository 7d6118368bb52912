"""The deployments of ``prefect.yaml`` as ``RunnerDeployment``s, so that ``serve`` runs the very deployments that
``prefect --no-prompt deploy --all`` creates: prefect.yaml is the one place where a deployment is defined.

Each entry keeps its name, entrypoint, parameters, tags, description, concurrency limit, schedules and triggers
(``DeploymentEventTrigger``s, which ``serve`` turns into automations as ``prefect deploy`` does). The work pool is
left out: a served deployment runs in the serving process's runner, not in a pool's worker. Entrypoints are relative
to the repository root (``ROOT``), as in prefect.yaml; serve them from there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import yaml
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentTriggerTypes
from pydantic import TypeAdapter

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "prefect.yaml"

# what an entry of prefect.yaml may say; anything else is refused rather than silently left out of `serve`
KNOWN_KEYS = frozenset(
    {
        "name",
        "description",
        "entrypoint",
        "work_pool",
        "parameters",
        "tags",
        "triggers",
        "schedules",
        "concurrency_limit",
        "version",
        "paused",
        "enforce_parameter_schema",
    }
)

_TRIGGER = TypeAdapter(DeploymentTriggerTypes)


class DefinitionError(ValueError):
    """An entry of prefect.yaml that ``serve`` cannot build as ``prefect deploy`` would."""


def read_definitions(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The ``deployments:`` entries of prefect.yaml, as written."""
    document = yaml.safe_load(path.read_text()) or {}
    entries = document.get("deployments") or []
    for entry in entries:
        unknown = set(entry) - KNOWN_KEYS
        if unknown:
            raise DefinitionError(f"{path}: deployment {entry.get('name')!r} has keys serve does not read: {unknown}")
    return cast(list[dict[str, Any]], entries)


def definition(name: str, path: Path = PREFECT_YAML) -> dict[str, Any]:
    """The entry named ``name``."""
    for entry in read_definitions(path):
        if entry["name"] == name:
            return entry
    raise DefinitionError(f"{path} defines no deployment named {name!r}")


def triggers(entry: Mapping[str, Any]) -> list[DeploymentTriggerTypes]:
    """The entry's triggers, named as ``prefect deploy`` names them (``<deployment>__automation_<i>``)."""
    built = []
    for i, spec in enumerate(entry.get("triggers") or [], start=1):
        built.append(_TRIGGER.validate_python({"name": f"{entry['name']}__automation_{i}", **spec}))
    return built


def schedules(entry: Mapping[str, Any]) -> list[DeploymentScheduleCreate] | None:
    """The entry's schedules, read by the very function ``prefect deploy`` uses (interval, cron or rrule)."""
    # a private helper, but the one that defines what a schedule in prefect.yaml means (prefect is pinned to 3.9)
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule

    configs = entry.get("schedules")
    if configs is None:
        return None
    return [DeploymentScheduleCreate(**_schedule_config_to_deployment_schedule(config)) for config in configs]


def concurrency(entry: Mapping[str, Any]) -> int | ConcurrencyLimitConfig | None:
    limit = entry.get("concurrency_limit")
    if not isinstance(limit, Mapping):
        return cast(int | None, limit)
    return ConcurrencyLimitConfig(
        limit=limit["limit"],
        collision_strategy=ConcurrencyLimitStrategy(limit.get("collision_strategy", "ENQUEUE")),
        grace_period_seconds=limit.get("grace_period_seconds"),
    )


def runner_deployment(entry: Mapping[str, Any], **changes: Any) -> RunnerDeployment:
    """A served deployment built from one prefect.yaml entry (loads its flow from the entrypoint).

    ``changes`` override fields (``name``, ``parameters``, ``triggers``...), e.g. a second copy for a test.
    """
    fields: dict[str, Any] = {
        "entrypoint": entry["entrypoint"],
        "name": entry["name"],
        "description": entry.get("description"),
        "parameters": dict(entry.get("parameters") or {}),
        "tags": list(entry.get("tags") or []),
        "triggers": triggers(entry),
        "schedules": schedules(entry),
        "concurrency_limit": concurrency(entry),
        "version": entry.get("version"),
        "paused": entry.get("paused"),
        "enforce_parameter_schema": entry.get("enforce_parameter_schema", True),
    }
    fields.update(changes)
    # entrypoints are relative to the repository root, where the flow is loaded from and later run
    with contextlib.chdir(ROOT):
        return RunnerDeployment.from_entrypoint(**fields)


def served_deployments(path: Path = PREFECT_YAML, names: Sequence[str] | None = None) -> list[RunnerDeployment]:
    """Every deployment of prefect.yaml (or those named), ready for ``serve``."""
    entries = read_definitions(path)
    if names is not None:
        missing = set(names) - {entry["name"] for entry in entries}
        if missing:
            raise DefinitionError(f"{path} defines no deployment named {sorted(missing)}")
        entries = [entry for entry in entries if entry["name"] in names]
    return [runner_deployment(entry) for entry in entries]


def production_deployment(name: str = "production", target: str = "production") -> RunnerDeployment:
    """The ``deploy-to-production/<name>`` deployment of prefect.yaml for the ``StackTarget`` block ``target``.

    A copy under another name (a test's, a demo's) has no triggers: a production push event starts the one
    ``production`` deployment, never its copies too.
    """
    entry = definition("production")
    parameters = {**(entry.get("parameters") or {}), "target": target}
    kept = triggers(entry) if name == entry["name"] else []
    return runner_deployment(entry, name=name, parameters=parameters, triggers=kept)
