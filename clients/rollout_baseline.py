"""A late start: the roll-out a deploy is about to watch may have begun, or ended, before it took its snapshot.

A deploy that starts late (a worker's backlog, the poller catching up, a retry after a crash, a resumed approval)
reads the StatefulSet after the change it waits for was made. Watching that snapshot for a change would wait for
one that has happened. ``before_rollout`` recognises the case from the snapshot alone (the pods of the update
revision, their ``creationTimestamp`` and the digest their ``imageID`` carries) and gives back the snapshot as it
was before the roll-out: the pods of the old revision only, and the old revision as the update revision. Following
from it replays what happened, so the pods' timings come from their own timestamps, however late the deploy looked.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from clients.registry import image_digest
from clients.rollout_events import RolloutSnapshot
from clients.rollout_state import pod_state


def before_rollout(snapshot: RolloutSnapshot, digest: str, since: datetime) -> RolloutSnapshot | None:
    """The snapshot as it was before the roll-out it shows, when that roll-out is to ``digest`` and began at or
    after ``since`` (the build that pushed the image started then: a roll-out before it cannot be for it); None
    when the snapshot shows no such roll-out (nothing moved yet, or the pods of its update revision are older than
    ``since`` or run another image).

    The roll-out may be under way (``currentRevision`` is still the old revision; the new pods may not report an
    ``imageID`` yet) or finished (``currentRevision == updateRevision``: every pod runs ``digest``).
    """
    update = snapshot.update_revision
    if update is None:
        return None
    pods = [pod_state(pod, update) for pod in snapshot.pod_objects]
    new = [pod for pod in pods if pod.updated and not pod.terminating]
    finished = snapshot.current_revision == update
    if not new and not finished:
        # the new revision is in and the first old pod is on its way out: nothing to date or check yet
        return dataclasses.replace(snapshot, update_revision=snapshot.current_revision)
    if not new or any(pod.created_at is None or pod.created_at < since for pod in new):
        return None
    running = {found for pod in new for image_id in pod.image_ids.values() if (found := image_digest(image_id))}
    if running - {digest} or (finished and running != {digest}):
        return None
    old_revision = None if finished else snapshot.current_revision
    return dataclasses.replace(
        snapshot,
        update_revision=old_revision,
        pods=tuple(pod for pod in snapshot.pods if pod.revision != update),
    )
