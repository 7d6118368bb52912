"""The Registry HTTP API v2 routes, answering as distribution 2.8 does.

Routing mirrors distribution's router: a path that matches no route is Go's plain ``404 page not found``; a
known route with another method is a plain 405 with ``Allow``. Authentication (token mode) is checked after
the route matched and before the handler, so a missing manifest behind a missing token is a 401 first.
Every answer carries ``Docker-Distribution-API-Version: registry/2.0``.
"""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.clock import isoformat
from sandbox.emulator import Runtime
from sandbox.registry.auth import Access, TokenService, parse_scopes, request_access, token_error
from sandbox.registry.errors import API_VERSION_HEADER, JSON_TYPE, RegistryError, go_json, plain_response
from sandbox.registry.reference import (
    DIGEST_SHAPE,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    NAME,
    OCI_INDEX,
    OCI_MANIFEST,
    TAG,
    accepted_types,
    digest_of,
    is_valid_digest,
)
from sandbox.registry.store import Manifest, Store, Upload, new_uuid

Handler = Callable[[Request, dict[str, str]], Awaitable[Response]]

_MANIFEST_METHODS = ("GET", "HEAD", "PUT", "DELETE")
_UPLOAD_METHODS = ("GET", "PATCH", "PUT", "DELETE")
_MANIFEST_REF = rf"{TAG}|{DIGEST_SHAPE}"
_ROUTES: list[tuple[re.Pattern[str], str, tuple[str, ...]]] = [
    (re.compile(r"_catalog"), "catalog", ("GET",)),
    (re.compile(rf"(?P<name>{NAME})/manifests/(?P<reference>{_MANIFEST_REF})"), "manifest", _MANIFEST_METHODS),
    (re.compile(rf"(?P<name>{NAME})/tags/list"), "tags", ("GET",)),
    (re.compile(rf"(?P<name>{NAME})/blobs/(?P<digest>{DIGEST_SHAPE})"), "blob", ("GET", "HEAD", "DELETE")),
    (re.compile(rf"(?P<name>{NAME})/blobs/uploads/"), "uploads", ("POST",)),
    (re.compile(rf"(?P<name>{NAME})/blobs/uploads/(?P<uuid>[a-zA-Z0-9-_.=]+)"), "upload", _UPLOAD_METHODS),
]

_NOT_ACCEPTED = {
    OCI_MANIFEST: "OCI manifest found, but accept header does not support OCI manifests",
    OCI_INDEX: "OCI index found, but accept header does not support OCI indexes",
}


def _headers(**extra: str) -> dict[str, str]:
    return {**API_VERSION_HEADER, **extra}


def _empty(status: int, **headers: str) -> Response:
    """An answer without a body; Go writes ``Content-Length: 0`` on these (not on 204)."""
    response = Response(b"", status_code=status, headers=_headers(**headers))
    if status != 204:
        response.headers["content-length"] = "0"
    return response


class ApiHost(Protocol):
    """What the HTTP side needs of its emulator (``RegistryEmulator`` is one)."""

    runtime: Runtime
    store: Store
    tokens: TokenService
    rng: random.Random

    @property
    def auth_mode(self) -> str: ...


class RegistryApi:
    """Handlers bound to one emulator (its store, token service and clock)."""

    def __init__(self, emulator: ApiHost) -> None:
        self.emulator = emulator
        self.store = emulator.store
        self._handlers: dict[str, Handler] = {
            "catalog": self.catalog,
            "manifest": self.manifest,
            "tags": self.tags,
            "blob": self.blob,
            "uploads": self.start_upload,
            "upload": self.upload,
        }

    # ------------------------------------------------------------ entry points

    async def base(self, request: Request) -> Response:
        """``GET /v2/``: 200 ``{}`` once authenticated (a token with any scope will do)."""
        if request.method not in ("GET", "HEAD"):
            return plain_response("Method not allowed\n", 405, {"Allow": "GET"})
        try:
            self._authorize(request, [])
        except RegistryError as error:
            return error.response()
        # distribution writes "{}" without the encoder's newline here
        return Response(b"{}", headers=_headers(), media_type=JSON_TYPE)

    async def redirect_base(self, request: Request) -> Response:
        return _moved("/v2/", request.method)

    async def dispatch(self, request: Request) -> Response:
        """Every other ``/v2/...`` path: match the route, check the method and access, run the handler."""
        path = request.path_params["path"]
        for pattern, kind, methods in _ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if request.method not in methods:
                return plain_response("Method not allowed\n", 405, {"Allow": ", ".join(sorted(methods))})
            params = match.groupdict()
            try:
                self._authorize(request, self._access(request, kind, params))
                return await self._handlers[kind](request, params)
            except RegistryError as error:
                return error.response()
        if re.fullmatch(rf"{NAME}/blobs/uploads", path):
            # gorilla/mux StrictSlash: distribution redirects to the route with the slash
            return _moved(f"/v2/{path}/", request.method)
        return plain_response("404 page not found\n", 404)

    async def token(self, request: Request) -> Response:
        """Docker Hub's token endpoint: GET with ``service``/``scope`` (Basic auth optional), or the
        OAuth2 POST form with ``grant_type=password``."""
        tokens = self.emulator.tokens
        if request.method == "POST":
            # an urlencoded form (parsed here: starlette's form parser needs python-multipart)
            form = parse_qs((await request.body()).decode("latin-1"))
            if form.get("grant_type") != ["password"]:
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            username, password = form.get("username", [""])[0], form.get("password", [""])[0]
            user = tokens.authenticate(_basic(username, password))
            scopes = form.get("scope", [])
        else:
            user = tokens.authenticate(request.headers.get("authorization"))
            scopes = request.query_params.getlist("scope")
        if user is None:
            return token_error(401, "incorrect username or password")
        answer = tokens.issue(user, tokens.grant(user, parse_scopes(scopes)))
        if request.method == "POST":
            answer = {key: answer[key] for key in ("access_token", "expires_in", "issued_at")}
            answer["scope"] = " ".join(scopes)
        return JSONResponse(answer)

    # ------------------------------------------------------------ access

    def _access(self, request: Request, kind: str, params: dict[str, str]) -> list[Access]:
        if kind == "catalog":
            return [Access("registry", "catalog", "*")]
        access = request_access(request.method, params["name"])
        source = request.query_params.get("from")
        if kind == "uploads" and request.query_params.get("mount") and source:
            access.append(Access("repository", source, "pull"))
        return access

    def _authorize(self, request: Request, access: list[Access]) -> None:
        if self.emulator.auth_mode == "token":
            self.emulator.tokens.check(request, access)

    def _base_url(self, request: Request) -> str:
        # distribution builds absolute Locations from the request's Host header
        host = request.headers.get("host") or request.url.netloc
        return f"{request.url.scheme}://{host}"

    # ------------------------------------------------------------ catalog and tags

    async def catalog(self, request: Request, params: dict[str, str]) -> Response:
        names = self.store.catalog()
        last = request.query_params.get("last")
        if last:
            names = [name for name in names if name > last]
        headers = _headers()
        count = request.query_params.get("n")
        if count and count.isdigit() and int(count) < len(names):
            names = names[: int(count)]
            headers["Link"] = f'</v2/_catalog?last={quote(names[-1], safe="/")}&n={count}>; rel="next"'
        return Response(go_json({"repositories": names}), headers=headers, media_type=JSON_TYPE)

    async def tags(self, request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        tags = self.store.tags(name)
        if tags is None:
            raise RegistryError.of("NAME_UNKNOWN", {"name": name})
        # distribution 2.8 ignores n/last on tags/list and returns every tag
        return Response(go_json({"name": name, "tags": list(tags)}), headers=_headers(), media_type=JSON_TYPE)

    # ------------------------------------------------------------ manifests

    async def manifest(self, request: Request, params: dict[str, str]) -> Response:
        name, reference = params["name"], params["reference"]
        if request.method == "PUT":
            body = await request.body()
            digest = self.store.put_manifest(name, reference, request.headers.get("content-type", ""), body)
            location = f"{self._base_url(request)}/v2/{name}/manifests/{digest}"
            return _empty(201, **{"Location": location, "Docker-Content-Digest": digest})
        if request.method == "DELETE":
            if ":" not in reference or not is_valid_digest(reference):
                raise RegistryError.of("DIGEST_INVALID")
            if not self.store.delete_manifest(name, reference):
                raise RegistryError.of("MANIFEST_UNKNOWN")
            return _empty(202)
        manifest = self._negotiate(name, reference, accepted_types(request.headers.getlist("accept")))
        etag = f'"{manifest.digest}"'
        if request.headers.get("if-none-match") in (etag, manifest.digest):
            # distribution answers the ETag match before it sets any header of the manifest
            return Response(b"", status_code=304, headers=_headers())
        headers = _headers(**{"Docker-Content-Digest": manifest.digest, "Etag": etag})
        return Response(manifest.body, headers=headers, media_type=manifest.media_type)

    def _negotiate(self, name: str, reference: str, accepts: set[str]) -> Manifest:
        """The manifest to serve for the client's ``Accept`` list, as distribution 2.8 decides it."""
        by_tag = ":" not in reference
        if not by_tag and not is_valid_digest(reference):
            # distribution treats an unparsable digest as a tag and fails in its storage driver
            raise RegistryError.of("UNKNOWN", {})
        manifest = self.store.manifest(name, reference)
        if manifest is None:
            detail = {"Tag": reference} if by_tag else {"Name": name, "Revision": reference}
            raise RegistryError.of("MANIFEST_UNKNOWN", detail)
        if by_tag and manifest.media_type == DOCKER_MANIFEST_LIST and DOCKER_MANIFEST_LIST not in accepts:
            # an old client: distribution serves the list's linux/amd64 image instead
            child = next(
                (d for d, os, arch in manifest.parsed.platforms if os == "linux" and arch == "amd64"),
                None,
            )
            found = self.store.manifest(name, child) if child else None
            if found is None:
                raise RegistryError.of("MANIFEST_UNKNOWN")
            manifest = found
        if manifest.media_type in _NOT_ACCEPTED and manifest.media_type not in accepts:
            raise RegistryError.of("MANIFEST_UNKNOWN", message=_NOT_ACCEPTED[manifest.media_type])
        if by_tag and manifest.media_type == DOCKER_MANIFEST and DOCKER_MANIFEST not in accepts:
            # a client without schema 2: distribution tries to rewrite it as schema 1 and fails
            raise RegistryError.of("MANIFEST_INVALID", {})
        return manifest

    # ------------------------------------------------------------ blobs

    async def blob(self, request: Request, params: dict[str, str]) -> Response:
        name, digest = params["name"], params["digest"]
        if not is_valid_digest(digest):
            raise RegistryError.of("DIGEST_INVALID", {})
        if request.method == "DELETE":
            if not self.store.delete_blob(name, digest):
                raise RegistryError.of("BLOB_UNKNOWN")
            return _empty(202)
        data = self.store.blob(name, digest)
        if data is None:
            raise RegistryError.of("BLOB_UNKNOWN", digest)
        etag = f'"{digest}"'
        headers = _headers(**{"Cache-Control": "max-age=31536000", "Docker-Content-Digest": digest, "Etag": etag})
        if request.headers.get("if-none-match") == etag:
            return Response(b"", status_code=304, headers=headers)
        headers["Accept-Ranges"] = "bytes"
        span = _range(request.headers.get("range"), len(data))
        if span is not None:
            start, end = span
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return Response(
                data[start : end + 1], status_code=206, headers=headers, media_type="application/octet-stream"
            )
        return Response(data, headers=headers, media_type="application/octet-stream")

    # ------------------------------------------------------------ uploads

    async def start_upload(self, request: Request, params: dict[str, str]) -> Response:
        """``POST .../blobs/uploads/``: a cross-repository mount (201) or a new session (202).

        distribution 2.8 has no single-POST monolithic upload: ``?digest=`` and a body are ignored and a
        session starts; clients then PUT the bytes to the Location.
        """
        name = params["name"]
        mount, source = request.query_params.get("mount"), request.query_params.get("from")
        if mount and source and is_valid_digest(mount) and self.store.mount_blob(name, mount, source):
            location = f"{self._base_url(request)}/v2/{name}/blobs/{mount}"
            return _empty(201, **{"Location": location, "Docker-Content-Digest": mount})
        emulator = self.emulator
        upload = self.store.start_upload(
            name, new_uuid(emulator.rng.getrandbits(128)), isoformat(emulator.runtime.clock.now()) or ""
        )
        return _empty(202, **self._upload_headers(request, upload))

    def _upload_headers(self, request: Request, upload: Upload) -> dict[str, str]:
        location = (
            f"{self._base_url(request)}/v2/{upload.name}/blobs/uploads/{upload.uuid}"
            f"?_state={quote(self.store.upload_state(upload), safe='')}"
        )
        return {
            "Location": location,
            "Docker-Upload-UUID": upload.uuid,
            # an empty upload reports 0-0, as distribution does
            "Range": f"0-{max(len(upload.data) - 1, 0)}",
        }

    async def upload(self, request: Request, params: dict[str, str]) -> Response:
        name, uuid = params["name"], params["uuid"]
        state = self.store.read_state(request.query_params.get("_state", ""))
        if state is None or state.get("Name") != name or state.get("UUID") != uuid:
            raise RegistryError.of("BLOB_UPLOAD_INVALID", {})
        upload = self.store.uploads.get(uuid)
        if upload is None:
            raise RegistryError.of("BLOB_UPLOAD_UNKNOWN", {})
        if state.get("Offset") != len(upload.data):
            # a stale Location (an earlier offset) is refused
            raise RegistryError.of("BLOB_UPLOAD_INVALID")
        if request.method == "GET":
            return _empty(204, **self._upload_headers(request, upload))
        if request.method == "DELETE":
            del self.store.uploads[uuid]
            return _empty(204, **{"Docker-Upload-UUID": uuid})
        if request.method == "PATCH":
            content_type = request.headers.get("content-type", "")
            if content_type not in ("", "application/octet-stream"):
                raise RegistryError.of("UNKNOWN", {})  # distribution: "bad Content-Type", an unknown error
            upload.data += await request.body()
            return _empty(202, **self._upload_headers(request, upload))
        return await self._finish_upload(request, upload)

    async def _finish_upload(self, request: Request, upload: Upload) -> Response:
        digest = request.query_params.get("digest")
        if not digest:
            raise RegistryError.of("DIGEST_INVALID", "digest missing")
        if not is_valid_digest(digest):
            raise RegistryError.of("DIGEST_INVALID", "digest parsing failed")
        upload.data += await request.body()
        if digest_of(digest.split(":", 1)[0], bytes(upload.data)) != digest:
            # the session stays, with the bytes appended: a retry with the right digest can still succeed
            raise RegistryError.of("DIGEST_INVALID", {"Digest": digest, "Reason": {}})
        self.store.add_blob(upload.name, bytes(upload.data), digest)
        del self.store.uploads[upload.uuid]
        location = f"{self._base_url(request)}/v2/{upload.name}/blobs/{digest}"
        return _empty(201, **{"Location": location, "Docker-Content-Digest": digest})


def _moved(location: str, method: str) -> Response:
    """Go's ``http.Redirect`` answer (gorilla/mux adds the missing slash); only GET and HEAD get a body."""
    if method not in ("GET", "HEAD"):
        return _empty(301, Location=location)
    return Response(
        f'<a href="{location}">Moved Permanently</a>.\n\n'.encode(),
        status_code=301,
        headers={**API_VERSION_HEADER, "Location": location},
        media_type="text/html; charset=utf-8",
    )


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single ``bytes=a-b`` range within the blob, or None (serve it all)."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if match is None or size == 0:
        return None
    first, last = match.groups()
    if first:
        start, end = int(first), int(last) if last else size - 1
    elif last:
        start, end = max(size - int(last), 0), size - 1
    else:
        return None
    if start > end or start >= size:
        return None
    return start, min(end, size - 1)
