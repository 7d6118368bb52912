"""Shared HTTP behaviour of every client, in one place.

One ``httpx.Client`` per service with explicit timeouts (never ``None``), TLS verification on by default (a CA
bundle can be given), a ``User-Agent``, bounded retries with jittered exponential backoff for idempotent requests
(connection errors, 408/425/429/5xx) that honour ``Retry-After`` and GitHub's rate-limit reset up to a cap
(past it: ``RateLimited``), as ``clients.retry.RetryPolicy`` decides, and logging of method, path, status and time
only (never headers or bodies). A certificate that fails verification is a ``TlsVerificationFailed`` at once (no
retry); a client built with verification off says so in a warning, once per process for each service and URL.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import SecretStr

from clients.errors import ApiError, NotFound, RateLimited, TlsVerificationFailed
from clients.retry import RATE_LIMIT_STATUSES, Retry, RetryPolicy, requested_wait, resets_at

logger = logging.getLogger(__name__)

USER_AGENT = "fragalysis-cd/0.1 (+https://github.com/xchem)"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class Closable:
    """A client that releases what it holds (connections) on ``close()``, and at the end of a ``with`` block."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


class HttpService(Closable):
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
        if verify is False:
            warn_tls_off(service, self.base_url)
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
        auth: httpx.Auth | None = None,
    ) -> httpx.Response:
        """Send a request and return the response whose status is in ``expected``.

        Idempotent requests (GET, HEAD, PUT, DELETE unless told otherwise) are retried on connection errors
        and retryable statuses; others only on 429, which means the server did not act on them. ``auth``
        replaces the service's own for this request (e.g. a registry's token for one repository).

        Raises:
            RateLimited: the server asks for a longer wait than the policy's cap, or retries ran out on 429/403.
            NotFound: a 404 that was not expected.
            ApiError: any other unexpected status, or no answer after the retries.
        """
        method = method.upper()
        policy = retry or self.retry
        is_idempotent = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        request_auth = httpx.USE_CLIENT_DEFAULT if auth is None else auth

        def send() -> httpx.Response:
            started = time.monotonic()
            try:
                response = self._client.request(
                    method, path, params=params, json=json, content=content, headers=headers, auth=request_auth
                )
            except httpx.TransportError as error:
                elapsed = time.monotonic() - started
                logger.info("%s %s %s -> %s after %.3fs", self.service, method, path, type(error).__name__, elapsed)
                refused = certificate_error(error)
                if refused is not None:
                    raise tls_failure(self.service, f"{method} {self.url(path)}", self.url(path), refused) from error
                no_answer = self._no_answer(method, path, error)
                # a failed TLS handshake (a certificate, a server that speaks plain HTTP) fails the same way again
                if policy.should_retry(None, idempotent=is_idempotent) and not _is_tls_failure(error):
                    raise Retry(no_answer) from error
                raise no_answer from error
            elapsed = time.monotonic() - started
            logger.info("%s %s %s -> %s in %.3fs", self.service, method, path, response.status_code, elapsed)
            status = response.status_code
            if status in expected:
                return response
            wait = requested_wait(status, response.headers)
            if wait is not None and policy.waits_too_long(wait):
                raise self._rate_limited(method, path, response, wait, policy)
            if policy.should_retry(status, idempotent=is_idempotent, wait=wait):
                if status in RATE_LIMIT_STATUSES:
                    raise Retry(self._rate_limited(method, path, response, wait or 0.0, policy), wait)
                raise Retry(self.error_for(method, path, response), wait)
            raise self.error_for(method, path, response)

        return policy.call(send)

    def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params).json()

    # ---------------------------------------------------------------- helpers

    def _rate_limited(
        self, method: str, path: str, response: httpx.Response, wait: float, policy: RetryPolicy
    ) -> RateLimited:
        url = self.url(path)
        detail = service_detail(response)
        return RateLimited(
            f"{self.service} rate limit: {method} {url} answered {response.status_code}"
            + (f" ({detail})" if detail else "")
            + f"; it asks to wait {wait:.0f} s: the limit resets at {resets_at(wait)} "
            + f"(we wait at most {policy.max_retry_after:.0f} s)",
            retry_after=wait,
            status=response.status_code,
            url=url,
            detail=detail,
        )

    def _no_answer(self, method: str, path: str, error: BaseException | None) -> ApiError:
        url = self.url(path)
        # the transport's own words say what went wrong (a TLS handshake, a refused connection), never a header
        kind = (f"{type(error).__name__}: {error}" if str(error) else type(error).__name__) if error else "no answer"
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


_tls_off_warned: set[tuple[str, str]] = set()
_tls_off_lock = threading.Lock()


def warn_tls_off(service: str, url: str) -> None:
    """Warn (once per process for each service and URL) that TLS certificates of ``url`` are not verified."""
    shown = without_credentials(url)
    with _tls_off_lock:
        if (service, shown) in _tls_off_warned:
            return
        _tls_off_warned.add((service, shown))
    logger.warning(
        "%s %s: TLS certificate verification is OFF: a machine in between can read and change the traffic, "
        "credentials included (give the server's CA instead: a block's ca_bundle, a kubeconfig's "
        "certificate-authority-data)",
        service,
        shown,
    )


def without_credentials(url: str) -> str:
    """``url`` without a user or password in its authority (for logs and messages)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def certificate_error(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate-verification failure behind a transport error (httpx's, urllib3's), or None."""
    for cause in _causes(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
    return None


def _causes(error: BaseException) -> Iterator[BaseException]:
    # httpx chains the ssl error as __cause__; urllib3's MaxRetryError keeps it in ``reason``
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        pending += [e for e in (current.__cause__, current.__context__, reason) if isinstance(e, BaseException)]


def tls_failure(service: str, what: str, url: str, error: ssl.SSLCertVerificationError) -> TlsVerificationFailed:
    """The error for a certificate that failed verification: names the service, what was asked and the URL."""
    reason = error.verify_message or error.reason or str(error)
    return TlsVerificationFailed(
        f"{service}: {what}: TLS certificate verification failed ({reason}); is the server's CA given "
        f"(ca_bundle, or the kubeconfig's certificate-authority-data)?",
        url=url,
        detail=str(reason),
    )


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


def _is_tls_failure(error: BaseException) -> bool:
    """Whether a transport error comes from the TLS layer (``ssl.SSLError`` somewhere in its chain)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
