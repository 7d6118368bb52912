"""The receiver over real HTTP, posting to a small capture server that stands in for Prefect's ``POST /events``:
what each delivery is answered, and what reaches Prefect (nothing, for everything GitHub should not be trusted with)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from deployments.github_events import event_id, sign
from deployments.receiver import MAX_BODY_BYTES, Receiver, ReceiverConfigError
from tests.deployments.test_github_events import FRONTEND, STACK, TARGETS, push, target

SECRET = "s3cret"  # the TARGETS' GitHub blocks' webhook secret


@dataclass
class Capture:
    """What the stand-in for Prefect received: (method, path, headers lower-cased, body) per request."""

    url: str
    status: int = 204
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)

    @property
    def posted(self) -> list[list[dict[str, Any]]]:
        """The JSON lists POSTed to /api/events."""
        return [
            json.loads(body) for method, path, _, body in self.requests if (method, path) == ("POST", "/api/events")
        ]


@pytest.fixture
def prefect_api() -> Iterator[Capture]:
    """A loopback server that records every request and answers ``status`` (204, as Prefect's /events does)."""
    capture = Capture(url="")

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {key.lower(): value for key, value in self.headers.items()}
            capture.requests.append((self.command, self.path, headers, body))
            self.send_response(capture.status if self.command == "POST" else 200)
            if self.command == "GET":  # Prefect's client asks GET /hello
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
            else:
                self.send_header("Content-Length", "0")
                self.end_headers()

        do_POST = _record
        do_GET = _record

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    capture.url = f"http://127.0.0.1:{server.server_address[1]}/api"
    yield capture
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver(prefect_api: Capture) -> Iterator[Receiver]:
    with Receiver(TARGETS, api_url=prefect_api.url, max_body_bytes=4096) as running:
        yield running


def deliver(
    receiver: Receiver,
    payload: dict[str, Any] | None = None,
    *,
    event: str = "push",
    delivery: str = "11111111-2222-3333-4444-555555555555",
    body: bytes | None = None,
    content_type: str = "application/json",
    secret: str | None = SECRET,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST one delivery to the receiver the way GitHub does (signed with ``secret``; None: unsigned)."""
    if body is None:
        text = json.dumps(payload)
        body = (urlencode({"payload": text}) if content_type.endswith("urlencoded") else text).encode()
    sent = {"Content-Type": content_type, "X-GitHub-Event": event, "X-GitHub-Delivery": delivery}
    if secret is not None:
        sent["X-Hub-Signature-256"] = sign(secret, body)
    sent.update(headers or {})
    return httpx.post(f"{receiver.url}github", content=body, headers=sent, timeout=10)


def test_a_signed_push_is_posted_to_prefect(receiver: Receiver, prefect_api: Capture):
    answer = deliver(receiver, push(FRONTEND, "refs/heads/staging"), delivery="d-1")
    assert answer.status_code == 202, answer.text
    assert answer.json()["events"] == [event_id("d-1")]
    [[event]] = prefect_api.posted
    assert event["id"] == event_id("d-1")
    assert event["event"] == "fragalysis.github.push"
    assert event["resource"]["fragalysis.environment"] == "staging"
    assert event["payload"]["delivery"] == "d-1"
    [(_, _, headers, _)] = prefect_api.requests
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers


def test_a_form_encoded_delivery_gives_the_same_event(receiver: Receiver, prefect_api: Capture):
    payload = push(FRONTEND, "refs/heads/staging")
    assert deliver(receiver, payload, delivery="d-json").status_code == 202
    form = deliver(receiver, payload, delivery="d-form", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 202, form.text
    [[as_json], [as_form]] = prefect_api.posted
    # what differs is the delivery and when it arrived
    assert {
        **as_form,
        "id": "-",
        "occurred": "-",
        "payload": {**as_form["payload"], "delivery": "-", "pushed_at": "-"},
    } == {
        **as_json,
        "id": "-",
        "occurred": "-",
        "payload": {**as_json["payload"], "delivery": "-", "pushed_at": "-"},
    }
    assert as_form["payload"]["pushed_at"] == as_form["occurred"]


@pytest.mark.parametrize(
    ("secret", "headers"),
    [
        (None, {}),
        ("another secret", {}),
        (SECRET, {"X-Hub-Signature-256": "sha256=" + "0" * 64}),
        (None, {"X-Hub-Signature": "sha1=0000000000000000000000000000000000000000"}),  # the legacy header is not enough
    ],
)
def test_unsigned_or_wrongly_signed_deliveries_get_401_and_no_event(
    receiver: Receiver, prefect_api: Capture, secret: str | None, headers: dict[str, str]
):
    answer = deliver(receiver, push(FRONTEND, "refs/heads/staging"), secret=secret, headers=headers)
    assert answer.status_code == 401
    assert prefect_api.requests == []


def test_a_body_signed_then_changed_gets_401(receiver: Receiver, prefect_api: Capture):
    body = json.dumps(push(FRONTEND, "refs/heads/staging")).encode()
    signature = sign(SECRET, body)
    tampered = body.replace(b"staging", b"stagin_")
    answer = deliver(receiver, body=tampered, secret=None, headers={"X-Hub-Signature-256": signature})
    assert answer.status_code == 401
    assert prefect_api.requests == []


def padded(size: int) -> bytes:
    """A push body of exactly ``size`` bytes (JSON allows trailing blanks)."""
    body = json.dumps(push(FRONTEND, "refs/heads/staging")).encode()
    return body + b" " * (size - len(body))


def test_bodies_over_the_limit_get_413_with_or_without_content_length(receiver: Receiver, prefect_api: Capture):
    assert deliver(receiver, body=padded(4097)).status_code == 413
    # no Content-Length (chunked): counted while reading
    body = padded(4097)
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    answer = httpx.post(
        f"{receiver.url}github",
        content=iter(chunks),
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "d-chunked",
            "X-Hub-Signature-256": sign(SECRET, body),
        },
        timeout=10,
    )
    assert "content-length" not in answer.request.headers
    assert answer.status_code == 413
    assert prefect_api.requests == []
    # a body of exactly the limit is read, verified and posted
    assert deliver(receiver, body=padded(4096)).status_code == 202
    assert len(prefect_api.posted) == 1
    assert MAX_BODY_BYTES == 25 * 1024 * 1024  # GitHub's cap on a webhook payload


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "status"),
    [
        (b"{not json", "application/json", {}, 400),
        (b"[]", "application/json", {}, 400),
        (b"other=1", "application/x-www-form-urlencoded", {}, 400),
        (b"payload=%7Bnope", "application/x-www-form-urlencoded", {}, 400),
        (json.dumps(push(FRONTEND, "refs/heads/staging")).encode(), "text/plain", {}, 415),
        (json.dumps({"ref": "refs/heads/staging"}).encode(), "application/json", {}, 400),  # no repository
        (json.dumps(push(FRONTEND, "refs/heads/staging")).encode(), "application/json", {"X-GitHub-Delivery": ""}, 400),
        (json.dumps(push(FRONTEND, "refs/heads/staging")).encode(), "application/json", {"X-GitHub-Event": ""}, 400),
    ],
)
def test_malformed_deliveries_get_4xx_and_no_event(
    receiver: Receiver, prefect_api: Capture, body: bytes, content_type: str, headers: dict[str, str], status: int
):
    answer = deliver(receiver, body=body, content_type=content_type, headers=headers)
    assert answer.status_code == status, answer.text
    assert prefect_api.requests == []


@pytest.mark.parametrize(
    ("event", "payload", "says"),
    [
        ("ping", {"zen": "Speak like a human.", "hook_id": 12345678, "hook": {"type": "Repository"}}, "ping"),
        ("push", push(FRONTEND, "refs/heads/staging", deleted=True, after="0" * 40, head_commit=None), "deleted"),
        ("push", push(STACK, "refs/tags/1.0.3", deleted=True), "deleted"),
        ("push", push("someone/else", "refs/heads/staging"), "not configured"),
        ("issues", {"action": "opened", "repository": {"full_name": FRONTEND}}, "not used"),
    ],
)
def test_accepted_and_ignored_deliveries_get_200_and_no_event(
    receiver: Receiver, prefect_api: Capture, event: str, payload: dict[str, Any], says: str
):
    answer = deliver(receiver, payload, event=event)
    assert answer.status_code == 200, answer.text
    assert says in answer.json()["outcome"]
    assert prefect_api.requests == []


@pytest.mark.parametrize(
    ("repository", "ref", "kind", "environment"),
    [
        (FRONTEND, "refs/heads/staging", "branch", "staging"),
        (STACK, "refs/tags/1.0.3", "tag", "production"),
        (STACK, "refs/tags/1.0.3-rc1", "tag", "none"),
        (STACK, "refs/heads/1.0.3", "branch", "none"),
    ],
)
def test_tags_and_branches_are_labelled_for_their_environment(
    receiver: Receiver, prefect_api: Capture, repository: str, ref: str, kind: str, environment: str
):
    assert deliver(receiver, push(repository, ref)).status_code == 202
    [[event]] = prefect_api.posted
    assert (event["resource"]["github.ref-kind"], event["resource"]["fragalysis.environment"]) == (kind, environment)


def test_a_redelivery_posts_the_same_event_id(receiver: Receiver, prefect_api: Capture):
    payload = push(FRONTEND, "refs/heads/staging")
    for _ in range(2):
        assert deliver(receiver, payload, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958").status_code == 202
    [[first], [again]] = prefect_api.posted
    assert first["id"] == again["id"] == event_id("72d3162e-cc78-11e3-81ab-4c9367dc0958")


def test_the_auth_string_is_sent_as_prefects_own_client_sends_it(prefect_api: Capture):
    from prefect.client.orchestration import SyncPrefectClient

    auth = "admin:correct horse battery staple"
    with SyncPrefectClient(prefect_api.url, auth_string=auth) as client:
        client.hello()
    [(method, path, prefects, _)] = prefect_api.requests
    assert (method, path) == ("GET", "/api/hello")
    with Receiver(TARGETS, api_url=prefect_api.url + "/", auth_string=auth) as receiver:
        assert deliver(receiver, push(FRONTEND, "refs/heads/staging")).status_code == 202
    [_, (method, path, ours, _)] = prefect_api.requests
    assert (method, path) == ("POST", "/api/events")
    assert ours["authorization"] == prefects["authorization"]
    assert ours["authorization"].startswith("Basic ")


@pytest.mark.parametrize("status", [500, 401, 422])
def test_prefect_refusing_the_events_gives_502(receiver: Receiver, prefect_api: Capture, status: int):
    prefect_api.status = status
    answer = deliver(receiver, push(FRONTEND, "refs/heads/staging"))
    assert answer.status_code == 502
    assert str(status) in answer.json()["outcome"]
    assert len(prefect_api.posted) == 1


def test_prefect_unreachable_gives_502():
    with Receiver(TARGETS, api_url="http://127.0.0.1:9/api") as receiver:
        answer = deliver(receiver, push(FRONTEND, "refs/heads/staging"))
    assert answer.status_code == 502
    assert "ConnectError" in answer.json()["outcome"]


def test_each_delivery_is_logged_without_the_secret_or_signature(
    receiver: Receiver, prefect_api: Capture, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="deployments.receiver")
    body = json.dumps(push(FRONTEND, "refs/heads/staging")).encode()
    assert deliver(receiver, body=body, delivery="d-logged").status_code == 202
    assert deliver(receiver, body=body, delivery="d-forged", secret="forged").status_code == 401
    lines = [record.getMessage() for record in caplog.records if record.name == "deployments.receiver"]
    logged = [line for line in lines if "d-logged" in line]
    forged = [line for line in lines if "d-forged" in line]
    assert len(logged) == 1
    assert "(push)" in logged[0]
    assert "202" in logged[0]
    assert "environment staging" in logged[0]
    assert len(forged) == 1
    assert "401" in forged[0]
    text = caplog.text
    for secret in (SECRET, sign(SECRET, body), sign("forged", body), sign(SECRET, body).removeprefix("sha256=")):
        assert secret not in text


def test_the_receiver_listens_on_loopback_at_path_github(receiver: Receiver):
    assert receiver.url.startswith("http://127.0.0.1:")
    assert receiver.url.endswith("/")
    assert httpx.get(f"{receiver.url}github", timeout=5).status_code == 405
    assert httpx.post(f"{receiver.url}hook", content=b"{}", timeout=5).status_code == 404


def test_stop_releases_the_port(prefect_api: Capture):
    receiver = Receiver(TARGETS, api_url=prefect_api.url)
    url = receiver.start()
    receiver.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{url}github", content=b"{}", timeout=5)
    with pytest.raises(RuntimeError, match="not started"):
        _ = receiver.url


def test_the_receiver_refuses_to_start_without_one_secret(prefect_api: Capture):
    with pytest.raises(ReceiverConfigError, match="no webhook secret"):
        Receiver({"staging": target("staging", secret=None)}, api_url=prefect_api.url)
    with pytest.raises(ReceiverConfigError, match="different webhook secrets"):
        Receiver({"a": target("staging"), "b": target("production", secret="other")}, api_url=prefect_api.url)


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (push(FRONTEND, "refs/heads/staging", head_commit={"id": "f" * 2000}), "is not 40 hexadecimal digits"),
        (push(FRONTEND, "refs/heads/" + "s" * 2000), "is not one to deploy"),
        (push("o" * 2000 + "/name", "refs/heads/staging"), "is not an owner/name GitHub gives"),
    ],
)
def test_malformed_values_are_accepted_ignored_and_logged_cut(
    receiver: Receiver, prefect_api: Capture, caplog: pytest.LogCaptureFixture, payload: dict[str, Any], says: str
):
    caplog.set_level(logging.INFO, logger="deployments.receiver")
    answer = deliver(receiver, payload, delivery="d-malformed")
    assert answer.status_code == 200, answer.text
    assert says in answer.json()["outcome"]
    assert prefect_api.requests == [], "no event"
    (line,) = [
        r.getMessage() for r in caplog.records if r.name == "deployments.receiver" and "d-malformed" in r.getMessage()
    ]
    assert "200 ignored: " in line
    assert says in line
    assert len(line) < 300, "the 2,000-character value is not logged whole"


def test_oversized_delivery_headers_get_400_and_are_logged_cut(
    receiver: Receiver, prefect_api: Capture, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="deployments.receiver")
    answer = deliver(receiver, push(FRONTEND, "refs/heads/staging"), delivery="d" * 5000)
    assert answer.status_code == 400
    assert "at most 128 characters" in answer.json()["outcome"]
    assert prefect_api.requests == []
    assert "d" * 129 not in caplog.text
