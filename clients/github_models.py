"""The typed values of the GitHub client: workflow runs, their jobs and steps, commits and tags.

Field meanings follow FACTS.md "GitHub REST API (Actions)".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from clients.timestamps import parse_time, seconds_between


class RunStatus(StrEnum):
    """A workflow run's (or job's, or step's) ``status``."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    WAITING = "waiting"
    REQUESTED = "requested"
    PENDING = "pending"

    @property
    def finished(self) -> bool:
        """True when the run will not change any more (its ``conclusion`` is set)."""
        return self is RunStatus.COMPLETED


class RunConclusion(StrEnum):
    """A completed run's ``conclusion``."""

    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"
    ACTION_REQUIRED = "action_required"
    NEUTRAL = "neutral"
    STALE = "stale"
    STARTUP_FAILURE = "startup_failure"

    @property
    def succeeded(self) -> bool:
        """Only ``success`` delivers an image."""
        return self is RunConclusion.SUCCESS

    @property
    def failed(self) -> bool:
        """The conclusions that mark a failing job or step (not ``skipped``/``neutral``)."""
        return self in (
            RunConclusion.FAILURE,
            RunConclusion.CANCELLED,
            RunConclusion.TIMED_OUT,
            RunConclusion.ACTION_REQUIRED,
            RunConclusion.STARTUP_FAILURE,
            RunConclusion.STALE,
        )


def _conclusion(value: object) -> RunConclusion | None:
    return RunConclusion(value) if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Workflow:
    """A repository's workflow (``GET /repos/{o}/{r}/actions/workflows``)."""

    id: int
    name: str
    path: str
    state: str
    repository: str

    @property
    def file(self) -> str:
        """The file name (``build-main.yaml``), which the API accepts in place of the id."""
        return self.path.rsplit("/", 1)[-1]

    @classmethod
    def from_api(cls, data: Mapping[str, Any], repository: str) -> Workflow:
        return cls(
            id=int(data["id"]),
            name=str(data.get("name") or ""),
            path=str(data.get("path") or ""),
            state=str(data.get("state") or ""),
            repository=repository,
        )


@dataclass(frozen=True)
class WorkflowRun:
    """One workflow run, as GitHub reported it at one moment.

    Attributes:
        id: the run id.
        repository: ``owner/name``.
        workflow_id: its workflow's id.
        name: the workflow's name.
        head_sha: the commit it builds.
        head_branch: the branch (or tag) it runs on.
        event: what started it (``push``, ``workflow_dispatch``, ...).
        status: its status.
        conclusion: its conclusion, None until completed.
        created_at: when it was created.
        run_started_at: when its current attempt started.
        updated_at: its last change.
        html_url: its page.
        url: its API URL.
        run_attempt: its attempt (re-runs count up).
        run_number: its number in the workflow.
    """

    id: int
    repository: str
    workflow_id: int | None
    name: str
    head_sha: str
    head_branch: str | None
    event: str
    status: RunStatus
    conclusion: RunConclusion | None
    created_at: datetime | None
    run_started_at: datetime | None
    updated_at: datetime | None
    html_url: str
    url: str
    run_attempt: int = 1
    run_number: int = 0

    @classmethod
    def from_api(cls, data: Mapping[str, Any], repository: str) -> WorkflowRun:
        repo = (data.get("repository") or {}).get("full_name") or repository
        return cls(
            id=int(data["id"]),
            repository=str(repo),
            workflow_id=int(data["workflow_id"]) if data.get("workflow_id") is not None else None,
            name=str(data.get("name") or ""),
            head_sha=str(data.get("head_sha") or ""),
            head_branch=data.get("head_branch"),
            event=str(data.get("event") or ""),
            status=RunStatus(data["status"]),
            conclusion=_conclusion(data.get("conclusion")),
            created_at=parse_time(data.get("created_at")),
            run_started_at=parse_time(data.get("run_started_at")),
            updated_at=parse_time(data.get("updated_at")),
            html_url=str(data.get("html_url") or ""),
            url=str(data.get("url") or ""),
            run_attempt=int(data.get("run_attempt") or 1),
            run_number=int(data.get("run_number") or 0),
        )

    def describe(self) -> str:
        """``build main #12 (run 1234) of xchem/fragalysis-stack at abc1234``, for messages."""
        return (
            f"{self.name or 'workflow'} #{self.run_number} (run {self.id}) of {self.repository} at {self.head_sha[:7]}"
        )


@dataclass(frozen=True)
class Step:
    """One step of a job, with its timing."""

    name: str
    number: int
    status: RunStatus
    conclusion: RunConclusion | None
    started_at: datetime | None
    completed_at: datetime | None

    @property
    def seconds(self) -> float | None:
        """How long it ran, when it has finished."""
        return seconds_between(self.started_at, self.completed_at)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Step:
        return cls(
            name=str(data.get("name") or ""),
            number=int(data.get("number") or 0),
            status=RunStatus(data["status"]),
            conclusion=_conclusion(data.get("conclusion")),
            started_at=parse_time(data.get("started_at")),
            completed_at=parse_time(data.get("completed_at")),
        )


@dataclass(frozen=True)
class RunJob:
    """One job of a workflow run, with its steps."""

    id: int
    name: str
    status: RunStatus
    conclusion: RunConclusion | None
    started_at: datetime | None
    completed_at: datetime | None
    html_url: str
    steps: list[Step] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        """How long it ran, when it has finished."""
        return seconds_between(self.started_at, self.completed_at)

    @property
    def failing_step(self) -> Step | None:
        """The first step whose conclusion is a failure."""
        return next((s for s in self.steps if s.conclusion is not None and s.conclusion.failed), None)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> RunJob:
        return cls(
            id=int(data["id"]),
            name=str(data.get("name") or ""),
            status=RunStatus(data["status"]),
            conclusion=_conclusion(data.get("conclusion")),
            started_at=parse_time(data.get("started_at")),
            completed_at=parse_time(data.get("completed_at")),
            html_url=str(data.get("html_url") or ""),
            steps=[Step.from_api(step) for step in data.get("steps") or []],
        )


@dataclass(frozen=True)
class Tag:
    """A tag and the commit it points at."""

    name: str
    sha: str


@dataclass(frozen=True)
class BranchHead:
    """A branch's head as a conditional read found it: ``sha`` is None when GitHub answered 304 (unchanged since
    the read whose ``ETag`` was sent); ``etag`` is what to send next time."""

    sha: str | None
    etag: str | None

    @property
    def changed(self) -> bool:
        return self.sha is not None


@dataclass(frozen=True)
class PageMark:
    """What a conditional read of one page of a list remembers: its ``ETag`` and how many items it held."""

    etag: str | None
    count: int


@dataclass(frozen=True)
class TagPages:
    """The tags on the pages of a conditional tag listing that changed (none when every page answered 304), and the
    pages' marks to send next time."""

    tags: list[Tag]
    pages: list[PageMark]
    changed: bool


@dataclass(frozen=True)
class Commit:
    """A commit: its sha, its committer timestamp and its message."""

    sha: str
    timestamp: datetime | None
    message: str
    html_url: str = ""

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Commit:
        inner = data.get("commit") or {}
        committer = inner.get("committer") or {}
        author = inner.get("author") or {}
        return cls(
            sha=str(data["sha"]),
            timestamp=parse_time(committer.get("date") or author.get("date")),
            message=str(inner.get("message") or ""),
            html_url=str(data.get("html_url") or ""),
        )
