"""Kubernetes API errors as ``Status`` objects (the shape every real apiserver error has).

See the API conventions: https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#response-status-kind
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response


class ApiError(Exception):
    """An error the apiserver answers with a ``Status`` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        """The ``Status`` object (also used as the object of a watch ``ERROR`` event)."""
        return status_object(self.code, self.reason, self.message, self.details)

    def response(self) -> Response:
        return JSONResponse(self.status(), status_code=self.code, headers=self.headers)


def status_object(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def _details(name: str, group: str, plural: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": plural}
    if group:
        details["group"] = group
    return details


def _qualified(group: str, plural: str) -> str:
    # the apiserver names the resource "statefulsets.apps" but "pods" for the core group
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_qualified(group, plural)} "{name}" not found', _details(name, group, plural))


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{_qualified(group, plural)} "{name}" already exists', _details(name, group, plural)
    )


def conflict(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(group, plural)} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        _details(name, group, plural),
    )


def precondition_failed(group: str, plural: str, namespace: str, name: str, detail: str) -> ApiError:
    """409 Conflict for a write whose ``preconditions`` (uid, resourceVersion) no longer hold, worded as the
    apiserver's storage layer words it."""
    key = "/".join(part for part in ("/registry", plural, namespace, name) if part)
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(group, plural)} "{name}": StorageError: invalid object, '
        f"Code: 4, Key: {key}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: {detail}",
        _details(name, group, plural),
    )


def invalid(group: str, kind: str, plural: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 Invalid; ``causes`` are (field, message) pairs such as ("spec.replicas", "Invalid value: -1: ...")."""
    qualified_kind = f"{kind}.{group}" if group else kind
    text = ", ".join(f"{field}: {message}" for field, message in causes)
    details = _details(name, group, plural)
    details["causes"] = [
        {"reason": _cause_reason(message), "message": message, "field": field} for field, message in causes
    ]
    return ApiError(422, "Invalid", f'{qualified_kind} "{name}" is invalid: {text}', details)


def _cause_reason(message: str) -> str:
    for prefix, reason in (
        ("Required value", "FieldValueRequired"),
        ("Forbidden", "FieldValueForbidden"),
        ("Unsupported value", "FieldValueNotSupported"),
    ):
        if message.startswith(prefix):
            return reason
    return "FieldValueInvalid"


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unknown_path() -> ApiError:
    # what the apiserver answers for a path no handler serves
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def unsupported_patch(content_type: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, "
        f"application/strategic-merge-patch+json (got {content_type or 'none'})",
    )


def fault_status(code: int, message: str, headers: dict[str, str]) -> ApiError:
    """An injected HTTP fault, shaped as the apiserver would answer it."""
    if code == 429:
        retry = headers.get("retry-after", "1")
        details: dict[str, Any] = {"retryAfterSeconds": int(retry) if retry.isdigit() else 1}
        return ApiError(429, "TooManyRequests", f"Too many requests, please try again later. ({message})", details)
    if code == 503:
        return ApiError(503, "ServiceUnavailable", f"the server is currently unable to handle the request ({message})")
    if code == 504:
        return ApiError(504, "Timeout", f"the server was unable to return a response in the time allotted ({message})")
    if code >= 500:
        return ApiError(
            code, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]}
        )
    return ApiError(code, "BadRequest", message)
