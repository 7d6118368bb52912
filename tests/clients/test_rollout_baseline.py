"""``before_rollout`` table-tested: which snapshots show a roll-out that a late deploy must follow, not wait for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clients.rollout_baseline import before_rollout
from clients.rollout_events import RolloutSnapshot, SnapshotPod

SINCE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
NEW, OTHER = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def pod(
    name: str, revision: str, *, created: datetime, digest: str | None, terminating: bool = False
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "uid": f"{name}-{revision}",
        "labels": {"controller-revision-hash": revision},
        "creationTimestamp": created.isoformat().replace("+00:00", "Z"),
    }
    if terminating:
        metadata["deletionTimestamp"] = (created + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    statuses = [{"name": "stack", "imageID": f"docker.io/xchem/fragalysis-stack@{digest}"}] if digest else []
    return {"metadata": metadata, "status": {"containerStatuses": statuses}}


def snapshot(current: str, update: str, pods: list[dict[str, Any]]) -> RolloutSnapshot:
    return RolloutSnapshot(
        namespace="staging-stack",
        name="stack",
        generation=3,
        observed_generation=3,
        update_revision=update,
        current_revision=current,
        replicas=2,
        selector="name=stack",
        resource_version="10",
        pods=tuple(
            SnapshotPod(
                p["metadata"]["name"], p["metadata"]["uid"], p["metadata"]["labels"]["controller-revision-hash"]
            )
            for p in pods
        ),
        pod_objects=tuple(pods),
    )


OLD_TIME, LATE = SINCE - timedelta(hours=2), SINCE + timedelta(minutes=12)
OLD_PODS = [pod("stack-1", "r1", created=OLD_TIME, digest=OTHER), pod("stack-0", "r1", created=OLD_TIME, digest=OTHER)]


@pytest.mark.parametrize(
    ("case", "shown", "expected"),
    [
        ("nothing moved", snapshot("r1", "r1", OLD_PODS), None),
        ("revision in, no new pod yet", snapshot("r1", "r2", OLD_PODS), ("r1", 2)),
        (
            "first new pod pulling",
            snapshot("r1", "r2", [pod("stack-1", "r2", created=LATE, digest=None), OLD_PODS[1]]),
            ("r1", 1),
        ),
        (
            "under way, new pod runs the digest",
            snapshot("r1", "r2", [pod("stack-1", "r2", created=LATE, digest=NEW), OLD_PODS[1]]),
            ("r1", 1),
        ),
        (
            "ended",
            snapshot(
                "r2",
                "r2",
                [pod("stack-1", "r2", created=LATE, digest=NEW), pod("stack-0", "r2", created=LATE, digest=NEW)],
            ),
            (None, 0),
        ),
        (
            "ended before the build began",
            snapshot(
                "r2",
                "r2",
                [
                    pod("stack-1", "r2", created=OLD_TIME, digest=NEW),
                    pod("stack-0", "r2", created=OLD_TIME, digest=NEW),
                ],
            ),
            None,
        ),
        (
            "under way to another image",
            snapshot("r1", "r2", [pod("stack-1", "r2", created=LATE, digest=OTHER), OLD_PODS[1]]),
            None,
        ),
        (
            "ended, but no pod reports its image",
            snapshot(
                "r2",
                "r2",
                [pod("stack-1", "r2", created=LATE, digest=None), pod("stack-0", "r2", created=LATE, digest=None)],
            ),
            None,
        ),
    ],
)
def test_before_rollout(case: str, shown: RolloutSnapshot, expected: tuple[str | None, int] | None):
    found = before_rollout(shown, NEW, SINCE)
    if expected is None:
        assert found is None, case
        return
    assert found is not None, case
    assert (found.update_revision, len(found.pods)) == expected, case
    assert found.pod_objects == shown.pod_objects, "the watch starts from every pod as read"
    assert all(
        p.revision != shown.update_revision or shown.update_revision == found.update_revision for p in found.pods
    )
