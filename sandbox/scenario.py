"""The scenario: what the sandbox emulates (repositories, workflows, job templates, StatefulSets), how long
each thing takes (in modelled seconds, before the speed factor) and which faults are switched on.

Scenarios are YAML files; ``fragalysis`` (the real installation of FACTS.md) and ``developers`` (N developer
stacks) ship in ``sandbox/scenarios/``. Every section has defaults, so a scenario file states only what differs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCENARIO_DIR = Path(__file__).parent / "scenarios"


Seconds = Annotated[float, Field(ge=0)]
"""A duration in (modelled, unless said otherwise) seconds: never negative."""
Rate = Annotated[float, Field(ge=0, le=1)]
"""A probability per request, 0 to 1."""
Count = Annotated[int, Field(ge=0)]
"""A number of things: never negative."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- GitHub


class DispatchInput(_Model):
    required: bool = False
    default: str | None = None
    type: Literal["string", "boolean", "choice", "number", "environment"] = "string"
    description: str = ""


class PushTrigger(_Model):
    """``on: push`` filters, written as in the workflow file: GitHub's filter patterns (``*``, ``**``, ``?``, ``+``,
    ``[0-9]``, ``\\`` and a leading ``!``; ``.`` is literal), see ``sandbox/github/patterns.py``. With only
    ``branches`` a tag push starts nothing, and with only ``tags`` a branch push starts nothing."""

    branches: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


class ImageBuild(_Model):
    """The image that a successful run pushes to the registry emulator.

    Tags may use ``{ref_name}`` (the branch or tag that the run is for), ``{ref_slug}`` (its
    ``GITHUB_REF_SLUG``: ``1.0.3`` stays ``1.0.3``) and ``{input.NAME}``. ``tag`` is the image tag of a run for
    a branch (pushed or dispatched); ``tag_when_tagged``, when set, replaces it for a run whose ref is a git tag
    (``refs/tags/...``, pushed or dispatched), as the stack's ``build main`` does: ``latest`` unless the build
    is for a tag, then the tag's slug. ``also_tags`` are pushed with the same digest (e.g. ``stable``).
    """

    name: str
    tag: str = "latest"
    tag_when_tagged: str | None = None
    also_tags: list[str] = Field(default_factory=list)


class Downstream(_Model):
    """A workflow that a successful run dispatches when the scenario's ``trigger_downstream`` is on."""

    repository: str
    workflow: str
    ref: str = "refs/heads/master"
    inputs: dict[str, str] = Field(default_factory=dict)


class AwxLaunch(_Model):
    """An AWX job template that a successful run launches (over AWX's HTTP API) when ``trigger_awx`` is on.

    ``extra_vars`` values may use ``{image_tag}`` (the tag the run pushed), ``{ref_name}`` and ``{ref_slug}``.
    ``when_ref_matches``: a regular expression that the run's ref slug (``{ref_slug}`` of its branch or tag)
    must match in full for this launch, as ``build main`` deploys to production only when its
    ``production_tag`` test ``[[ $GITHUB_REF_SLUG =~ ^[0-9]+\\.[0-9]+\\.[0-9]+$ ]]`` holds; None: every run.
    """

    template: str
    extra_vars: dict[str, str] = Field(default_factory=lambda: {"stack_image_tag": "{image_tag}"})
    wait: bool = True
    when_ref_matches: str | None = None


class Workflow(_Model):
    file: str
    name: str
    push: PushTrigger | None = None
    dispatch_inputs: dict[str, DispatchInput] | None = None
    """``None``: the workflow has no ``workflow_dispatch`` trigger."""
    queued_seconds: Seconds = 10.0
    duration_seconds: Seconds = 240.0
    steps: list[str] = Field(default_factory=lambda: ["Set up job", "Checkout", "Build", "Push", "Complete job"])
    image: ImageBuild | None = None
    downstream: list[Downstream] = Field(default_factory=list)
    awx: list[AwxLaunch] = Field(default_factory=list)
    """Templates that a run launches in its "Trigger AWX" step, all at once (the real workflow's deploy jobs run
    side by side); the step is skipped when none applies to the run's ref."""


class Repository(_Model):
    name: str
    default_branch: str = "master"
    branches: list[str] = Field(default_factory=lambda: ["master"])
    tags: list[str] = Field(default_factory=list)
    workflows: list[Workflow] = Field(default_factory=list)


class Webhook(_Model):
    url: str | None = None
    secret: str | None = None
    events: list[str] = Field(default_factory=lambda: ["push", "workflow_run"])


class GitHubScenario(_Model):
    token: str = "ghp_sandboxTokenForFragalysisCd0000000000"
    rate_limit: Count = 5000
    rate_limit_window_seconds: Seconds = 3600.0
    """Real seconds (not scaled): GitHub's reset is an epoch time."""
    return_run_details: bool = True
    """False: behave like an older GitHub Enterprise that rejects ``return_run_details`` with 400."""
    trigger_downstream: bool = True
    """The repositories' TRIGGER_DOWNSTREAM secret: frontend/backend builds dispatch the stack build."""
    trigger_awx: bool = True
    """The stack repository's TRIGGER_AWX secret: stack builds launch the AWX job template."""
    webhook: Webhook = Field(default_factory=Webhook)
    repositories: list[Repository] = Field(default_factory=list)


# ---------------------------------------------------------------- AWX


class JobTemplate(_Model):
    name: str
    organization: str = "Default"
    playbook: Literal["version-change", "deploy"] = "version-change"
    """``version-change`` re-applies the StatefulSet with a new timestamp and image tag; ``deploy`` (the
    one-time templates) also creates the namespace and StatefulSet when they are absent."""
    ask_variables_on_launch: bool = True
    allow_simultaneous: bool = False
    extra_vars: dict[str, Any] = Field(default_factory=lambda: {"stack_image_tag": "latest"})
    survey_required: list[str] = Field(default_factory=list)
    """Extra vars that must be given at launch (400 ``variables_needed_to_start`` otherwise)."""
    namespace: str = "staging-stack"
    statefulset: str = "stack"
    image: str = "xchem/fragalysis-stack"
    replicas: Count = 2
    image_var: str = "stack_image_tag"
    start_seconds: Seconds = 30.0
    """pending -> running: AWX scheduling and the execution environment starting."""
    timeout_seconds: Seconds = 1800.0
    """The template's job timeout (modelled seconds): the playbook's roll-out wait gives up after it."""


class AwxScenario(_Model):
    base_path: str = "/api/v2/"
    token: str = "awx_sandbox_token_0000000000000000"
    username: str = "admin"
    password: str = "sandbox-password"
    organizations: list[str] = Field(default_factory=lambda: ["Default"])
    templates: list[JobTemplate] = Field(default_factory=list)


# ---------------------------------------------------------------- registry


class RegistryImage(_Model):
    name: str
    tags: list[str] = Field(default_factory=lambda: ["latest"])


class RegistryScenario(_Model):
    auth: Literal["none", "token"] = "token"
    """``token``: Docker Hub's Bearer challenge; anonymous pulls get a token, pushes need a user."""
    users: dict[str, str] = Field(default_factory=lambda: {"sandbox": "sandbox-registry-password"})
    images: list[RegistryImage] = Field(default_factory=list)


# ---------------------------------------------------------------- Kubernetes


class PodTimings(_Model):
    """Modelled seconds for each step of a pod's life."""

    terminate_seconds: Seconds = 10.0
    schedule_seconds: Seconds = 1.0
    pull_seconds: Seconds = 10.0
    start_seconds: Seconds = 2.0
    readiness_delay_seconds: Seconds = 160.0
    crash_seconds: Seconds = 5.0
    """How long a crash-looping container runs before it exits."""


class StatefulSetSpec(_Model):
    name: str = "stack"
    replicas: Count = 2
    image: str = "xchem/fragalysis-stack:latest"
    container: str = "stack"
    labels: dict[str, str] = Field(default_factory=lambda: {"name": "stack"})
    pod_management_policy: Literal["OrderedReady", "Parallel"] = "OrderedReady"
    partition: Count = 0


class Namespace(_Model):
    """A namespace and the StatefulSets running in it at the start, every pod Ready. A namespace without a
    ``stack`` StatefulSet (``statefulsets: []``, or only ``database``) is where a first deployment goes: a
    ``deploy`` template creates the StatefulSet; a template whose namespace is in no scenario namespace creates
    the namespace too."""

    name: str
    statefulsets: list[StatefulSetSpec] = Field(default_factory=list)


class KubernetesScenario(_Model):
    token: str = "k8s-sandbox-token-000000000000"
    version: str = "v1.31.0"
    namespaces: list[Namespace] = Field(default_factory=list)
    pod_timings: PodTimings = Field(default_factory=PodTimings)
    history_size: Count = 1000
    """Watch events kept; a watch from a resourceVersion older than these gets 410 Gone."""
    anonymous_auth: bool = False
    """Requests without credentials are allowed (an apiserver with anonymous auth bound to full access, as
    behind ``kubectl proxy``). Off by default, as on a real cluster: the emulator serves HTTPS, so kubectl sends
    the kubeconfig's token, and a request without one gets 401 (``/version``, ``/healthz`` and the other public
    paths answer anyone). A wrong token gets 401 either way."""


# ---------------------------------------------------------------- faults


class HttpFaults(_Model):
    """Faults on one emulator's HTTP layer. Rates are probabilities per request (seeded)."""

    error_rate: Rate = 0.0
    error_status: Annotated[int, Field(ge=400, le=599)] = 503
    rate_limit_rate: Rate = 0.0
    retry_after_seconds: Annotated[int, Field(ge=0)] = 1
    drop_rate: Rate = 0.0
    lose_answer_rate: Rate = 0.0
    """The request is served (a launch creates its job) but the connection drops before the answer."""
    slow_rate: Rate = 0.0
    slow_seconds: Seconds = 2.0
    """Real seconds (not scaled)."""
    fail_next: Count = 0
    """The next N requests (other than control requests) get ``error_status``; counts down."""
    paths: str | None = None
    """A regular expression: only matching paths get faults (all when unset)."""
    user_agents: str | None = None
    """A regular expression searched in the request's ``User-Agent``: only the clients it matches get faults
    (every client when unset or empty). Our product sends ``fragalysis-cd/...``; the emulated services' own
    traffic is ``awx-sandbox-ansible/kubernetes.core`` (the AWX playbook's Kubernetes requests) and
    ``sandbox-github-actions`` (a workflow's AWX trigger). ``^fragalysis-cd/`` tests our clients and spares the
    playbook; ``^awx-sandbox-ansible/`` makes a real Ansible k8s task fail on purpose."""

    @field_validator("paths", "user_agents")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"not a regular expression: {pattern!r} ({error})") from None
        return pattern


class BuildFault(_Model):
    repository: str
    workflow: str
    step: str = "Build"
    count: Count | None = None
    """How many runs fail (None: all)."""


class AwxJobFault(_Model):
    """Jobs of the template end badly: ``failed`` (the playbook fails), ``error`` (AWX's own error, with a
    traceback), ``canceled`` (someone cancels the job in AWX while it runs: not us, so a follower must say so),
    ``pending`` (never assigned by the task manager: stays pending until canceled)."""

    template: str
    outcome: Literal["failed", "error", "canceled", "pending"] = "failed"
    count: Count | None = None


class CrashLoopFault(_Model):
    """Pods of the StatefulSet start, crash after ``crash_seconds`` and restart with a growing back-off
    (CrashLoopBackOff), never Ready. Read when each container starts, so it can be switched at run time."""

    namespace: str
    statefulset: str = "stack"
    only_new_revision: bool = True
    """Only pods created at a revision other than the StatefulSet's ``currentRevision`` crash (a roll-out's
    new pods)."""
    image: str | None = None
    """Only pods whose container runs this image reference crash (``xchem/fragalysis-stack:1.0.4``; compared
    after Docker's defaults, so ``docker.io/xchem/fragalysis-stack:1.0.4`` is the same): a bad release
    crash-loops while a rollback to another tag comes up. None: any image."""
    error: str | None = None
    """The last line the crashing container writes to its log before it exits (the error ending its Python
    traceback, e.g. ``ModuleNotFoundError: No module named 'viewer.squonk2'``). None: a default that says why."""


class UnschedulableFault(_Model):
    """Pods of the StatefulSet do not fit on the node: the scheduler reports "Insufficient <resource>" and keeps
    them Pending (as when the node's capacity is taken by others, or a release asks for more than is left). Read
    each time a pod is scheduled, so it can be switched at run time."""

    namespace: str
    statefulset: str = "stack"
    only_new_revision: bool = True
    """Only pods created at a revision other than the StatefulSet's ``currentRevision`` (a roll-out's new pods)."""
    resource: Literal["cpu", "memory"] = "cpu"


class Faults(_Model):
    github: HttpFaults = Field(default_factory=HttpFaults)
    awx: HttpFaults = Field(default_factory=HttpFaults)
    registry: HttpFaults = Field(default_factory=HttpFaults)
    kubernetes: HttpFaults = Field(default_factory=HttpFaults)
    failing_builds: list[BuildFault] = Field(default_factory=list)
    awx_jobs: list[AwxJobFault] = Field(default_factory=list)
    crashloop: list[CrashLoopFault] = Field(default_factory=list)
    missing_images: list[str] = Field(default_factory=list)
    """Image references (``name:tag``) that builds do not push and the registry does not serve."""
    unpullable_images: list[str] = Field(default_factory=list)
    """Image references (``name:tag``) that the registry serves to clients (their digest can be read) but the node
    cannot pull: containerd's "pull access denied" (a private repository and no imagePullSecret), ErrImagePull
    then ImagePullBackOff. Read at each pull, so it can be switched at run time."""
    unschedulable: list[UnschedulableFault] = Field(default_factory=list)
    watch_expire_seconds: Seconds | None = None
    """Real seconds after which the Kubernetes emulator ends every watch and compacts its history, so
    that the next watch from an old resourceVersion gets 410 Gone."""


# ---------------------------------------------------------------- the whole


class DeveloperStacks(_Model):
    """Expands to ``count`` developer stacks: namespace ``stack-<user>-default`` with StatefulSet ``stack``
    and template ``User (<user>) Developer Fragalysis Stack (Version Change)``."""

    count: Count = 5
    user_prefix: str = "dev"
    replicas: Count = 1


class Scenario(_Model):
    name: str = "custom"
    description: str = ""
    seed: int = 42
    github: GitHubScenario = Field(default_factory=GitHubScenario)
    awx: AwxScenario = Field(default_factory=AwxScenario)
    registry: RegistryScenario = Field(default_factory=RegistryScenario)
    kubernetes: KubernetesScenario = Field(default_factory=KubernetesScenario)
    faults: Faults = Field(default_factory=Faults)
    developer_stacks: DeveloperStacks | None = None

    @model_validator(mode="after")
    def _expand_developer_stacks(self) -> Scenario:
        spec = self.developer_stacks
        if spec is None:
            return self
        stack_image = "xchem/fragalysis-stack"
        for index in range(spec.count):
            user = f"{spec.user_prefix}{index:02d}"
            namespace = f"stack-{user}-default"
            if any(ns.name == namespace for ns in self.kubernetes.namespaces):
                continue
            self.kubernetes.namespaces.append(
                Namespace(
                    name=namespace,
                    statefulsets=[StatefulSetSpec(replicas=spec.replicas, image=f"{stack_image}:latest")],
                )
            )
            self.awx.templates.append(
                JobTemplate(
                    name=f"User ({user}) Developer Fragalysis Stack (Version Change)",
                    namespace=namespace,
                    replicas=spec.replicas,
                    image=stack_image,
                )
            )
        return self

    def repository(self, name: str) -> Repository | None:
        return next((repo for repo in self.github.repositories if repo.name == name), None)

    def template(self, name: str) -> JobTemplate | None:
        return next((tpl for tpl in self.awx.templates if tpl.name == name), None)


def builtin_scenarios() -> list[str]:
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(name_or_path: str | Path = "fragalysis", **overrides: Any) -> Scenario:
    """Load a built-in scenario by name, or a YAML file by path; ``overrides`` replace top-level sections."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"no scenario {str(name_or_path)!r}: give a YAML file or one of {', '.join(builtin_scenarios())}"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ScenarioError(f"scenario {path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario {path}: the file holds a YAML {type(data).__name__}, not a mapping of sections")
    data.update(overrides)
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        raise ScenarioError(f"scenario {path}: {_problems(error)}") from None


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and each field at fault."""


def _problems(error: ValidationError) -> str:
    """Pydantic's errors one per line, each naming its field by path (``faults.github.error_rate``)."""
    lines = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        value = repr(problem.get("input"))
        shown = value if len(value) <= 60 else value[:57] + "..."
        lines.append(f"{where}: {problem['msg']} (got {shown})")
    count = len(lines)
    return f"{count} problem{'s' if count > 1 else ''}\n  " + "\n  ".join(lines)
