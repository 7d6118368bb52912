"""Registry errors as distribution serves them: ``{"errors": [{"code", "message", "detail"}]}``.

Codes, messages and statuses follow the Registry HTTP API v2 error table (distribution's ``registry/api/v2``
and ``errcode`` packages). The body is Go's ``json.Encoder`` output: compact, with a trailing newline, and the
response status is the first error's status. ``detail`` is left out entirely where distribution leaves it out.
"""

from __future__ import annotations

import json
from typing import Any, Final

from starlette.responses import Response

API_VERSION_HEADER: Final = {"Docker-Distribution-API-Version": "registry/2.0"}
JSON_TYPE: Final = "application/json; charset=utf-8"

# code -> (message, HTTP status)
CODES: Final[dict[str, tuple[str, int]]] = {
    "BLOB_UNKNOWN": ("blob unknown to registry", 404),
    "BLOB_UPLOAD_INVALID": ("blob upload invalid", 404),
    "BLOB_UPLOAD_UNKNOWN": ("blob upload unknown to registry", 404),
    "DIGEST_INVALID": ("provided digest did not match uploaded content", 400),
    "MANIFEST_BLOB_UNKNOWN": ("blob unknown to registry", 400),
    "MANIFEST_INVALID": ("manifest invalid", 400),
    "MANIFEST_UNKNOWN": ("manifest unknown", 404),
    "NAME_INVALID": ("invalid repository name", 400),
    "NAME_UNKNOWN": ("repository name not known to registry", 404),
    "SIZE_INVALID": ("provided length did not match content length", 400),
    "UNAUTHORIZED": ("authentication required", 401),
    "DENIED": ("requested access to the resource is denied", 403),
    "UNSUPPORTED": ("The operation is unsupported.", 405),
    "TOOMANYREQUESTS": ("too many requests", 429),
    "UNKNOWN": ("unknown error", 500),
    "UNAVAILABLE": ("service unavailable", 503),
}


class _NoDetail:
    def __repr__(self) -> str:
        return "NO_DETAIL"


NO_DETAIL: Final = _NoDetail()
"""Marks an error without a ``detail`` member (distribution omits it for some errors)."""


def error_entry(code: str, detail: Any = NO_DETAIL, message: str | None = None) -> dict[str, Any]:
    """One member of the ``errors`` list."""
    entry: dict[str, Any] = {"code": code, "message": message or CODES[code][0]}
    if detail is not NO_DETAIL:
        entry["detail"] = detail
    return entry


class RegistryError(Exception):
    """Raised by handlers; turned into the JSON error response (status of the first error)."""

    def __init__(self, *entries: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(", ".join(entry["code"] for entry in entries))
        self.entries = list(entries)
        self.headers = headers or {}

    @classmethod
    def of(cls, code: str, detail: Any = NO_DETAIL, message: str | None = None) -> RegistryError:
        return cls(error_entry(code, detail, message))

    @property
    def status(self) -> int:
        return CODES[self.entries[0]["code"]][1]

    def response(self) -> Response:
        return errors_response(self.entries, self.status, self.headers)


def go_json(data: Any) -> bytes:
    """JSON as Go's ``json.Encoder`` writes it: compact, with a trailing newline."""
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


def errors_response(entries: list[dict[str, Any]], status: int, headers: dict[str, str] | None = None) -> Response:
    """The JSON error response (uvicorn drops the body of a HEAD answer but keeps its Content-Length)."""
    return Response(
        go_json({"errors": entries}),
        status_code=status,
        headers={**API_VERSION_HEADER, **(headers or {})},
        media_type=JSON_TYPE,
    )


def plain_response(text: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """Go's ``http.NotFound``/``http.Error`` answers (an unknown route, a wrong method)."""
    return Response(
        text.encode(),
        status_code=status,
        headers={**API_VERSION_HEADER, "X-Content-Type-Options": "nosniff", **(headers or {})},
        media_type="text/plain; charset=utf-8",
    )


def not_found_page() -> Response:
    return plain_response("404 page not found\n", 404)
