"""``StackTarget``: one environment of the Fragalysis Stack and everything a flow needs to deploy to it."""

from __future__ import annotations

from enum import StrEnum

from prefect.blocks.core import Block
from pydantic import BaseModel, Field, field_validator

from blocks.credentials import AwxServer, GitHubAccount, ImageRegistry, KubernetesCluster

PRODUCTION_TAG = r"^[0-9]+\.[0-9]+\.[0-9]+$"
"""FACTS.md: a production-grade stack tag has three numbers separated by periods (matched whole)."""

NOTIFIABLE = ("succeeded", "failed", "rolled-back", "rejected", "cancelled", "superseded", "overdue")
"""What a target can be notified of: every deployment outcome (``fragalysis.deployment.<outcome>``), and
``overdue`` (a deploy still running past its total budget, from the overdue automation)."""

DEFAULT_NOTIFY_ON = ("failed", "rolled-back", "cancelled", "overdue")


class Mode(StrEnum):
    ORCHESTRATE = "orchestrate"
    """The flow dispatches the stack build and launches the AWX job (repositories' TRIGGER_* secrets off)."""
    OBSERVE = "observe"
    """The repositories' own workflows dispatch and launch; the flow follows and times what they do."""


class Source(StrEnum):
    """The repositories whose commits lead to a staging redeploy (FACTS.md)."""

    FRONTEND = "frontend"
    BACKEND = "backend"
    STACK = "stack"


class SourceRepository(BaseModel):
    """A repository whose commits lead to a redeploy, and the workflow that builds them."""

    repository: str = Field(description="owner/name, e.g. xchem/fragalysis-frontend")
    workflow: str = Field(description="The workflow's file name (or name) that builds a pushed commit")
    branch: str = Field(description="The branch whose commits deploy to this environment")


class Budgets(BaseModel):
    """Seconds each stage may take. FACTS.md: commit -> roll-out start about 8-9 min, about 3 min a pod,
    about 15 min in all. Waits give up at a stage's budget times ``wait_factor``."""

    source_build: float = Field(default=360.0, gt=0, description="The frontend/backend build")
    stack_build: float = Field(default=360.0, gt=0, description="The stack image build")
    image: float = Field(default=60.0, gt=0, description="Reading the new digest from the registry")
    awx_start: float = Field(default=90.0, gt=0, description="AWX job launched -> running")
    awx_job: float = Field(default=480.0, gt=0, description="AWX job running -> finished (includes the roll-out)")
    pod: float = Field(default=180.0, gt=0, description="Each pod: old pod terminating -> new pod Ready")
    verify: float = Field(default=60.0, gt=0, description="Checking the pods' images")
    commit_to_rollout: float = Field(default=540.0, gt=0, description="Commit -> first pod replaced")
    total: float = Field(default=900.0, gt=0, description="Commit -> last pod Ready (the lead time)")
    wait_factor: float = Field(default=2.0, ge=1.0, description="A wait gives up at budget x this factor")

    def scaled(self, divisor: float) -> Budgets:
        """Every budget divided by ``divisor`` (for a time-scaled sandbox); the factor stays."""
        data = {name: value / divisor for name, value in self.model_dump().items() if name != "wait_factor"}
        return Budgets(**data, wait_factor=self.wait_factor)

    def deadline(self, budget: float) -> float:
        """The longest wait for a stage whose budget is ``budget`` seconds: ``budgets.deadline(budgets.pod)``."""
        return budget * self.wait_factor


def _default_sources() -> dict[Source, SourceRepository]:
    return {
        Source.FRONTEND: SourceRepository(
            repository="xchem/fragalysis-frontend", workflow="build-staging.yaml", branch="staging"
        ),
        Source.BACKEND: SourceRepository(
            repository="xchem/fragalysis-backend", workflow="build-staging.yaml", branch="staging"
        ),
        Source.STACK: SourceRepository(
            repository="xchem/fragalysis-stack", workflow="build-main.yaml", branch="master"
        ),
    }


class StackTarget(Block):
    """One environment of the Fragalysis Stack: where it runs, how it is redeployed, and its time budgets."""

    _block_type_name = "Fragalysis Stack Target"
    _description = "An environment of the Fragalysis Stack: AWX template, cluster, StatefulSet, images and budgets."

    environment: str = Field(description="staging, production, or a developer stack's name")
    mode: Mode = Field(default=Mode.ORCHESTRATE, description="orchestrate: we dispatch and launch; observe: we follow")
    github: GitHubAccount = Field(description="The GitHub account that reads and dispatches the builds")
    awx: AwxServer = Field(description="The AWX server holding the job template")
    job_template: str = Field(
        default="Staging Fragalysis Stack (Version Change)", description="The AWX job template that redeploys"
    )
    first_deploy_template: str = Field(
        default="Staging Fragalysis Stack",
        description="The one-time AWX job template that creates the stack (a developer's: 'User (<user>) Developer "
        "Fragalysis Stack')",
    )
    image_tag_var: str = Field(default="stack_image_tag", description="The extra var carrying the image tag")
    cluster: KubernetesCluster = Field(description="The cluster the stack runs on")
    namespace: str = Field(default="staging-stack", description="The stack's namespace")
    statefulset: str = Field(default="stack", description="The stack's StatefulSet")
    registry: ImageRegistry = Field(description="The registry the stack image is pushed to")
    stack_image: str = Field(default="xchem/fragalysis-stack", description="The stack image's name")
    image_tag: str = Field(default="latest", description="The tag this environment runs")
    stack_repository: str = Field(default="xchem/fragalysis-stack", description="The stack's repository")
    stack_workflow: str = Field(default="build-main.yaml", description="The stack build ('build main')")
    stack_ref: str = Field(default="refs/heads/master", description="The ref the stack build is dispatched on")
    stack_inputs: dict[str, str] = Field(
        default_factory=lambda: {
            "be_namespace": "xchem",
            "be_image_tag": "latest",
            "fe_namespace": "xchem",
            "fe_image_tag": "latest",
            "stack_namespace": "xchem",
        },
        description="The stack build's inputs (FACTS.md: all xchem / latest for staging)",
    )
    sources: dict[Source, SourceRepository] = Field(
        default_factory=_default_sources, description="frontend / backend / stack: repository, workflow, branch"
    )
    budgets: Budgets = Field(default_factory=Budgets, description="Seconds per stage; waits stop at budget x factor")
    stuck_grace_seconds: float = Field(
        default=60.0, gt=0, description="A pod stuck (CrashLoopBackOff, ImagePullBackOff, ...) this long fails"
    )
    production: bool = Field(
        default=False,
        description="A production environment: deployed from production-grade tags, with approval and rollback "
        "unless told otherwise; a production run refuses a target that is not, and a staging run one that is",
    )
    tag_pattern: str = Field(
        default=PRODUCTION_TAG, description="The tags that may be deployed here (production), matched whole"
    )
    approval: bool | None = Field(
        default=None, description="Wait for an approval in the Prefect UI before launching AWX (empty: production)"
    )
    approval_timeout_seconds: float = Field(
        default=86400.0, gt=0, description="With no decision this long, the run ends Cancelled, deploying nothing"
    )
    rollback: bool | None = Field(
        default=None,
        description="When the roll-out fails, roll back to the last good tag (empty: production, whose tags are "
        "immutable)",
    )
    notification_block: str | None = Field(
        default=None,
        description="A Prefect notification block as '<block type slug>/<block name>' (e.g. 'slack-webhook/alerts', "
        "'microsoft-teams-webhook/ops', 'custom-webhook/hook'): where this environment's deploys are announced; "
        "empty: no notifications",
    )
    notify_on: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NOTIFY_ON),
        description="What is announced through the notification block: succeeded, failed, rolled-back, rejected, "
        "cancelled, superseded, overdue",
    )
    time_scale: float = Field(
        default=1.0,
        gt=0,
        description="Modelled seconds per real second: 1 for real services; a sandbox at speed N sets N, so that "
        "reports say what their figures mean in the modelled world",
    )

    @field_validator("notification_block")
    @classmethod
    def _is_slug_and_name(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        slug, _, name = value.strip().partition("/")
        if not slug or not name or "/" in name:
            raise ValueError(f"a notification block is named '<block type slug>/<block name>', not {value!r}")
        return f"{slug}/{name}"

    @field_validator("notify_on")
    @classmethod
    def _are_notifiable(cls, value: list[str]) -> list[str]:
        unknown = [item for item in value if item not in NOTIFIABLE]
        if unknown:
            raise ValueError(f"notify_on takes {', '.join(NOTIFIABLE)}; not {', '.join(unknown)}")
        return list(dict.fromkeys(value))

    def notifies(self, what: str) -> bool:
        """Whether ``what`` (an outcome, or ``overdue``) is announced through the notification block."""
        return self.notification_block is not None and what in self.notify_on

    @property
    def image(self) -> str:
        """The stack image reference this environment runs, e.g. xchem/fragalysis-stack:latest."""
        return f"{self.stack_image}:{self.image_tag}"

    @property
    def asks_approval(self) -> bool:
        return self.production if self.approval is None else self.approval

    @property
    def rolls_back(self) -> bool:
        return self.production if self.rollback is None else self.rollback
