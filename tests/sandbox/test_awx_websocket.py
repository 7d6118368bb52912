"""AWX's websocket in the emulator, judged by awxkit's own ``awxkit.ws.WSClient`` (a client nobody here wrote):
it logs in for a session through awxkit's ``Connection.login`` (``/api/login/``), connects to ``/websocket/``,
subscribes to ``jobs: [status_changed]`` and receives every status of a job, as docs/facts-awx-websocket.md says
AWX sends them. The auth rules (token header, refused handshake, the XRF check) are checked with the ``websockets``
client."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import PATIENT_AWX_SECONDS, awx_timeout

pytestmark = pytest.mark.awxkit

STAGING_VC = "Staging Fragalysis Stack (Version Change)"


def _ws_url(http_url: str) -> str:
    parts = urlsplit(http_url)
    return f"ws://{parts.netloc}/websocket/"


def _messages_until_summary(client: Any, job_id: int, seconds: float) -> list[dict[str, Any]]:
    """Messages about ``job_id`` from awxkit's queue until its ``jobs-summary`` (events all stored), or ``seconds``."""
    end = time.monotonic() + seconds
    seen: list[dict[str, Any]] = []
    while time.monotonic() < end:
        message = client._recv(wait=True, timeout=0.5)  # awxkit's own queue (its iterator stops at the first gap)
        if not message or message.get("unified_job_id") != job_id:
            continue
        seen.append(message)
        if "final_counter" in message:
            break
    return seen


def _wsclient(**kwargs: Any) -> Any:
    """awxkit's ``WSClient``, its callbacks fitted to the installed websocket-client.

    awxkit pins websocket-client 0.57.0 (its ``websockets`` extra), whose callbacks got no app argument; the venv
    has websocket-client 1.x (a dependency of ``kubernetes``), which passes the app first. Only the four callbacks'
    signatures are adapted: the URL, the cookies, the subscription and the message handling stay awxkit's.
    """
    from awxkit.ws import WSClient

    client = WSClient(**kwargs)
    client.ws.on_open = lambda app: client._on_open()
    client.ws.on_message = lambda app, message: client._on_message(message)
    client.ws.on_error = lambda app, error: client._on_error(error)
    client.ws.on_close = lambda app, *status: client._on_close()
    return client


def test_awxkit_wsclient_receives_every_status_of_a_job(make_sandbox):
    pytest.importorskip("websocket", reason="awxkit's websocket client needs websocket-client")
    from awxkit.api.client import Connection

    sb = make_sandbox(awx_timeout(PATIENT_AWX_SECONDS), speed=600)
    awx = sb.scenario.awx
    connection = Connection(sb.urls["awx"])
    connection.get("/api/login/")  # the csrftoken cookie that the login POST must echo
    connection.login(awx.username, awx.password, next="/api/v2/")
    assert connection.uses_session_cookie
    assert connection.session_id
    assert connection.session_cookie_name == "awx_sessionid"

    parts = urlsplit(sb.urls["awx"])
    client = _wsclient(
        hostname=parts.hostname,
        port=parts.port,
        secure=False,
        session_id=connection.session_id,
        csrftoken=connection.session.cookies.get("csrftoken"),
    ).connect()
    try:
        accepted = client._recv(wait=True, timeout=5)
        assert accepted == {"accept": True, "user": 1}
        client.job_details()  # what awxkit subscribes to for a job: jobs status_changed and summary
        ack = client._recv(wait=True, timeout=5)
        assert ack == {
            "groups_current": ["jobs-status_changed", "jobs-summary"],
            "groups_left": [],
            "groups_joined": ["jobs-status_changed", "jobs-summary"],
        }

        launched = sb.call(sb.awx.launch, STAGING_VC, {"stack_image_tag": "latest"})
        messages = _messages_until_summary(client, launched["job"], seconds=60)
    finally:
        client.close()

    summary = messages.pop()
    events = sb.call(sb.awx.events, launched["job"])
    assert summary == {"group_name": "jobs", "unified_job_id": launched["job"], "final_counter": len(events)}
    assert sb.call(sb.awx.job, launched["job"])["event_processing_finished"] is True
    assert [m["status"] for m in messages] == ["pending", "waiting", "running", "successful"]
    template_id = sb.call(sb.awx.template, STAGING_VC).id
    for message in messages:
        assert message["group_name"] == "jobs"
        assert message["type"] == "job"
        assert message["unified_job_template_id"] == template_id
    assert messages[1]["instance_group_name"] == "default"
    job = sb.call(sb.awx.job, launched["job"])
    # the end's message carries AWX's own `finished` (microseconds, Z) of the job
    assert messages[-1]["finished"].startswith(job["finished"][:19])


def test_token_in_the_authorization_header_authenticates_the_handshake(make_sandbox):
    from websockets.sync.client import connect

    # the job stays pending (no playbook left running when the sandbox stops)
    sb = make_sandbox(speed=600, faults={"awx_jobs": [{"template": STAGING_VC, "outcome": "pending"}]})
    headers = {"Authorization": f"Bearer {sb.scenario.awx.token}", "Cookie": "csrftoken=chosen-by-the-client"}
    with connect(_ws_url(sb.urls["awx"]), additional_headers=headers, open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5)) == {"accept": True, "user": 1}
        # the XRF check: the subscription must carry the handshake's csrftoken cookie
        ws.send(json.dumps({"groups": {"jobs": ["status_changed"]}, "xrftoken": "another"}))
        assert json.loads(ws.recv(timeout=5)) == {"error": "access denied to channel"}
        ws.send(json.dumps({"groups": {"jobs": ["status_changed"]}, "xrftoken": "chosen-by-the-client"}))
        assert json.loads(ws.recv(timeout=5))["groups_current"] == ["jobs-status_changed"]
        sb.call(sb.awx.launch, STAGING_VC, {"stack_image_tag": "latest"})
        assert json.loads(ws.recv(timeout=5))["status"] == "pending"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-the-token"},
        {"Cookie": "awx_sessionid=made-up; csrftoken=x"},
        {"Cookie": 'token="awx_sandbox_token_0000000000000000"'},  # awxkit's token cookie: no AWX auth class reads it
    ],
    ids=["nothing", "wrong-token", "unknown-session", "token-cookie"],
)
def test_a_handshake_without_valid_credentials_is_refused_with_403(make_sandbox, headers):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    sb = make_sandbox(speed=600)
    with pytest.raises(InvalidStatus) as refused:
        connect(_ws_url(sb.urls["awx"]), additional_headers=headers, open_timeout=5)
    assert refused.value.response.status_code == 403


def test_login_refuses_a_missing_csrf_token_and_wrong_credentials(make_sandbox):
    import httpx

    sb = make_sandbox(speed=600)
    awx = sb.scenario.awx
    with httpx.Client(base_url=sb.urls["awx"]) as http:
        form = {"username": awx.username, "password": awx.password, "next": "/api/v2/"}
        assert http.post("/api/login/", data=form).status_code == 403
        csrf = http.get("/api/login/").cookies["csrftoken"]
        wrong = {**form, "password": "wrong"}
        assert http.post("/api/login/", data=wrong, headers={"X-CSRFToken": csrf}).status_code == 401
        answer = http.post("/api/login/", data=form, headers={"X-CSRFToken": csrf})
        assert answer.status_code == 302
        assert answer.headers["location"] == "/api/v2/"
        assert answer.headers["x-api-session-cookie-name"] == "awx_sessionid"
