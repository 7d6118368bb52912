"""What each stage task returns: one typed result holding its value and the timings it measured.

The flow passes these results themselves to the next stages, so that Prefect links the task runs and the run graph
draws the chain (source build -> stack build -> image -> AWX job || roll-out watch -> verify). Prefect links a
result to a downstream task by object identity, one level into the result's fields (FACTS.md): pass the result, not
a value taken out of it, where the link is meant, and never an object (such as the ``StackTarget``) whose fields can
be the very objects a result holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from clients.awx import Job
from clients.github_models import WorkflowRun
from clients.rollout_events import RolloutReport
from flows.timing import StageTiming


class StageResult(Protocol):
    """What every stage's result has: the timing rows it measured."""

    @property
    def timings(self) -> list[StageTiming]: ...


@dataclass(frozen=True)
class BuildResult:
    """A GitHub Actions build followed to success (the source build, or the stack build)."""

    run: WorkflowRun
    timing: StageTiming

    @property
    def timings(self) -> list[StageTiming]:
        return [self.timing]


@dataclass(frozen=True)
class ImageCheck:
    """The stack image's digest in the registry, and the digests the pods ran before the deployment."""

    image: str
    """The reference read, e.g. ``xchem/fragalysis-stack:latest``."""
    tag: str
    """Its tag, which the AWX job is launched with."""
    digest: str
    running_before: tuple[str, ...]
    timing: StageTiming

    @property
    def is_new(self) -> bool:
        return self.digest not in self.running_before

    @property
    def timings(self) -> list[StageTiming]:
        return [self.timing]


@dataclass(frozen=True)
class JobResult:
    """The AWX job that redeployed, followed to its end: "AWX job start" and "AWX job" rows."""

    job: Job
    timings: list[StageTiming]


@dataclass(frozen=True)
class RolloutResult:
    """The StatefulSet roll-out, pod by pod: one row per replaced pod."""

    report: RolloutReport
    timings: list[StageTiming]


@dataclass(frozen=True)
class Verification:
    """Every pod updated, ready and running the image's digest."""

    pods: int
    timing: StageTiming

    @property
    def timings(self) -> list[StageTiming]:
        return [self.timing]
