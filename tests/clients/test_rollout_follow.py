"""The roll-out follower on a fake Kubernetes API: its watch threads speak in typed messages (``Listed``,
``Changed``, ``WatchFailed``), a 410 lists again, a refused watch is raised, and closing ends every stream."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest

from clients.errors import ApiError, ImageMismatch, NotFound, WatchExpired
from clients.kubernetes_api import Collection, KubernetesApi, ObjectList, Resource, WatchEvent
from clients.rollout_events import PodGone, RolloutDone, RolloutEvent, RolloutSnapshot, SnapshotPod
from clients.rollout_follow import Changed, Listed, RolloutFollower, WatchFailed

NS = "staging-stack"


def statefulset(revision: str = "rev-a", generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "stack", "namespace": NS, "generation": generation, "resourceVersion": "10"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"name": "stack"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        },
        "status": {
            "observedGeneration": generation,
            "replicas": 1,
            "readyReplicas": 1,
            "updatedReplicas": 1,
            "currentReplicas": 1,
            "currentRevision": revision,
            "updateRevision": revision,
        },
    }


def pod(name: str, uid: str, revision: str = "rev-a", version: str = "11") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "uid": uid,
            "namespace": NS,
            "resourceVersion": version,
            "labels": {"controller-revision-hash": revision, "name": "stack"},
            "creationTimestamp": "2026-11-26T10:00:00Z",
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def snapshot(sts: dict[str, Any], pods: list[dict[str, Any]]) -> RolloutSnapshot:
    return RolloutSnapshot(
        namespace=NS,
        name="stack",
        generation=sts["metadata"]["generation"],
        observed_generation=sts["status"]["observedGeneration"],
        update_revision=sts["status"]["updateRevision"],
        current_revision=sts["status"]["currentRevision"],
        replicas=1,
        selector="name=stack",
        resource_version="10",
        pods=tuple(SnapshotPod(p["metadata"]["name"], p["metadata"]["uid"], "rev-a") for p in pods),
        server="https://k8s.example",
        pods_resource_version="11",
        statefulset_object=sts,
        pod_objects=tuple(pods),
    )


class FakeStream:
    """A watch: its events (an exception among them is raised), then quiet until closed, as a real quiet watch."""

    def __init__(self, events: list[WatchEvent | Exception]) -> None:
        self.events = events
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[WatchEvent]:
        for event in self.events:
            if isinstance(event, Exception):
                raise event
            yield event
        self.closed.wait(60)

    def close(self) -> None:
        self.closed.set()


class FakeApi:
    """``list`` and ``watch`` as ``KubernetesApi`` has them; watches are answered in order, then stay quiet."""

    server = "https://k8s.example"

    def __init__(self) -> None:
        self.lists: dict[Resource, list[ObjectList]] = {Resource.STATEFULSETS: [], Resource.PODS: []}
        self.watches: dict[Resource, list[list[WatchEvent | Exception]]] = {
            Resource.STATEFULSETS: [],
            Resource.PODS: [],
        }
        self.listed: list[Collection] = []
        self.watched: list[tuple[Collection, str]] = []
        self.streams: list[FakeStream] = []
        self._lock = threading.Lock()

    def list(self, collection: Collection) -> ObjectList:
        with self._lock:
            self.listed.append(collection)
            return self.lists[collection.resource].pop(0)

    def watch(self, collection: Collection, resource_version: str) -> FakeStream:
        with self._lock:
            self.watched.append((collection, resource_version))
            answers = self.watches[collection.resource]
            stream = FakeStream(answers.pop(0) if answers else [])
            self.streams.append(stream)
            return stream


def follower(api: FakeApi, snap: RolloutSnapshot, **options: Any) -> RolloutFollower:
    settings: dict[str, Any] = {
        "timeout": 30.0,
        "stuck_grace": 30.0,
        "expected_digest": None,
        "container": None,
        "require_change": True,
    }
    return RolloutFollower(cast(KubernetesApi, api), snap, **{**settings, **options})


def test_watches_start_from_the_snapshot_with_narrow_collections() -> None:
    api = FakeApi()
    sts, pods = statefulset(), [pod("stack-0", "u0")]
    with follower(api, snapshot(sts, pods), require_change=False) as following:
        events = list(following)
    assert isinstance(events[-1], RolloutDone)
    assert api.listed == []  # the snapshot's lists stand in for the first lists
    assert all(stream.closed.is_set() for stream in api.streams)
    for collection, version in api.watched:
        assert collection.namespace == NS
        if collection.resource is Resource.STATEFULSETS:
            assert (collection.field_selector, version) == ("metadata.name=stack", "10")
        else:
            assert (collection.label_selector, version) == ("name=stack", "11")


def test_a_410_lists_again_and_the_fresh_list_replaces_the_pods() -> None:
    api = FakeApi()
    sts, pods = statefulset(), [pod("stack-0", "u0"), pod("stack-1", "u1")]
    api.watches[Resource.PODS].append([WatchExpired("410 Gone", status=410)])
    api.lists[Resource.PODS].append(ObjectList((pod("stack-0", "u0"),), "20"))
    stop = threading.Event()
    seen: list[RolloutEvent] = []
    with follower(api, snapshot(sts, pods), stop=stop) as following:
        for event in following:
            seen.append(event)
            if isinstance(event, PodGone):
                stop.set()
    assert following.relists == 1
    assert [(e.pod, e.uid) for e in seen if isinstance(e, PodGone)] == [("stack-1", "u1")]
    assert (Collection(Resource.PODS, NS, label_selector="name=stack"), "20") in api.watched


def test_a_refused_watch_is_raised() -> None:
    api = FakeApi()
    sts, pods = statefulset(), [pod("stack-0", "u0")]
    api.watches[Resource.PODS].append([ApiError("watch pods answered 403: forbidden", status=403)])
    with pytest.raises(ApiError, match="403: forbidden"), follower(api, snapshot(sts, pods)) as following:
        list(following)
    assert all(stream.closed.is_set() for stream in api.streams)


def test_a_dropped_watch_resumes_from_the_last_resource_version() -> None:
    api = FakeApi()
    sts, pods = statefulset(), [pod("stack-0", "u0")]
    changed = pod("stack-0", "u0", version="15")
    api.watches[Resource.PODS].append([WatchEvent("MODIFIED", changed), ApiError("watch pods got no answer")])
    api.watches[Resource.PODS].append([WatchEvent("DELETED", pod("stack-0", "u0", version="16"))])
    stop = threading.Event()
    with follower(api, snapshot(sts, pods), stop=stop) as following:
        for event in following:
            if isinstance(event, PodGone):
                stop.set()
    pod_watches = [version for collection, version in api.watched if collection.resource is Resource.PODS]
    assert pod_watches[:2] == ["11", "15"]
    assert following.relists == 0


def test_a_deleted_statefulset_is_not_found() -> None:
    api = FakeApi()
    sts, pods = statefulset(), [pod("stack-0", "u0")]
    api.watches[Resource.STATEFULSETS].append([WatchEvent("DELETED", sts)])
    with pytest.raises(NotFound, match=f"statefulset {NS}/stack is gone"), follower(api, snapshot(sts, pods)) as f:
        list(f)


def test_messages_are_frozen_values() -> None:
    listed = Listed(Resource.PODS, ())
    changed = Changed(Resource.PODS, "ADDED", {"metadata": {}})
    failed = WatchFailed(Resource.PODS, ApiError("no"))
    for message in (listed, changed, failed):
        with pytest.raises(AttributeError):
            message.resource = Resource.STATEFULSETS  # type: ignore[misc]
    assert listed == Listed(Resource.PODS, ())


DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("image_id", "expected", "matches"),
    [
        (f"docker-pullable://xchem/fragalysis-stack@{DIGEST}", DIGEST, True),
        (f"docker.io/xchem/fragalysis-stack@{DIGEST}", DIGEST, True),
        (f"docker.io/xchem/fragalysis-stack@{DIGEST}", "sha256:" + "cd" * 32, False),
        (f"docker.io/xchem/fragalysis-stack@{DIGEST}", DIGEST[-20:], False),  # a tail of the digest is not it
        ("docker.io/xchem/fragalysis-stack:latest", DIGEST, False),
    ],
)
def test_the_expected_digest_is_compared_with_the_image_ids_digest(image_id: str, expected: str, matches: bool) -> None:
    api = FakeApi()
    running = pod("stack-0", "u0")
    running["status"]["containerStatuses"] = [{"name": "stack", "imageID": image_id, "restartCount": 0}]
    follow = follower(api, snapshot(statefulset(), [running]), require_change=False, expected_digest=expected)
    if matches:
        assert isinstance(list(follow)[-1], RolloutDone)
    else:
        with pytest.raises(ImageMismatch, match=f"expected digest {expected}"):
            list(follow)
