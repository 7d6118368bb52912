"""Docker Hub's token authentication: the Bearer challenge on the registry and the token endpoint.

See distribution's ``docs/spec/auth/token.md`` and ``registry/auth/token/accesscontroller.go``: a request
without a valid token gets 401 with ``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` (plus
``error="invalid_token"`` for a bad token and ``error="insufficient_scope"`` for one lacking an action);
the client fetches ``GET <realm>?service=...&scope=repository:<name>:pull,push`` (Basic credentials for
more than anonymous access) and retries with ``Authorization: Bearer <token>``. Tokens are HS256 JWTs with
distribution's claim set (``iss``, ``sub``, ``aud``, ``exp``, ``nbf``, ``iat``, ``jti``, ``access``).
Expiry is real time (Docker Hub: 300 s), not the sandbox's scaled clock, like any wall-clock credential.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from sandbox.registry.errors import RegistryError, error_entry

SERVICE: Final = "registry.sandbox"
ISSUER: Final = "sandbox-registry-token-issuer"
EXPIRES_IN: Final = 300
_ACTIONS: Final = ("pull", "push", "delete", "*")


@dataclass(frozen=True)
class Access:
    """One resource action a request needs, e.g. ``repository:xchem/fragalysis-stack:push``."""

    type: str
    name: str
    action: str


def request_access(method: str, name: str) -> list[Access]:
    """What distribution asks of a repository request: GET/HEAD pull; PUT/POST/PATCH pull and push;
    DELETE delete."""
    if method in ("GET", "HEAD"):
        actions = ["pull"]
    elif method == "DELETE":
        actions = ["delete"]
    else:
        actions = ["pull", "push"]
    return [Access("repository", name, action) for action in actions]


def scope_param(access: list[Access]) -> str:
    """``repository:<name>:pull,push`` (space-separated per resource), as in the challenge."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for item in access:
        grouped.setdefault((item.type, item.name), []).append(item.action)
    return " ".join(f"{type_}:{name}:{','.join(actions)}" for (type_, name), actions in grouped.items())


def parse_scopes(values: list[str]) -> list[tuple[str, str, list[str]]]:
    """``scope`` parameters (each may hold several space-separated scopes) -> ``(type, name, actions)``."""
    scopes = []
    for value in values:
        for scope in value.split():
            type_, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if type_ and name:
                scopes.append((type_, name, [a for a in actions.split(",") if a]))
    return scopes


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenService:
    """Issues and checks tokens for one registry (``realm`` is its own ``/token`` URL)."""

    def __init__(self, secret: bytes, users: dict[str, str], realm: str, bits: Any) -> None:
        self._secret = secret
        self._users = users
        self.realm = realm
        self._bits = bits
        """Callable returning random bits for token ids (the registry's seeded generator)."""

    # ------------------------------------------------------------ the token endpoint

    def authenticate(self, authorization: str | None) -> str | None:
        """The user of a Basic ``Authorization`` header; ``""`` for anonymous.

        Returns None when credentials are given but wrong.
        """
        if not authorization:
            return ""
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return ""
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        expected = self._users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return user

    def grant(self, user: str, scopes: list[tuple[str, str, list[str]]]) -> list[dict[str, Any]]:
        """Anonymous clients may pull any repository (like public Docker Hub repositories); users may also
        push, delete and list the catalog."""
        access = []
        for type_, name, actions in scopes:
            allowed: tuple[str, ...]
            if type_ == "repository":
                allowed = _ACTIONS if user else ("pull",)
            elif type_ == "registry" and name == "catalog":
                allowed = ("*",) if user else ()
            else:
                allowed = ()
            access.append({"type": type_, "name": name, "actions": [a for a in actions if a in allowed]})
        return access

    def issue(self, user: str, access: list[dict[str, Any]]) -> dict[str, Any]:
        """The token endpoint's answer: ``token`` and ``access_token`` (the same JWT), ``expires_in``,
        ``issued_at``."""
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user,
            "aud": SERVICE,
            "exp": now + EXPIRES_IN,
            "nbf": now - 1,
            "iat": now,
            "jti": f"{self._bits(64):016x}",
            "access": access,
        }
        header = {"typ": "JWT", "alg": "HS256"}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = hmac.new(self._secret, signing_input.encode(), hashlib.sha256).digest()
        token = f"{signing_input}.{_b64(signature)}"
        issued = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"token": token, "access_token": token, "expires_in": EXPIRES_IN, "issued_at": issued}

    # ------------------------------------------------------------ the registry side

    def claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this service issued and that has not expired, else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            signature = _unb64(parts[2])
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, binascii.Error):
            return None
        expected = hmac.new(self._secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(signature, expected) or not isinstance(claims, dict):
            return None
        now = time.time()
        if claims.get("aud") != SERVICE or not claims.get("nbf", 0) <= now < claims.get("exp", 0):
            return None
        return claims

    def check(self, request: Request, access: list[Access]) -> None:
        """Let the request through, or raise the 401 with the challenge that tells the client what to fetch.

        Raises:
            RegistryError: ``UNAUTHORIZED`` with ``WWW-Authenticate``.
        """
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        error: str | None = None
        if scheme.lower() == "bearer" and token.strip():
            claims = self.claims(token.strip())
            if claims is None:
                error = "invalid_token"
            else:
                granted = {
                    (entry.get("type"), entry.get("name"), action)
                    for entry in claims.get("access", [])
                    for action in entry.get("actions", [])
                }
                if all((a.type, a.name, a.action) in granted or (a.type, a.name, "*") in granted for a in access):
                    return
                error = "insufficient_scope"
        raise self.challenge(access, error)

    def challenge(self, access: list[Access], error: str | None = None) -> RegistryError:
        header = f'Bearer realm="{self.realm}",service="{SERVICE}"'
        if access:
            header += f',scope="{scope_param(access)}"'
        if error:
            header += f',error="{error}"'
        detail: Any = [{"Type": a.type, "Class": "", "Name": a.name, "Action": a.action} for a in access] or None
        return RegistryError(error_entry("UNAUTHORIZED", detail), headers={"WWW-Authenticate": header})


def token_error(status: int, details: str) -> Response:
    """Docker Hub's token endpoint errors: ``{"details": "..."}``."""
    return Response(
        json.dumps({"details": details}).encode(),
        status_code=status,
        media_type="application/json",
    )
