"""What a deployment returns and publishes: the report, and the error that names the failing stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flows.timeline import describe, svg_markdown, timeline_svg
from flows.timing import StageTiming, TimingTable


class StageFailed(Exception):
    """A stage failed; the message names the stage, the remote object and its URL.

    ``timings`` holds the rows the stage measured before it failed, so that the table still shows how far it got.
    """

    def __init__(self, stage: str, reason: str, timings: list[StageTiming] | None = None) -> None:
        super().__init__(f"stage '{stage}' failed: {reason}")
        self.stage = stage
        self.reason = reason
        self.timings = timings or []


@dataclass
class DeploymentReport:
    """The outcome of one deployment: what was deployed where, and how long each stage took."""

    environment: str
    source: str
    sha: str | None
    image: str
    digest: str | None = None
    commit_time: datetime | None = None
    succeeded: bool = False
    failed_stage: str | None = None
    error: str | None = None
    table: TimingTable = field(default_factory=TimingTable)
    links: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> StageTiming | None:
        return self.table.find("total (lead time)")

    def summary_markdown(self, *, target_seconds: float, rollout_budget: float, time_scale: float = 1.0) -> str:
        """The run's markdown summary: image and digest, environment, total against the target, the slowest
        stage, on failure which stage failed and why, and the timeline picture. At a time scale other than 1 (a
        sandbox), the figures say what they stand for in the modelled world."""
        outcome = "succeeded" if self.succeeded else "FAILED"
        lines = [f"# {self.environment} deployment {outcome}", ""]
        source = f"{self.source}@{self.sha[:7]}" if self.sha else self.source
        lines.append(f"- **source**: {source}")
        lines.append(f"- **image**: `{self.image}`" + (f" @ `{self.digest}`" if self.digest else ""))
        lines.append(f"- **environment**: {self.environment}")
        total = self.total
        duration = total.duration if total else None
        target = describe(target_seconds, time_scale)
        if duration is not None:
            verdict = "within" if duration <= target_seconds else "OVER"
            lines.append(f"- **total (lead time)**: {describe(duration, time_scale)} — {verdict} the {target} target")
        else:
            lines.append(f"- **total (lead time)**: not measured (target {target})")
        slowest = self.table.slowest()
        if slowest is not None and slowest.duration is not None:
            lines.append(f"- **slowest stage**: {slowest.stage} ({describe(slowest.duration, time_scale)})")
        if time_scale != 1:
            lines.append(
                f"- **time scale**: a sandbox at speed {time_scale:g}: a real second stands for {time_scale:g} "
                "modelled seconds"
            )
        if not self.succeeded:
            lines += ["", f"**Failed stage**: {self.failed_stage or 'unknown'}", "", f"> {self.error}"]
        picture = timeline_svg(
            self.table.rows,
            origin=self.commit_time,
            target_seconds=target_seconds,
            rollout_budget=rollout_budget,
            time_scale=time_scale,
            title=f"{self.environment} <- {source}: {'succeeded' if self.succeeded else 'FAILED'}",
        )
        lines += ["", svg_markdown(picture, alt=f"{self.environment} deployment timeline")]
        return "\n".join(lines) + "\n"

    def payload(self) -> dict[str, Any]:
        """The event payload: durations and outcome, no secrets."""
        return {
            "environment": self.environment,
            "source": self.source,
            "sha": self.sha,
            "image": self.image,
            "digest": self.digest,
            "succeeded": self.succeeded,
            "failed_stage": self.failed_stage,
            "error": self.error,
            "stages": [row.as_payload() for row in self.table.rows],
            "total_seconds": self.total.duration if self.total else None,
        }
