"""What the GitHub emulator remembers: repositories with their branches, tags and commits, workflows and runs.

Plain dataclasses, changed only on the sandbox's loop. JSON views of them live in ``views.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sandbox.scenario import GitHubScenario, Repository, Workflow

WORKFLOW_ID_BASE = 51_000_000
"""Workflow ids are assigned in scenario order from here, so that they are stable between starts."""
RUN_ID_BASE = 12_000_000_000
JOB_ID_BASE = 34_000_000_000
REPOSITORY_ID_BASE = 200_000_000
RUNNER_ID_BASE = 1_000_000_000
OWNER_ID_BASE = 1_100_000
"""Repository owners (organisations) get ids from here, in scenario order."""

ACTOR = {"login": "fragalysis-sandbox", "id": 4_242_424, "type": "User"}
"""The user behind the scenario's token (the actor of dispatched runs and the pusher of commits)."""
AUTHOR = {"name": "Sandbox Developer", "email": "developer@sandbox.invalid"}

STATUSES = ("requested", "in_progress", "completed", "queued", "pending", "waiting")
CONCLUSIONS = (
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "skipped",
    "stale",
    "success",
    "timed_out",
    "startup_failure",
)


@dataclass
class Commit:
    sha: str
    message: str
    date: datetime
    parents: list[str] = field(default_factory=list)
    author: dict[str, str] = field(default_factory=lambda: dict(AUTHOR))


@dataclass
class WorkflowState:
    id: int
    repository: str
    spec: Workflow
    created_at: datetime
    run_numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def path(self) -> str:
        return f".github/workflows/{self.spec.file}"


@dataclass
class Step:
    name: str
    number: int
    status: str = "queued"
    conclusion: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass
class Job:
    id: int
    run_id: int
    name: str
    created_at: datetime
    steps: list[Step]
    status: str = "queued"
    conclusion: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    runner_id: int | None = None
    """The GitHub-hosted runner that picked the job up (None while queued)."""

    def take_runner(self) -> None:
        self.runner_id = RUNNER_ID_BASE + self.id - JOB_ID_BASE


@dataclass
class Run:
    """A workflow run. ``image_digest``/``image_tags``/``awx_jobs``/``error`` are private (for tests).

    ``ref`` is the full ref (``refs/heads/master``, ``refs/tags/1.0.3``); ``head_branch`` its branch or tag name."""

    id: int
    repository: str
    workflow: WorkflowState
    event: str
    head_branch: str
    head_sha: str
    ref: str
    inputs: dict[str, str]
    display_title: str
    run_number: int
    created_at: datetime
    updated_at: datetime
    run_started_at: datetime
    jobs: list[Job]
    status: str = "queued"
    conclusion: str | None = None
    run_attempt: int = 1
    actor: dict[str, Any] = field(default_factory=lambda: dict(ACTOR))
    image_digest: str | None = None
    image_tags: list[str] = field(default_factory=list)
    awx_jobs: dict[str, int] = field(default_factory=dict)
    """AWX job ids by template name, for the launches the run made."""
    downstream_runs: list[int] = field(default_factory=list)
    error: str | None = None
    cancel_requested: bool = False
    task: asyncio.Task[Any] | None = field(default=None, repr=False)

    @property
    def ref_name(self) -> str:
        return self.head_branch

    @property
    def is_tag(self) -> bool:
        """Whether the run is for a git tag (pushed, or dispatched on ``refs/tags/...``)."""
        return self.ref.startswith("refs/tags/")


@dataclass
class RepoState:
    id: int
    full_name: str
    spec: Repository
    created_at: datetime
    owner_id: int
    branches: dict[str, str] = field(default_factory=dict)
    """Branch name -> head sha."""
    tags: dict[str, str] = field(default_factory=dict)
    """Tag name -> sha, in creation order."""
    commits: dict[str, Commit] = field(default_factory=dict)
    workflows: list[WorkflowState] = field(default_factory=list)

    @property
    def default_branch(self) -> str:
        return self.spec.default_branch

    @property
    def owner(self) -> str:
        return self.full_name.split("/")[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/")[1]

    @property
    def pushed_at(self) -> datetime:
        """When a commit last arrived (the newest commit date)."""
        return max((commit.date for commit in self.commits.values()), default=self.created_at)

    def workflow(self, key: str) -> WorkflowState | None:
        """A workflow by numeric id or by file name (both are accepted wherever GitHub takes ``workflow_id``)."""
        for workflow in self.workflows:
            if key == str(workflow.id) or key in (workflow.spec.file, workflow.path):
                return workflow
        return None

    def commit(self, ref: str) -> Commit | None:
        """A commit by full or abbreviated sha (at least 4 characters), branch or tag name."""
        for name in (ref.removeprefix("refs/heads/"), ref.removeprefix("refs/tags/")):
            sha = self.branches.get(name) or self.tags.get(name)
            if sha:
                return self.commits[sha]
        lowered = ref.lower()
        if lowered in self.commits:
            return self.commits[lowered]
        if len(lowered) >= 4:
            matches = [c for sha, c in self.commits.items() if sha.startswith(lowered)]
            if len(matches) == 1:
                return matches[0]
        return None


def fake_sha(*parts: object) -> str:
    """A 40-hex commit sha derived from ``parts`` (deterministic, so initial state is stable)."""
    return hashlib.sha1("\0".join(str(p) for p in parts).encode()).hexdigest()


class GitHubState:
    """Repositories (keyed case-insensitively, as GitHub matches owner/name) and every run."""

    def __init__(self, scenario: GitHubScenario, now: datetime) -> None:
        self.repositories: dict[str, RepoState] = {}
        self.runs: dict[int, Run] = {}
        self._run_ids = itertools.count(RUN_ID_BASE + 1)
        self._job_ids = itertools.count(JOB_ID_BASE + 1)
        self._push_counter = itertools.count(1)
        workflow_ids = itertools.count(WORKFLOW_ID_BASE + 1)
        initial = now - timedelta(days=1)
        owner_ids: dict[str, int] = {}
        for index, spec in enumerate(scenario.repositories):
            owner = spec.name.split("/")[0].lower()
            repo = RepoState(
                id=REPOSITORY_ID_BASE + index + 1,
                full_name=spec.name,
                spec=spec,
                created_at=initial,
                owner_id=owner_ids.setdefault(owner, OWNER_ID_BASE + len(owner_ids) + 1),
            )
            refs = [("branch", name) for name in spec.branches] + [("tag", name) for name in spec.tags]
            if spec.default_branch not in spec.branches:
                refs.insert(0, ("branch", spec.default_branch))
            for kind, name in refs:
                sha = fake_sha(spec.name, kind, name)
                repo.commits[sha] = Commit(sha=sha, message=f"Initial commit of {name}", date=initial)
                (repo.branches if kind == "branch" else repo.tags)[name] = sha
            repo.workflows = [
                WorkflowState(id=next(workflow_ids), repository=spec.name, spec=workflow, created_at=initial)
                for workflow in spec.workflows
            ]
            self.repositories[spec.name.lower()] = repo

    def repository(self, owner: str, name: str | None = None) -> RepoState | None:
        full = owner if name is None else f"{owner}/{name}"
        return self.repositories.get(full.lower())

    def next_run_id(self) -> int:
        return next(self._run_ids)

    def next_job_id(self) -> int:
        return next(self._job_ids)

    def new_sha(self, repository: str, ref: str, now: datetime) -> str:
        return fake_sha(repository, ref, next(self._push_counter), now.isoformat())
