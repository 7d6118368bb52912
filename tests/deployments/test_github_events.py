"""The receiver's pure part, table-tested: the signature check (GitHub's published test vector), both content types,
the routing of pushes to environments, and the event vocabulary (labels, payload keys and their JSON types)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from pydantic import SecretStr

from blocks import AwxServer, GitHubAccount, ImageRegistry, KubernetesCluster, StackTarget
from deployments.github_events import (
    EVENT_NAMESPACE,
    PUSH_EVENT,
    WORKFLOW_RUN_EVENT,
    PayloadError,
    UnsupportedContentType,
    decode_payload,
    event_id,
    sign,
    signature_matches,
    translate,
)
from deployments.receiver import ReceiverConfigError, webhook_secret

FRONTEND = "xchem/fragalysis-frontend"
BACKEND = "xchem/fragalysis-backend"
STACK = "xchem/fragalysis-stack"
WHEN = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
SHA = "a" * 40
BEFORE = "b" * 40


def target(environment: str, *, production: bool = False, secret: str | None = "s3cret", **changes: Any) -> StackTarget:
    github = GitHubAccount(token=SecretStr("t"), webhook_secret=SecretStr(secret) if secret is not None else None)
    return StackTarget(
        environment=environment,
        production=production,
        github=github,
        awx=AwxServer(url="http://awx.invalid"),
        cluster=KubernetesCluster(),
        registry=ImageRegistry(),
        **changes,
    )


TARGETS = {"staging-block": target("staging"), "production-block": target("production", production=True)}


def push(repository: str, ref: str, **changes: Any) -> dict[str, Any]:
    """A push delivery's payload with the fields the receiver reads (GitHub's carry many more)."""
    return {
        "ref": ref,
        "before": BEFORE,
        "after": SHA,
        "repository": {"full_name": repository, "name": repository.split("/")[1]},
        "pusher": {"name": "octocat", "email": "octocat@example.org"},
        "created": False,
        "deleted": False,
        "forced": False,
        "head_commit": {"id": SHA, "timestamp": "2025-03-04T05:06:00Z"},
        **changes,
    }


# ---------------------------------------------------------------- signature


def test_githubs_published_test_vector():
    # docs.github.com "Validating webhook deliveries" -> "Testing the webhook payload validation"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign("It's a Secret to Everybody", b"Hello, World!") == expected
    assert signature_matches("It's a Secret to Everybody", b"Hello, World!", expected)


@pytest.mark.parametrize(
    ("secret", "body", "header"),
    [
        ("It's a Secret to Everybody", b"Hello, World?", "vector"),  # the body changed
        ("It's a secret to everybody", b"Hello, World!", "vector"),  # another secret
        ("It's a Secret to Everybody", b"Hello, World!", None),  # unsigned
        ("It's a Secret to Everybody", b"Hello, World!", ""),
        (
            "It's a Secret to Everybody",
            b"Hello, World!",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ),
        ("It's a Secret to Everybody", b"Hello, World!", "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59"),  # legacy
        (
            "It's a Secret to Everybody",
            b"Hello, World!",
            "SHA256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17",
        ),
        (
            "It's a Secret to Everybody",
            b"Hello, World!",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
        ),
        ("It's a Secret to Everybody", b"Hello, World!", "sha256=\u00e9\u00e9"),  # not ASCII: refused, not raised
    ],
)
def test_wrong_or_missing_signatures_are_refused(secret: str, body: bytes, header: str | None):
    if header == "vector":
        header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert not signature_matches(secret, body, header)


# ---------------------------------------------------------------- content types


PAYLOAD = {"zen": "Keep it logically awesome.", "hook_id": 1, "n": [1, None, True]}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", json.dumps(PAYLOAD).encode()),
        ("application/json; charset=utf-8", json.dumps(PAYLOAD).encode()),
        ("Application/JSON", json.dumps(PAYLOAD).encode()),
        ("application/x-www-form-urlencoded", urlencode({"payload": json.dumps(PAYLOAD)}).encode()),
    ],
)
def test_both_content_types_decode_to_the_same_payload(content_type: str, body: bytes):
    assert decode_payload(body, content_type) == PAYLOAD


@pytest.mark.parametrize(
    ("content_type", "body", "error", "says"),
    [
        ("application/json", b"{not json", PayloadError, "malformed JSON"),
        ("application/json", b"", PayloadError, "malformed JSON"),
        ("application/json", b"[1, 2]", PayloadError, "not an object"),
        ("application/json", b'{"a": "\xff"}', PayloadError, "not UTF-8"),
        ("application/x-www-form-urlencoded", b"other=1", PayloadError, "'payload' field"),
        ("application/x-www-form-urlencoded", b"payload=1&payload=2", PayloadError, "'payload' field"),
        ("application/x-www-form-urlencoded", b"payload=%7Bnope", PayloadError, "malformed JSON"),
        ("application/x-www-form-urlencoded", b"payload", PayloadError, "malformed form"),
        ("application/x-www-form-urlencoded", b"payload=%ff", PayloadError, "malformed form"),
        ("text/plain", b"{}", UnsupportedContentType, "'text/plain'"),
        (None, b"{}", UnsupportedContentType, "(none)"),
    ],
)
def test_malformed_bodies_are_refused(content_type: str | None, body: bytes, error: type[Exception], says: str):
    with pytest.raises(error, match=says.replace("(", r"\(").replace(")", r"\)")):
        decode_payload(body, content_type)


# ---------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("repository", "ref", "kind", "name", "source", "environment", "routed_to"),
    [
        (FRONTEND, "refs/heads/staging", "branch", "staging", "frontend", "staging", "staging-block"),
        (BACKEND, "refs/heads/staging", "branch", "staging", "backend", "staging", "staging-block"),
        (STACK, "refs/heads/master", "branch", "master", "stack", "staging", "staging-block"),
        (
            "XChem/Fragalysis-Frontend",
            "refs/heads/staging",
            "branch",
            "staging",
            "frontend",
            "staging",
            "staging-block",
        ),
        (FRONTEND, "refs/heads/master", "branch", "master", "none", "none", ""),
        (FRONTEND, "refs/heads/feature/x", "branch", "feature/x", "none", "none", ""),
        (STACK, "refs/tags/1.0.3", "tag", "1.0.3", "stack", "production", "production-block"),
        (STACK, "refs/tags/10.20.30", "tag", "10.20.30", "stack", "production", "production-block"),
        (STACK, "refs/tags/1.0.3-rc1", "tag", "1.0.3-rc1", "stack", "none", ""),
        (STACK, "refs/tags/1.0", "tag", "1.0", "stack", "none", ""),
        (STACK, "refs/tags/v1.0.3", "tag", "v1.0.3", "stack", "none", ""),
        # a production-grade tag of another repository is not a stack release
        (FRONTEND, "refs/tags/2.1.3", "tag", "2.1.3", "frontend", "none", ""),
        # a tag named like a source branch never starts a staging deploy, a branch named like a release no production
        (FRONTEND, "refs/tags/staging", "tag", "staging", "frontend", "none", ""),
        (STACK, "refs/heads/1.0.3", "branch", "1.0.3", "none", "none", ""),
    ],
)
def test_pushes_route_by_repository_ref_kind_and_name(
    repository: str, ref: str, kind: str, name: str, source: str, environment: str, routed_to: str
):
    translation = translate("push", "delivery-1", push(repository, ref), TARGETS, occurred=WHEN)
    assert translation.ignored is None
    [event] = translation.events
    assert event["event"] == PUSH_EVENT
    assert event["resource"] == {
        "prefect.resource.id": f"github.repository.{repository}",
        "github.repository": repository,
        "github.ref-kind": kind,
        "github.ref": name,
        "fragalysis.source": source,
        "fragalysis.environment": environment,
    }
    payload = event["payload"]
    assert (payload["ref"], payload["ref_kind"], payload["name"]) == (ref, kind, name)
    assert (payload["source"], payload["environment"], payload["target"]) == (source, environment, routed_to)
    assert payload["tag"] == (name if kind == "tag" else "")


def test_a_push_event_has_every_key_with_its_json_type():
    [event] = translate("push", "d-42", push(FRONTEND, "refs/heads/staging"), TARGETS, occurred=WHEN).events
    assert set(event) == {"id", "occurred", "event", "resource", "related", "payload"}
    assert event["payload"] == {
        "repository": FRONTEND,
        "ref": "refs/heads/staging",
        "ref_kind": "branch",
        "name": "staging",
        "source": "frontend",
        "sha": SHA,
        "tag": "",
        "before": BEFORE,
        "forced": False,
        "pusher": "octocat",
        "delivery": "d-42",
        "environment": "staging",
        "target": "staging-block",
        "pushed_at": "2025-03-04T05:06:07+00:00",
    }
    assert event["occurred"] == "2025-03-04T05:06:07+00:00"
    assert event["related"] == []
    # what the server receives is JSON: the types survive the round trip
    assert json.loads(json.dumps(event)) == event
    assert all(isinstance(value, str) for value in event["resource"].values())


def test_the_event_id_is_a_uuid5_of_the_delivery_so_a_redelivery_has_the_same_id():
    guid = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    first = translate("push", guid, push(FRONTEND, "refs/heads/staging"), TARGETS, occurred=WHEN).events[0]
    again = translate("push", guid, push(FRONTEND, "refs/heads/staging"), TARGETS, occurred=datetime.now(UTC))
    other = translate("push", guid + "0", push(FRONTEND, "refs/heads/staging"), TARGETS, occurred=WHEN).events[0]
    assert first["id"] == again.events[0]["id"] == str(uuid.uuid5(EVENT_NAMESPACE, guid)) == event_id(guid)
    assert other["id"] != first["id"]
    assert uuid.UUID(first["id"]).version == 5


def test_an_annotated_tag_deploys_the_commit_it_points_at_and_force_pushes_say_so():
    tag_object = "c" * 40
    payload = push(STACK, "refs/tags/1.0.3", after=tag_object, head_commit={"id": SHA}, forced=True)
    [event] = translate("push", "d", payload, TARGETS, occurred=WHEN).events
    assert (event["payload"]["sha"], event["payload"]["forced"]) == (SHA, True)
    without_head = push(STACK, "refs/heads/master", head_commit=None)
    assert translate("push", "d", without_head, TARGETS, occurred=WHEN).events[0]["payload"]["sha"] == SHA


def test_one_push_for_two_environments_gives_one_event_each_with_its_own_id():
    targets = {**TARGETS, "alice": target("alice-stack")}
    events = translate("push", "d-7", push(FRONTEND, "refs/heads/staging"), targets, occurred=WHEN).events
    assert [(e["payload"]["target"], e["resource"]["fragalysis.environment"]) for e in events] == [
        ("staging-block", "staging"),
        ("alice", "alice-stack"),
    ]
    assert [e["id"] for e in events] == [event_id("d-7", "staging-block"), event_id("d-7", "alice")]
    assert len({e["id"] for e in events} | {event_id("d-7")}) == 3


def test_a_developer_target_routes_its_own_branch():
    alice = target(
        "alice-stack", sources={"frontend": {"repository": FRONTEND, "workflow": "b.yaml", "branch": "alice"}}
    )
    [event] = translate("push", "d", push(FRONTEND, "refs/heads/alice"), {"alice": alice}, occurred=WHEN).events
    assert (event["resource"]["fragalysis.environment"], event["payload"]["target"]) == ("alice-stack", "alice")
    [other] = translate("push", "d", push(FRONTEND, "refs/heads/staging"), {"alice": alice}, occurred=WHEN).events
    assert other["resource"]["fragalysis.environment"] == "none"


def test_a_production_targets_own_tag_pattern_decides():
    prerelease = target("production", production=True, tag_pattern=r"[0-9]+\.[0-9]+\.[0-9]+(-rc[0-9]+)?")
    events = translate("push", "d", push(STACK, "refs/tags/1.0.3-rc1"), {"p": prerelease}, occurred=WHEN).events
    assert events[0]["resource"]["fragalysis.environment"] == "production"


@pytest.mark.parametrize(
    ("event", "payload", "reason"),
    [
        ("ping", {"zen": "Design for failure.", "hook_id": 1}, "ping"),
        ("push", push(FRONTEND, "refs/heads/staging", deleted=True, after="0" * 40, head_commit=None), "deleted"),
        ("push", push(STACK, "refs/tags/1.0.3", deleted=True), "deleted"),
        ("push", push("someone/else", "refs/heads/staging"), "someone/else is not configured"),
        ("workflow_run", {"action": "completed", "repository": {"full_name": "a/b"}}, "a/b is not configured"),
        ("push", push(FRONTEND, "refs/notes/commits"), "neither a branch nor a tag"),
        ("issues", {"action": "opened"}, "'issues' is not used"),
        ("star", {}, "'star' is not used"),
        # values the events would carry into flow parameters and labels, which can deploy nothing
        ("push", push(FRONTEND, "refs/heads/staging", head_commit={"id": "a" * 39}), "is not 40 hexadecimal"),
        ("push", push(FRONTEND, "refs/heads/staging", head_commit={"id": "A" * 40}), "is not 40 hexadecimal"),
        ("push", push(FRONTEND, "refs/heads/staging", head_commit={"id": "a" * 5000}), "is not 40 hexadecimal"),
        ("push", push(FRONTEND, "refs/heads/staging", head_commit=None, after="main"), "is not 40 hexadecimal"),
        ("push", push(FRONTEND, "refs/heads/" + "s" * 5000), "(5011 characters) is not one to deploy"),
        ("push", push(FRONTEND, "refs/heads/staging\n"), "is not one to deploy"),
        ("push", push("x" * 5000 + "/y", "refs/heads/staging"), "is not an owner/name GitHub gives"),
        ("push", push("xchem/fragalysis frontend", "refs/heads/staging"), "is not an owner/name GitHub gives"),
        ("workflow_run", {"action": "completed", "repository": {"full_name": "a"}}, "is not an owner/name"),
    ],
)
def test_deliveries_that_are_accepted_but_make_no_event(event: str, payload: dict[str, Any], reason: str):
    translation = translate(event, "d", payload, TARGETS, occurred=WHEN)
    assert translation.events == []
    assert translation.ignored is not None
    assert reason in translation.ignored
    assert len(translation.ignored) < 200, "a huge value is cut in the reason"


def test_a_workflow_run_with_a_malformed_head_sha_makes_no_event():
    payload = workflow_run("completed", "completed", "success")
    payload["workflow_run"]["head_sha"] = "z" * 40
    translation = translate("workflow_run", "d", payload, TARGETS, occurred=WHEN)
    assert translation.events == []
    assert translation.ignored is not None
    assert "head_sha 'zzz" in translation.ignored


@pytest.mark.parametrize(
    ("event", "payload", "says"),
    [
        ("push", {"ref": "refs/heads/staging"}, "'repository'"),
        ("push", {**push(FRONTEND, "refs/heads/staging"), "ref": None}, "'ref'"),
        ("push", {**push(FRONTEND, "refs/heads/staging"), "before": 1}, "'before'"),
        ("push", {**push(FRONTEND, "refs/heads/staging"), "deleted": "no"}, "'deleted'"),
        ("push", {**push(FRONTEND, "refs/heads/staging"), "head_commit": {"id": 7}}, "'id'"),
        ("push", {**push(FRONTEND, "refs/heads/staging"), "repository": {"name": "x"}}, "'full_name'"),
        ("workflow_run", {"action": "completed", "repository": {"full_name": FRONTEND}}, "'workflow_run'"),
    ],
)
def test_payloads_missing_what_the_vocabulary_needs_are_malformed(event: str, payload: dict[str, Any], says: str):
    with pytest.raises(PayloadError, match=says):
        translate(event, "d", payload, TARGETS, occurred=WHEN)


def workflow_run(action: str, status: str, conclusion: str | None) -> dict[str, Any]:
    return {
        "action": action,
        "workflow_run": {
            "id": 30433642,
            "name": "build staging",
            "head_branch": "staging",
            "head_sha": SHA,
            "path": ".github/workflows/build-staging.yaml",
            "run_attempt": 1,
            "event": "push",
            "status": status,
            "conclusion": conclusion,
            "html_url": f"https://github.com/{FRONTEND}/actions/runs/30433642",
        },
        "workflow": {"name": "build staging", "path": ".github/workflows/build-staging.yaml"},
        "repository": {"full_name": FRONTEND},
    }


@pytest.mark.parametrize(
    ("action", "status", "conclusion", "label", "value"),
    [
        ("requested", "queued", None, "none", ""),
        ("in_progress", "in_progress", None, "none", ""),
        ("completed", "completed", "failure", "failure", "failure"),
        ("completed", "completed", "success", "success", "success"),
    ],
)
def test_workflow_run_deliveries(action: str, status: str, conclusion: str | None, label: str, value: str):
    [event] = translate("workflow_run", "d-9", workflow_run(action, status, conclusion), TARGETS, occurred=WHEN).events
    assert event["event"] == WORKFLOW_RUN_EVENT
    assert event["id"] == event_id("d-9")
    assert event["resource"] == {
        "prefect.resource.id": f"github.repository.{FRONTEND}",
        "github.repository": FRONTEND,
        "github.workflow": "build staging",
        "github.action": action,
        "github.conclusion": label,
    }
    assert event["payload"] == {
        "repository": FRONTEND,
        "workflow": "build staging",
        "action": action,
        "run_id": 30433642,
        "run_attempt": 1,
        "head_sha": SHA,
        "head_branch": "staging",
        "event": "push",
        "status": status,
        "conclusion": value,
        "html_url": f"https://github.com/{FRONTEND}/actions/runs/30433642",
        "delivery": "d-9",
    }


# ---------------------------------------------------------------- the secret


def test_the_webhook_secret_comes_from_the_targets_github_blocks():
    assert webhook_secret(TARGETS) == "s3cret"
    assert webhook_secret({"a": target("staging", secret=None), "b": target("production", secret="x")}) == "x"
    with pytest.raises(ReceiverConfigError, match="no webhook secret"):
        webhook_secret({"a": target("staging", secret=None), "b": target("production", secret="")})
    with pytest.raises(ReceiverConfigError, match="no webhook secret"):
        webhook_secret({})
    with pytest.raises(ReceiverConfigError, match=r"different webhook secrets \(a, b\)") as raised:
        webhook_secret({"a": target("staging", secret="canary-A1"), "b": target("production", secret="canary-B2")})
    assert "canary" not in str(raised.value)
