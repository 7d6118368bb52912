"""HttpService: timeouts required, TLS verified by default, bounded retries, Retry-After and rate-limit resets
honoured up to a cap, non-idempotent requests repeated only when the server did not act, no secret in logs."""

from __future__ import annotations

import logging
import re
import socketserver
import ssl
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest

from clients.errors import ApiError, NotFound, RateLimited
from clients.http import USER_AGENT, BasicAuth, HttpService, TokenAuth
from clients.retry import RetryPolicy
from tests.clients.routes import Routes, reply

FAST = RetryPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.02, jitter=0.0, max_retry_after=2.0)
CANARY = "canary-TOKEN-5f3a9c0e"


def service(routes: Routes, **kwargs: object) -> HttpService:
    return HttpService(
        "https://api.example.org",
        service="Example",
        auth=TokenAuth(CANARY),
        retry=FAST,
        transport=routes.transport(),
        **kwargs,  # type: ignore[arg-type]
    )


def test_an_explicit_timeout_is_required() -> None:
    with pytest.raises(ValueError, match="timeout"):
        HttpService("https://x.example", service="X", timeout=None)  # type: ignore[arg-type]


def test_tls_is_verified_by_default() -> None:
    with HttpService("https://x.example", service="X") as http:
        pool = http._client._transport._pool  # type: ignore[attr-defined]
        assert pool._ssl_context.verify_mode == ssl.CERT_REQUIRED
        assert pool._ssl_context.check_hostname is True


def test_a_tls_failure_is_named_and_not_retried() -> None:
    """https:// to a server that speaks plain HTTP: the handshake fails the same way every time, so it is not tried
    again, and the message says what the TLS layer said."""
    connections: list[int] = []

    class Plain(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            connections.append(1)
            self.request.recv(1024)
            self.request.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    with socketserver.TCPServer(("127.0.0.1", 0), Plain) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"https://127.0.0.1:{server.server_address[1]}"
        with HttpService(url, service="Example", retry=FAST) as http, pytest.raises(ApiError) as caught:
            http.get_json("/thing")
        server.shutdown()
    assert f"Example: GET {url}/thing got no answer (ConnectError: " in str(caught.value)
    assert "SSL" in str(caught.value)
    assert len(connections) == 1


def test_get_is_retried_on_5xx_and_the_attempts_are_bounded() -> None:
    routes = Routes().add("GET", "/thing", reply(503, {"message": "down for maintenance"}))
    with service(routes) as http, pytest.raises(ApiError, match="answered 503: down for maintenance") as caught:
        http.get_json("/thing")
    assert routes.count("GET", "/thing") == FAST.attempts
    assert caught.value.status == 503
    assert caught.value.url == "https://api.example.org/thing"


def test_get_recovers_after_a_dropped_connection() -> None:
    routes = Routes().add("GET", "/thing", httpx.ReadError("connection reset"), reply(200, {"ok": True}))
    with service(routes) as http:
        assert http.get_json("/thing") == {"ok": True}
    assert routes.count("GET", "/thing") == 2


def test_connection_errors_are_bounded_and_reported_without_an_answer() -> None:
    routes = Routes().add("GET", "/thing", httpx.ConnectError("refused"))
    with service(routes) as http, pytest.raises(ApiError, match="got no answer") as caught:
        http.get_json("/thing")
    assert caught.value.status is None
    assert routes.count("GET", "/thing") == FAST.attempts


def test_post_is_not_repeated_after_a_5xx_or_a_dropped_connection() -> None:
    routes = Routes().add("POST", "/launch", reply(503, {"detail": "busy"}, {"retry-after": "0"}))
    with service(routes) as http, pytest.raises(ApiError) as caught:
        http.request("POST", "/launch", json={}, expected=(201,))
    assert caught.value.status == 503
    assert routes.count("POST", "/launch") == 1

    routes = Routes().add("POST", "/launch", httpx.ReadError("reset"))
    with service(routes) as http, pytest.raises(ApiError, match="got no answer"):
        http.request("POST", "/launch", json={}, expected=(201,))
    assert routes.count("POST", "/launch") == 1


def test_post_is_repeated_after_429_which_means_the_server_did_not_act() -> None:
    routes = Routes().add("POST", "/launch", reply(429, {"detail": "slow down"}, {"retry-after": "0"}), reply(201, {}))
    with service(routes) as http:
        assert http.request("POST", "/launch", json={}, expected=(201,)).status_code == 201
    assert routes.count("POST", "/launch") == 2


def test_retry_after_is_honoured() -> None:
    routes = Routes().add("GET", "/thing", reply(429, {}, {"retry-after": "0.3"}), reply(200, {"ok": 1}))
    started = time.monotonic()
    with service(routes) as http:
        assert http.get_json("/thing") == {"ok": 1}
    assert time.monotonic() - started >= 0.3  # a lower bound only: the wait really happened
    assert routes.count("GET", "/thing") == 2


def test_a_retry_after_past_the_cap_raises_rate_limited_at_once() -> None:
    routes = Routes().add("GET", "/thing", reply(429, {"message": "too many"}, {"retry-after": "3600"}))
    with service(routes) as http, pytest.raises(RateLimited, match="wait 3600 s") as caught:
        http.get_json("/thing")
    assert caught.value.retry_after == 3600
    assert routes.count("GET", "/thing") == 1
    # when to come back, not only how long: the reset's moment in UTC, an hour from now
    found = re.search(r"the limit resets at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", str(caught.value))
    assert found, str(caught.value)
    reset = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert abs((reset - datetime.now(UTC)).total_seconds() - 3600) < 60


def test_429_beyond_the_attempts_raises_rate_limited() -> None:
    routes = Routes().add("GET", "/thing", reply(429, {}, {"retry-after": "0"}))
    with service(routes) as http, pytest.raises(RateLimited):
        http.get_json("/thing")
    assert routes.count("GET", "/thing") == FAST.attempts


def test_github_rate_limit_reset_is_waited_for_when_near() -> None:
    exhausted = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) - 1)}
    routes = Routes().add("GET", "/rate", reply(403, {"message": "API rate limit exceeded"}, exhausted), reply(200, {}))
    with service(routes) as http:
        assert http.get_json("/rate") == {}
    assert routes.count("GET", "/rate") == 2


def test_github_rate_limit_reset_past_the_cap_raises_rate_limited() -> None:
    exhausted = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 3000)}
    routes = Routes().add("GET", "/rate", reply(403, {"message": "API rate limit exceeded for user"}, exhausted))
    with service(routes) as http, pytest.raises(RateLimited, match="API rate limit exceeded") as caught:
        http.get_json("/rate")
    assert caught.value.retry_after > 2900
    assert routes.count("GET", "/rate") == 1


def test_a_403_without_rate_limit_headers_is_not_retried() -> None:
    routes = Routes().add("GET", "/private", reply(403, {"message": "Resource not accessible by integration"}))
    with service(routes) as http, pytest.raises(ApiError, match="Resource not accessible") as caught:
        http.get_json("/private")
    assert not isinstance(caught.value, RateLimited)
    assert routes.count("GET", "/private") == 1


def test_404_is_not_found_with_the_service_words() -> None:
    routes = Routes().add("GET", "/missing", reply(404, {"detail": "Not found."}))
    with service(routes) as http, pytest.raises(NotFound, match=r"GET https://api.example.org/missing answered 404"):
        http.get_json("/missing")
    assert routes.count("GET", "/missing") == 1


def test_user_agent_and_auth_are_sent() -> None:
    routes = Routes().add("GET", "/me", reply(200, {}))
    with service(routes) as http:
        http.get_json("/me")
    sent = routes.requests[0]
    assert sent.headers["user-agent"] == USER_AGENT
    assert sent.headers["authorization"] == f"Bearer {CANARY}"


def test_no_secret_in_logs_errors_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    routes = Routes().add("GET", "/thing", reply(401, {"detail": "Invalid token."}))
    with service(routes) as http, pytest.raises(ApiError) as caught:
        http.get_json("/thing", params={"q": "x"})
    basic = BasicAuth("admin", CANARY)
    texts = [str(caught.value), repr(caught.value), repr(http), str(http), repr(TokenAuth(CANARY)), repr(basic)]
    texts += [record.getMessage() for record in caplog.records]
    assert any("GET /thing -> 401" in record.getMessage() for record in caplog.records)
    assert all(CANARY not in text for text in texts)


def test_a_request_can_carry_its_own_auth_in_place_of_the_services() -> None:
    routes = Routes().add("GET", "/token", reply(200, {})).add("GET", "/me", reply(200, {}))
    with service(routes) as http:
        http.request("GET", "/token", auth=BasicAuth("robot", "pw"))
        http.get_json("/me")
    assert routes.sent("GET", "/token")[0].headers["authorization"] == "Basic cm9ib3Q6cHc="  # robot:pw
    assert routes.sent("GET", "/me")[0].headers["authorization"] == f"Bearer {CANARY}"
