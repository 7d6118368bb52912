"""GitHub's own OpenAPI descriptions, and checks of answers and webhook deliveries against them.

``make specs`` fetches them with npm (``@octokit/openapi`` for the REST API, OpenAPI 3.0 with ``nullable``;
``@octokit/openapi-webhooks`` for the webhook payloads, OpenAPI 3.1) into ``.specs/``. Without them a test skips
with the reason, except under CI (``CI=true``), where it fails.

Schemas are validated with ``openapi-schema-validator`` (``jsonschema`` with OpenAPI's dialects); ``$ref``s resolve
inside the whole description through a ``referencing`` registry. Formats are checked too (``date-time``, ``uri``
with ``rfc3986-validator``, ``int64``, ...).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from jsonschema import validators
from openapi_schema_validator import OAS30Validator, OAS31Validator, oas30_format_checker, oas31_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT202012

SPECS = Path(__file__).resolve().parents[2] / ".specs"
REST_FILE = SPECS / "api.github.com.json"
WEBHOOKS_FILE = SPECS / "webhooks.api.github.com.json"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PARAMETER = re.compile(r"\{[^}]*\}")


def _nullable_enum(validator: Any, enums: Any, instance: Any, schema: dict[str, Any]) -> Any:
    # OpenAPI 3.0.3 reads ``nullable`` strictly (null must be listed in ``enum`` too), but GitHub's description
    # marks e.g. a job's ``conclusion`` nullable beside an enum without null, and GitHub answers null until the
    # job completes; its own typed clients (@octokit/openapi-types) read ``nullable`` as "or null" there.
    if instance is None and schema.get("nullable") is True:
        return
    yield from OAS30Validator.VALIDATORS["enum"](validator, enums, instance, schema)


GitHubOAS30Validator = validators.extend(OAS30Validator, {"enum": _nullable_enum})
"""OpenAPI 3.0 as GitHub's description means it (see ``_nullable_enum``)."""


def load(path: Path) -> dict[str, Any]:
    """A description fetched by ``make specs``; a missing one skips the test (fails it under CI)."""
    if not path.is_file():
        why = "npm is not installed" if shutil.which("npm") is None else "`make specs` has not fetched it"
        reason = f"GitHub's OpenAPI description {path.name} is missing from {SPECS} ({why}; `make test` fetches it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) as a URI fragment."""
    escaped = "/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)
    return "#" + quote(escaped, safe="/~")


def skeleton(path: str) -> str:
    """A path with every parameter blanked: ``/repos/{owner}/{repo}`` and ``/repos/{a}/{b:path}`` are alike."""
    return PARAMETER.sub("{}", path)


def schema_errors(validator: Any, body: Any) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(body)'}: {error.message[:300]}"
        for error in validator.iter_errors(body)
    ]


class RestDescription:
    """``@octokit/openapi``'s ``api.github.com.json``: which operations exist and what they answer."""

    URI = "urn:octokit:openapi:api.github.com"

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.version = document["info"]["version"]
        self.registry: Registry[Any] = Registry().with_resource(
            self.URI, Resource(contents=document, specification=DRAFT4)
        )
        self._skeletons = {skeleton(template): template for template in document["paths"]}
        matchers = []
        for template in document["paths"]:
            regex = "".join(
                "[^/]+" if PARAMETER.fullmatch(part) else re.escape(part) for part in re.split(r"(\{[^}]*\})", template)
            )
            literal = len(PARAMETER.sub("", template))
            matchers.append((literal, template, re.compile(regex)))
        # a concrete path matches before a templated one (OpenAPI 3.0 "Path Templating Matching")
        self._matchers = sorted(matchers, key=lambda item: -item[0])

    def template_of_route(self, route_path: str) -> str | None:
        """The described path template of a server route such as ``/repos/{owner}/{repo}/actions/runs/{id:int}``."""
        return self._skeletons.get(skeleton(route_path))

    def template_of(self, path: str) -> str | None:
        """The described path template that a request path falls under."""
        return next((template for _, template, regex in self._matchers if regex.fullmatch(path)), None)

    def methods(self, template: str) -> set[str]:
        return {method.upper() for method in self.document["paths"][template] if method in METHODS}

    def generic_error(self, status: int) -> str:
        return "validation-error" if status == 422 else "basic-error"

    def check(self, method: str, template: str, status: int, content_type: str | None, body: bytes) -> list[str]:
        """Errors of one answer against the description's response for ``method template status``; a status the
        description does not list for the operation is held to its generic ``basic-error``/``validation-error``."""
        errors = self._answer_errors(method, template, status, content_type, body)
        return errors + (_missing_error_fields(body) if status >= 400 else [])

    def _answer_errors(
        self, method: str, template: str, status: int, content_type: str | None, body: bytes
    ) -> list[str]:
        operation = self.document["paths"][template].get(method.lower())
        if operation is None:
            if status < 400:
                return [f"the description has no {method} {template}, yet the answer is {status}"]
            return self._check_generic(status, content_type, body)
        responses = operation["responses"]
        response = responses.get(str(status)) or responses.get(f"{status // 100}XX") or responses.get("default")
        if response is None:
            if status == 304:
                # any conditional GET may be answered 304 Not Modified, which has no body
                return [] if not body else ["304 Not Modified with a body"]
            if status < 400:
                return [f"status {status} is not among the described {sorted(responses)}"]
            return self._check_generic(status, content_type, body)
        where = ("paths", template, method.lower(), "responses", str(status))
        if "$ref" in response:
            ref = response["$ref"]
            where = tuple(ref.removeprefix("#/").split("/"))
            response = self._follow(ref)
        content = response.get("content")
        if not content:
            return [] if not body else [f"{status} is described without a body, yet the answer has one"]
        media = (content_type or "").split(";")[0].strip()
        if media not in content:
            return [f"content type {content_type!r} is not among the described {sorted(content)}"]
        if "schema" not in content[media]:
            return []
        return self._validate((*where, "content", media, "schema"), body)

    def check_generic_error(self, status: int, content_type: str | None, body: bytes) -> list[str]:
        """An error answer where no operation applies (an unknown path)."""
        return self._check_generic(status, content_type, body) + _missing_error_fields(body)

    def _check_generic(self, status: int, content_type: str | None, body: bytes) -> list[str]:
        if not (content_type or "").startswith("application/json"):
            return [f"error {status} with content type {content_type!r}, not application/json"]
        return self._validate(("components", "schemas", self.generic_error(status)), body)

    def _follow(self, ref: str) -> dict[str, Any]:
        node: Any = self.document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return dict(node)

    def _validate(self, where: tuple[str, ...], body: bytes) -> list[str]:
        data = _json(body)
        if data is _INVALID:
            return [f"(body): not JSON: {body[:200]!r}"]
        return schema_errors(self.validator(where), data)

    @cache  # noqa: B019 - one description per session
    def validator(self, where: tuple[str, ...]) -> Any:
        return GitHubOAS30Validator(
            {"$ref": self.URI + pointer(*where)}, registry=self.registry, format_checker=oas30_format_checker
        )


class WebhookDescription:
    """``@octokit/openapi-webhooks``' ``api.github.com.json``: one ``webhooks`` entry per event and action."""

    URI = "urn:octokit:openapi-webhooks:api.github.com"

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.version = document["info"]["version"]
        self.registry: Registry[Any] = Registry().with_resource(
            self.URI, Resource(contents=document, specification=DRAFT202012)
        )

    @staticmethod
    def key(event: str, action: str | None) -> str:
        """The description's name of a delivery: ``push``, ``workflow-run-completed``, ..."""
        name = event if action is None else f"{event}-{action}"
        return name.replace("_", "-")

    def check(self, headers: dict[str, str], body: bytes) -> list[str]:
        """Errors of one delivery (its headers and raw body) against the description of its event and action."""
        lowered = {name.lower(): value for name, value in headers.items()}
        data = _json(body)
        if not isinstance(data, dict):
            return [f"(body): not a JSON object: {body[:200]!r}"]
        event = lowered.get("x-github-event", "")
        key = self.key(event, data.get("action"))
        hook = self.document["webhooks"].get(key)
        if hook is None:
            return [f"the description has no webhook {key!r}"]
        operation = hook["post"]
        errors = []
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "header":
                continue
            value = lowered.get(parameter["name"].lower())
            if value is None:
                if parameter.get("required"):
                    errors.append(f"header {parameter['name']} is missing")
                continue
            validator = OAS31Validator(parameter.get("schema", {}), format_checker=oas31_format_checker)
            errors += [f"header {parameter['name']}: {error}" for error in schema_errors(validator, value)]
        content = operation["requestBody"]["content"]
        media = lowered.get("content-type", "").split(";")[0].strip()
        if media not in content:
            return [*errors, f"content type {media!r} is not among the described {sorted(content)}"]
        where = ("webhooks", key, "post", "requestBody", "content", media, "schema")
        return errors + schema_errors(self.validator(where), data)

    @cache  # noqa: B019 - one description per session
    def validator(self, where: tuple[str, ...]) -> Any:
        return OAS31Validator(
            {"$ref": self.URI + pointer(*where)}, registry=self.registry, format_checker=oas31_format_checker
        )


_INVALID = object()


def _missing_error_fields(body: bytes) -> list[str]:
    """``basic-error`` requires nothing, but GitHub's error answers always carry these two."""
    data = _json(body)
    if not isinstance(data, dict):
        return []
    return [f"(body): the error has no {key!r}" for key in ("message", "documentation_url") if key not in data]


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return _INVALID
