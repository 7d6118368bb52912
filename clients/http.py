"""Shared HTTP behaviour of every client, in one place.

One ``httpx.Client`` per service with explicit timeouts (never ``None``), TLS verification on by default (a CA
bundle can be given), a ``User-Agent``, bounded retries with jittered exponential backoff for idempotent requests
(connection errors, 408/425/429/5xx) that honour ``Retry-After`` and GitHub's rate-limit reset up to a cap
(past it: ``RateLimited``), and logging of method, path, status and time only (never headers or bodies).
Retries use tenacity rather than a home-made loop.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from pydantic import SecretStr
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from clients.errors import ApiError, NotFound, RateLimited

logger = logging.getLogger(__name__)

USER_AGENT = "fragalysis-cd/0.1 (+https://github.com/xchem)"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class RetryPolicy:
    """How requests are retried.

    Attributes:
        attempts: tries in all, the first included.
        backoff_initial: the first backoff in seconds; it doubles each time up to ``backoff_max``.
        backoff_max: the longest backoff between two tries.
        jitter: up to this fraction of a backoff is added at random.
        max_retry_after: the longest ``Retry-After`` (or rate-limit reset) the client will wait; a longer one
            raises ``RateLimited`` at once.
        statuses: answers that are retried (for idempotent requests; non-idempotent ones only on 429).
    """

    attempts: int = 4
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    jitter: float = 0.5
    max_retry_after: float = 60.0
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({408, 425, 429, 500, 502, 503, 504}))

    def backoff(self, attempt: int) -> float:
        """The wait before try ``attempt + 1`` (``attempt`` counts from 1)."""
        base: float = min(self.backoff_max, self.backoff_initial * 2.0 ** (attempt - 1))
        return base * (1.0 + random.uniform(0.0, self.jitter))


NO_RETRY = RetryPolicy(attempts=1)


class TokenAuth(httpx.Auth):
    """``Authorization: <scheme> <token>``; the token stays a ``SecretStr`` until the header is written."""

    def __init__(self, token: SecretStr | str, scheme: str = "Bearer") -> None:
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        self._scheme = scheme

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"{self._scheme} {self._token.get_secret_value()}"
        yield request

    def __repr__(self) -> str:
        return f"TokenAuth(scheme={self._scheme!r}, token=**********)"


class BasicAuth(httpx.Auth):
    """HTTP Basic auth whose password never reaches a ``repr``."""

    def __init__(self, username: str, password: SecretStr | str) -> None:
        self.username = username
        self._password = password if isinstance(password, SecretStr) else SecretStr(password)

    def auth_flow(self, request: httpx.Request) -> Any:
        inner = httpx.BasicAuth(self.username, self._password.get_secret_value())
        yield from inner.auth_flow(request)

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, password=**********)"


class _Retry(Exception):
    """A retryable outcome: a connection error or a retryable status."""

    def __init__(self, reason: str, *, response: httpx.Response | None = None, wait: float | None = None) -> None:
        super().__init__(reason)
        self.response = response
        self.wait = wait


class HttpService:
    """One service's HTTP client: base URL, auth, timeouts, TLS, retries and error mapping.

    Args:
        base_url: the service's root (``https://awx.example.org``); paths are joined to it.
        service: a name for messages and logs ("AWX", "GitHub", ...).
        auth: an ``httpx.Auth`` (``TokenAuth``, ``BasicAuth``) or None.
        headers: extra default headers (never secrets: use ``auth``).
        timeout: an ``httpx.Timeout``; ``None`` is refused.
        verify: True, False, or the path of a CA bundle.
        retry: the ``RetryPolicy``.
        transport: an httpx transport (``httpx.MockTransport`` in unit tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        service: str,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        verify: bool | str = True,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if timeout is None:
            raise ValueError("an explicit timeout is required")
        self.service = service
        self.retry = retry or RetryPolicy()
        self.base_url = base_url.rstrip("/")
        ssl_verify: bool | ssl.SSLContext = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        self._client = httpx.Client(
            base_url=self.base_url,
            auth=auth,
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            timeout=timeout,
            verify=ssl_verify,
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"HttpService(service={self.service!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (for messages and links)."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        expected: tuple[int, ...] = (200,),
        idempotent: bool | None = None,
        retry: RetryPolicy | None = None,
    ) -> httpx.Response:
        """Send a request and return the response whose status is in ``expected``.

        Idempotent requests (GET, HEAD, PUT, DELETE unless told otherwise) are retried on connection errors
        and retryable statuses; others only on 429, which means the server did not act on them.

        Raises:
            RateLimited: the server asks for a longer wait than the policy's cap, or retries ran out on 429/403.
            NotFound: a 404 that was not expected.
            ApiError: any other unexpected status, or no answer after the retries.
        """
        method = method.upper()
        policy = retry or self.retry
        is_idempotent = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        last: dict[str, Any] = {}

        def attempt() -> httpx.Response:
            started = time.monotonic()
            try:
                response = self._client.request(
                    method, path, params=params, json=json, content=content, headers=headers
                )
            except httpx.TransportError as error:
                logger.info(
                    "%s %s %s -> %s after %.3fs",
                    self.service,
                    method,
                    path,
                    type(error).__name__,
                    time.monotonic() - started,
                )
                last["error"] = error
                if is_idempotent:
                    raise _Retry(type(error).__name__) from error
                raise self._no_answer(method, path, error) from error
            logger.info(
                "%s %s %s -> %s in %.3fs", self.service, method, path, response.status_code, time.monotonic() - started
            )
            if response.status_code in expected:
                return response
            wait = self._rate_limit_wait(response)
            if wait is not None and wait > policy.max_retry_after:
                raise self._rate_limited(method, path, response, wait)
            retryable = response.status_code in policy.statuses or wait is not None
            # A non-idempotent request is repeated only when the server says it did not act on it: 429, or
            # GitHub's 403 rate limit. A 503 with Retry-After may follow work done (e.g. an AWX launch).
            not_acted = response.status_code == 429 or (wait is not None and response.status_code == 403)
            if retryable and (is_idempotent or not_acted):
                response.read()
                raise _Retry(f"status {response.status_code}", response=response, wait=wait)
            raise self.error_for(method, path, response)

        retrying = Retrying(
            stop=stop_after_attempt(policy.attempts),
            wait=lambda state: self._wait(policy, state),
            retry=retry_if_exception(lambda error: isinstance(error, _Retry)),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retry as final:
            if final.response is None:
                raise self._no_answer(method, path, last.get("error")) from final
            if final.response.status_code in (403, 429):
                raise self._rate_limited(method, path, final.response, final.wait or 0.0) from None
            raise self.error_for(method, path, final.response) from None

    def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params).json()

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _wait(policy: RetryPolicy, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Retry) and error.wait is not None:
            return error.wait
        return policy.backoff(state.attempt_number)

    @staticmethod
    def _rate_limit_wait(response: httpx.Response) -> float | None:
        """Seconds the server asks us to wait: ``Retry-After`` (seconds or a date), or GitHub's exhausted
        primary limit (403/429 with ``x-ratelimit-remaining: 0``: wait until ``x-ratelimit-reset``)."""
        if response.status_code not in (403, 429, 503):
            return None
        retry_after = response.headers.get("retry-after")
        if retry_after:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                try:
                    return max(0.0, parsedate_to_datetime(retry_after).timestamp() - time.time())
                except (TypeError, ValueError):
                    return None
        if response.headers.get("x-ratelimit-remaining") == "0" and response.status_code in (403, 429):
            try:
                return max(0.0, float(response.headers["x-ratelimit-reset"]) - time.time()) + 1.0
            except (KeyError, ValueError):
                return None
        return None

    def _rate_limited(self, method: str, path: str, response: httpx.Response, wait: float) -> RateLimited:
        url = self.url(path)
        detail = service_detail(response)
        return RateLimited(
            f"{self.service} rate limit: {method} {url} answered {response.status_code}"
            + (f" ({detail})" if detail else "")
            + f"; it asks to wait {wait:.0f} s (we wait at most {self.retry.max_retry_after:.0f} s)",
            retry_after=wait,
            status=response.status_code,
            url=url,
            detail=detail,
        )

    def _no_answer(self, method: str, path: str, error: BaseException | None) -> ApiError:
        url = self.url(path)
        kind = type(error).__name__ if error else "no answer"
        return ApiError(f"{self.service}: {method} {url} got no answer ({kind})", url=url)

    def error_for(self, method: str, path: str, response: httpx.Response) -> ApiError:
        """The error for an unexpected answer, quoting the service's own words."""
        url = self.url(path)
        detail = service_detail(response)
        message = f"{self.service}: {method} {url} answered {response.status_code}"
        if detail:
            message += f": {detail}"
        cls = NotFound if response.status_code == 404 else ApiError
        return cls(message, status=response.status_code, url=url, detail=detail)


def service_detail(response: httpx.Response) -> str | None:
    """The service's explanation in an error body: AWX ``detail`` or field errors, GitHub ``message``,
    Kubernetes ``message``, registry ``errors[].message``; else the start of the text."""
    try:
        response.read()
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:200] or None
    if isinstance(body, dict):
        for key in ("detail", "message"):
            if isinstance(body.get(key), str):
                return str(body[key])
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
        if body:
            return "; ".join(f"{key}: {value}" for key, value in body.items())[:500]
    return str(body)[:500] if body else None
