"""The typed values of the AWX client: statuses, job templates, jobs and output chunks (FACTS.md "AWX REST API v2")."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import yaml

from clients.timestamps import parse_time


class JobStatus(StrEnum):
    """The status of an AWX job (``GET jobs/<id>/`` -> ``status``)."""

    NEW = "new"
    PENDING = "pending"
    WAITING = "waiting"
    RUNNING = "running"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    ERROR = "error"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        """True when the job will not change any more."""
        return self in _FINISHED

    @property
    def succeeded(self) -> bool:
        """True only for ``successful``: a canceled job is not a success (the old trigger got that wrong)."""
        return self is JobStatus.SUCCESSFUL


_FINISHED = frozenset({JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.ERROR, JobStatus.CANCELED})


@dataclass(frozen=True)
class JobTemplate:
    """An AWX job template.

    Attributes:
        id: the template's id.
        name: its name (unique per organisation only).
        organization: the name of its organisation (``summary_fields.organization.name``), if any.
        url: its API URL.
        ask_variables_on_launch: "Prompt on launch" for variables; without it AWX ignores launch extra_vars.
        allow_simultaneous: without it a second launch stays ``pending`` until the first job finishes.
    """

    id: int
    name: str
    organization: str | None
    url: str
    ask_variables_on_launch: bool = False
    allow_simultaneous: bool = False

    @classmethod
    def from_api(cls, data: Mapping[str, Any], url: str) -> JobTemplate:
        organization = (data.get("summary_fields") or {}).get("organization") or {}
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            organization=organization.get("name"),
            url=url,
            ask_variables_on_launch=bool(data.get("ask_variables_on_launch", False)),
            allow_simultaneous=bool(data.get("allow_simultaneous", False)),
        )


@dataclass(frozen=True)
class Job:
    """An AWX job as the API reported it at one moment.

    Attributes:
        id: the job's id.
        name: its name (the template's name).
        status: its status.
        url: its API URL (``.../jobs/<id>/``).
        ui_url: where a person sees it in the AWX web UI.
        template_id: the job template it was launched from, if any.
        created: when AWX created it (the launch).
        started: when it started running, if it has.
        finished: when it finished, if it has.
        elapsed: seconds it ran (AWX gives a decimal string or number).
        failed: AWX's ``failed`` flag (true for failed, error and canceled).
        job_explanation: AWX's explanation, e.g. "Job terminated due to timeout".
        result_traceback: a traceback for ``error`` jobs, if any.
        event_processing_finished: whether all output events are stored (read output only after this).
            ``None`` when the listing did not say (AWX leaves it out of lists).
        extra_vars: the job's extra variables (parsed; secrets are ``$encrypted$``), or None when unknown.
    """

    id: int
    name: str
    status: JobStatus
    url: str
    ui_url: str
    template_id: int | None = None
    created: datetime | None = None
    started: datetime | None = None
    finished: datetime | None = None
    elapsed: float = 0.0
    failed: bool = False
    job_explanation: str = ""
    result_traceback: str = ""
    event_processing_finished: bool | None = None
    extra_vars: dict[str, Any] | None = field(default=None, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any], *, url: str, ui_url: str) -> Job:
        return cls(
            id=int(data["id"]),
            name=str(data.get("name") or ""),
            status=JobStatus(data["status"]),
            url=url,
            ui_url=ui_url,
            template_id=_int_or_none(data.get("job_template") or data.get("unified_job_template")),
            created=parse_time(data.get("created")),
            started=parse_time(data.get("started")),
            finished=parse_time(data.get("finished")),
            elapsed=float(data.get("elapsed") or 0.0),
            failed=bool(data.get("failed", False)),
            job_explanation=str(data.get("job_explanation") or ""),
            result_traceback=str(data.get("result_traceback") or ""),
            event_processing_finished=data.get("event_processing_finished"),
            extra_vars=parse_vars(data["extra_vars"]) if "extra_vars" in data else None,
        )

    def matches(self, extra_vars: Mapping[str, Any]) -> bool:
        """True when every one of ``extra_vars`` has the same value in this job's variables (compared as text,
        since a variable launched as ``1.0`` may come back as a string)."""
        if self.extra_vars is None:
            return False
        return all(key in self.extra_vars and str(self.extra_vars[key]) == str(v) for key, v in extra_vars.items())


@dataclass(frozen=True)
class OutputChunk:
    """A range of a job's output lines (``stdout/?format=json``).

    Attributes:
        lines: the lines, without line ends.
        start: the first line's index.
        end: the index after the last line (start the next read here).
        absolute_end: how many lines the output had when read.
    """

    lines: list[str]
    start: int
    end: int
    absolute_end: int


def parse_vars(value: object) -> dict[str, Any]:
    """A job's ``extra_vars``: AWX returns them as a JSON (or YAML) string; some servers give an object."""
    if isinstance(value, Mapping):
        return dict(value)
    if not value or not isinstance(value, str):
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return {}
    return dict(parsed) if isinstance(parsed, Mapping) else {}


def _int_or_none(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
