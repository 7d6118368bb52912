"""AWX's session login, ``/api/login/`` (Django's ``LoginView`` as AWX's ``LoggedLoginView`` wraps it).

``GET`` sets the ``csrftoken`` cookie; ``POST`` (form fields ``username``, ``password``, ``next``, with the cookie's
value in ``X-CSRFToken`` or ``csrfmiddlewaretoken``) answers 302 to ``next`` with the ``awx_sessionid`` cookie, a
new ``csrftoken`` (Django rotates it at login) and ``X-API-Session-Cookie-Name``; wrong credentials get 401, a
missing or wrong CSRF token 403. This is how awxkit's ``Connection.login(username, password, next=...)`` logs in.

In the sandbox the session authenticates the websocket only; the REST API takes the token or Basic auth (README).
"""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs

from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from sandbox.awx.websocket import SESSION_COOKIE

CSRF_COOKIE = "csrftoken"
FORM = (
    "<!DOCTYPE html><html><body><form method='post'>"
    "<input type='hidden' name='csrfmiddlewaretoken' value='{csrf}'>"
    "<input name='username'><input type='password' name='password'><input type='hidden' name='next' value='{next}'>"
    "</form></body></html>"
)


class Sessions:
    """The login sessions of one AWX emulator (session id -> username)."""

    def __init__(self, username: str, password: str, root: str) -> None:
        self._username = username
        self._password = password
        self._root = root
        self._sessions: dict[str, str] = {}

    def user(self, connection: HTTPConnection) -> str | None:
        """The user whose session cookie this request or handshake carries."""
        session = connection.cookies.get(SESSION_COOKIE)
        return self._sessions.get(session) if session else None

    async def login(self, request: Request) -> Response:
        csrf = request.cookies.get(CSRF_COOKIE)
        if request.method == "GET":
            token = csrf or secrets.token_urlsafe(32)
            page = HTMLResponse(FORM.format(csrf=token, next=request.query_params.get("next", self._root)))
            page.set_cookie(CSRF_COOKIE, token, samesite="lax")
            return page
        form = {key: values[0] for key, values in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        sent = request.headers.get("x-csrftoken") or form.get("csrfmiddlewaretoken", "")
        if not csrf or not sent or not secrets.compare_digest(sent, csrf):
            return HTMLResponse("<h1>Forbidden (403)</h1><p>CSRF verification failed. Request aborted.</p>", 403)
        if (form.get("username"), form.get("password")) != (self._username, self._password):
            return HTMLResponse(FORM.format(csrf=csrf, next=form.get("next", self._root)), 401)
        session = secrets.token_hex(16)
        self._sessions[session] = self._username
        target = form.get("next") or self._root
        answer = RedirectResponse(target if target.startswith("/") else self._root, status_code=302)
        answer.headers["X-API-Session-Cookie-Name"] = SESSION_COOKIE
        answer.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="lax")
        answer.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(32), samesite="lax")
        return answer
